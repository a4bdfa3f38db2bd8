//! Checks a built Hermit app the way uhyve's loader (hermit-entry 0.10)
//! will judge it, so that a wrong build is caught at `make` and not at
//! boot: a 64-bit little-endian x86_64 static PIE (`ET_DYN`, no
//! interpreter, no `DT_NEEDED`), marked as a Hermit object (OS ABI 0xFF),
//! whose notes say which boot protocol it speaks (`HERMIT`, type 0x5a00,
//! entry version 4) and which kernel it carries (the GNU ABI tag, OS 6 =
//! Hermit), and whose relocations are only of the three types that
//! loader applies.

use object::elf::{
    FileHeader64, DT_NEEDED, DT_NULL, DT_RELA, DT_RELAENT, DT_RELASZ, EM_X86_64, ET_DYN, PT_DYNAMIC, PT_INTERP,
    PT_LOAD, PT_NOTE, R_X86_64_64, R_X86_64_GLOB_DAT, R_X86_64_RELATIVE,
};
use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;

use super::hermit_archive::OSABI_HERMIT;

/// The boot protocol version a kernel for uhyve's loader must announce.
pub const ENTRY_VERSION: u8 = 4;
const NOTE_HERMIT_ENTRY_VERSION: u32 = 0x5a00;
const NOTE_GNU_ABI_TAG: u32 = 1;
/// The ABI tag's OS number for Hermit.
const ABI_TAG_OS_HERMIT: u32 = 6;
/// What one `Elf64_Rela` occupies.
const RELA_SIZE: u64 = 24;

/// What the check learnt of an app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HermitApp {
    /// `e_entry`, relative to wherever the image is loaded.
    pub entry: u64,
    /// The span of its loadable segments.
    pub memory_size: u64,
    /// The kernel version in the ABI tag.
    pub kernel: Version,
    pub relocations: usize,
}

/// Checks an app ELF; the error says what is wrong.
pub fn check_hermit_app(elf: &[u8]) -> Result<HermitApp, String> {
    let header = FileHeader64::<Endianness>::parse(elf).map_err(|e| format!("not an ELF64 file: {e}"))?;
    let endian = header.endian().map_err(|e| format!("unreadable ELF header: {e}"))?;
    if endian != Endianness::Little || header.e_machine(endian) != EM_X86_64 {
        return Err("not a little-endian x86_64 ELF".into());
    }
    if header.e_type(endian) != ET_DYN {
        return Err(format!("ELF type {}, not ET_DYN: a Hermit app is a static PIE", header.e_type(endian)));
    }
    let osabi = header.e_ident.os_abi;
    if osabi != OSABI_HERMIT {
        return Err(format!("OS ABI {osabi:#x}, not Hermit's {OSABI_HERMIT:#x}"));
    }
    let segments = header.program_headers(endian, elf).map_err(|e| format!("unreadable program headers: {e}"))?;
    if segments.iter().any(|ph| ph.p_type(endian) == PT_INTERP) {
        return Err("it has an interpreter (PT_INTERP): not a static PIE".into());
    }
    let loads: Vec<_> = segments.iter().filter(|ph| ph.p_type(endian) == PT_LOAD).collect();
    let start = loads.iter().map(|ph| ph.p_vaddr(endian)).min().ok_or("no PT_LOAD segment")?;
    let end = loads.iter().map(|ph| ph.p_vaddr(endian) + ph.p_memsz(endian)).max().unwrap_or(start);
    let (entry_version, kernel) = notes(segments, endian, elf)?;
    if entry_version != Some(ENTRY_VERSION) {
        return Err(match entry_version {
            None => "no HERMIT entry-version note (.note.hermit.entry-version)".into(),
            Some(v) => format!("entry version {v}, not {ENTRY_VERSION}"),
        });
    }
    let kernel = kernel.ok_or("no Hermit ABI-tag note (.note.ABI-tag)")?;
    let relocations = relocations(segments, endian, elf)?;
    Ok(HermitApp { entry: header.e_entry(endian), memory_size: end - start, kernel, relocations })
}

/// A kernel version: major, minor, patch.
pub type Version = (u32, u32, u32);

/// The entry version and the kernel version the PT_NOTE segments give.
fn notes(
    segments: &[object::elf::ProgramHeader64<Endianness>],
    endian: Endianness,
    elf: &[u8],
) -> Result<(Option<u8>, Option<Version>), String> {
    let (mut entry_version, mut kernel) = (None, None);
    for ph in segments.iter().filter(|ph| ph.p_type(endian) == PT_NOTE) {
        let mut notes = ph.notes(endian, elf).map_err(|e| format!("unreadable notes: {e}"))?.ok_or("no notes")?;
        while let Some(note) = notes.next().map_err(|e| format!("unreadable note: {e}"))? {
            match (note.name(), note.n_type(endian)) {
                (b"HERMIT", NOTE_HERMIT_ENTRY_VERSION) => entry_version = note.desc().first().copied(),
                (b"GNU", NOTE_GNU_ABI_TAG) => {
                    let words: Vec<u32> =
                        note.desc().chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect();
                    if let [ABI_TAG_OS_HERMIT, major, minor, patch] = words[..] {
                        kernel = Some((major, minor, patch));
                    }
                }
                _ => {}
            }
        }
    }
    Ok((entry_version, kernel))
}

/// How many relocations the dynamic section lists; an error for a
/// `DT_NEEDED` or a relocation type uhyve's loader does not apply.
fn relocations(
    segments: &[object::elf::ProgramHeader64<Endianness>],
    endian: Endianness,
    elf: &[u8],
) -> Result<usize, String> {
    let Some(dynamic) = segments.iter().find(|ph| ph.p_type(endian) == PT_DYNAMIC) else {
        return Ok(0);
    };
    let entries = dynamic
        .dynamic(endian, elf)
        .map_err(|e| format!("unreadable dynamic section: {e}"))?
        .ok_or("no dynamic section")?;
    let (mut rela, mut size) = (None, 0);
    for entry in entries.iter().take_while(|d| d.d_tag.get(endian) != u64::from(DT_NULL)) {
        let value = entry.d_val.get(endian);
        match u32::try_from(entry.d_tag.get(endian)) {
            Ok(DT_NEEDED) => return Err("it needs a shared library (DT_NEEDED)".into()),
            Ok(DT_RELA) => rela = Some(value),
            Ok(DT_RELASZ) => size = value,
            Ok(DT_RELAENT) if value != RELA_SIZE => return Err(format!("DT_RELAENT {value}, not {RELA_SIZE}")),
            _ => {}
        }
    }
    let Some(address) = rela else { return Ok(0) };
    let offset = segments
        .iter()
        .filter(|ph| ph.p_type(endian) == PT_LOAD)
        .find(|ph| (ph.p_vaddr(endian)..ph.p_vaddr(endian) + ph.p_filesz(endian)).contains(&address))
        .map(|ph| address - ph.p_vaddr(endian) + ph.p_offset(endian))
        .ok_or_else(|| format!("DT_RELA {address:#x} is in no loaded part of the file"))?;
    let bytes = usize::try_from(offset)
        .ok()
        .zip(usize::try_from(size).ok())
        .and_then(|(at, len)| elf.get(at..at.checked_add(len)?))
        .ok_or("the relocations run past the end of the file")?;
    let mut count = 0;
    for raw in bytes.chunks_exact(RELA_SIZE as usize) {
        let word = |i: usize| u64::from_le_bytes(raw[i..i + 8].try_into().expect("an 8-byte slice"));
        // ELF64_R_TYPE: the low half of r_info.
        let r_type = word(8) as u32;
        if ![R_X86_64_RELATIVE, R_X86_64_64, R_X86_64_GLOB_DAT].contains(&r_type) {
            return Err(format!(
                "relocation type {r_type} at {:#x}: uhyve applies only RELATIVE, 64 and GLOB_DAT",
                word(0)
            ));
        }
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::elf::{ET_EXEC, R_X86_64_PC32};

    /// What the test ELF holds; each field can be made wrong.
    struct Spec {
        e_type: u16,
        osabi: u8,
        entry_version: Option<u8>,
        abi_os: u32,
        interp: bool,
        needed: bool,
        relocation_types: Vec<u32>,
    }

    fn good() -> Spec {
        Spec {
            e_type: ET_DYN,
            osabi: OSABI_HERMIT,
            entry_version: Some(ENTRY_VERSION),
            abi_os: ABI_TAG_OS_HERMIT,
            interp: false,
            needed: false,
            relocation_types: vec![R_X86_64_RELATIVE, R_X86_64_64],
        }
    }

    fn note(name: &[u8], n_type: u32, desc: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for word in [name.len() as u32 + 1, desc.len() as u32, n_type] {
            b.extend_from_slice(&word.to_le_bytes());
        }
        b.extend_from_slice(name);
        b.push(0);
        b.resize(b.len().next_multiple_of(4), 0);
        b.extend_from_slice(desc);
        b.resize(b.len().next_multiple_of(4), 0);
        b
    }

    /// An ELF whose one PT_LOAD maps the whole file at 0, so file offsets
    /// are addresses; notes, dynamic entries and relocations follow the
    /// headers.
    fn elf(spec: &Spec) -> Vec<u8> {
        let mut notes = spec.entry_version.map_or(Vec::new(), |v| note(b"HERMIT", NOTE_HERMIT_ENTRY_VERSION, &[v]));
        let tag: Vec<u8> = [spec.abi_os, 0, 11, 0].iter().flat_map(|w| w.to_le_bytes()).collect();
        notes.extend(note(b"GNU", NOTE_GNU_ABI_TAG, &tag));
        let relas: Vec<u8> = spec
            .relocation_types
            .iter()
            .enumerate()
            .flat_map(|(i, t)| [0x1000 + 8 * i as u64, u64::from(*t), 0x2000].into_iter().flat_map(u64::to_le_bytes))
            .collect();
        let phnum = 4u64;
        let notes_at = 64 + 56 * phnum;
        let relas_at = notes_at + notes.len() as u64;
        let dynamic_at = relas_at + relas.len() as u64;
        let mut dynamic = vec![(DT_RELA, relas_at), (DT_RELASZ, relas.len() as u64), (DT_RELAENT, RELA_SIZE)];
        if spec.needed {
            dynamic.push((DT_NEEDED, 1));
        }
        dynamic.push((DT_NULL, 0));
        let dynamic: Vec<u8> =
            dynamic.iter().flat_map(|(t, v)| [u64::from(*t), *v].into_iter().flat_map(u64::to_le_bytes)).collect();
        let total = dynamic_at + dynamic.len() as u64;
        let mut b = vec![0u8; 64];
        b[..8].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, spec.osabi]);
        b[16..18].copy_from_slice(&spec.e_type.to_le_bytes());
        b[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        b[24..32].copy_from_slice(&0x1234u64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[52..54].copy_from_slice(&64u16.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
        let interp_or_null = if spec.interp { PT_INTERP } else { 0 };
        for (p_type, at, size) in [
            (PT_LOAD, 0, total + 0x4000),
            (PT_NOTE, notes_at, notes.len() as u64),
            (PT_DYNAMIC, dynamic_at, dynamic.len() as u64),
            (interp_or_null, 0, 0),
        ] {
            let file_size = if p_type == PT_LOAD { total } else { size };
            // Notes are 4-byte aligned, as GNU ld and lld lay them out.
            let align = if p_type == PT_NOTE { 4 } else { 8 };
            for word in [u64::from(p_type) | (6 << 32), at, at, at, file_size, size, align] {
                b.extend_from_slice(&word.to_le_bytes());
            }
        }
        b.extend(notes);
        b.extend(relas);
        b.extend(dynamic);
        b
    }

    #[test]
    fn an_app_as_uhyve_wants_it() {
        let app = check_hermit_app(&elf(&good())).unwrap();
        assert_eq!(app.entry, 0x1234);
        assert_eq!(app.kernel, (0, 11, 0));
        assert_eq!(app.relocations, 2);
        assert!(app.memory_size > 0x4000, "the span is memsz, not filesz");
    }

    #[test]
    fn each_thing_uhyve_would_refuse_is_named() {
        let refused = |change: fn(&mut Spec)| {
            let mut spec = good();
            change(&mut spec);
            check_hermit_app(&elf(&spec)).unwrap_err()
        };
        assert!(refused(|s| s.e_type = ET_EXEC).contains("not ET_DYN"));
        assert!(refused(|s| s.osabi = 0).contains("OS ABI 0x0"));
        assert!(refused(|s| s.entry_version = None).contains("no HERMIT entry-version note"));
        assert!(refused(|s| s.entry_version = Some(3)).contains("entry version 3, not 4"));
        assert!(refused(|s| s.abi_os = 0).contains("no Hermit ABI-tag"));
        assert!(refused(|s| s.interp = true).contains("PT_INTERP"));
        assert!(refused(|s| s.needed = true).contains("DT_NEEDED"));
        assert!(refused(|s| s.relocation_types.push(R_X86_64_PC32)).contains("relocation type 2"));
        assert!(check_hermit_app(b"\x7fELF").unwrap_err().contains("ELF64"));
    }
}
