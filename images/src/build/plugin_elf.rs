//! Reading built plugins (the metadata note) and making the deliberately
//! broken store files the loader's refusal tests need, each from the signed
//! counter 1.0.0:
//!
//! | file                 | what is wrong                                           |
//! |----------------------|---------------------------------------------------------|
//! | `bad-truncated.mvp`  | ELF cut to half its length, then signed: the signature  |
//! |                      | holds, so the ELF parser itself must notice             |
//! | `bad-signature.mvp`  | one signature byte flipped                              |
//! | `bad-abi.mvp`        | ABI fingerprint changed in the note *and* the           |
//! |                      | descriptor, re-signed                                   |
//! | `bad-relocation.mvp` | first `.rela.dyn` entry's type set to R_X86_64_COPY (5),|
//! |                      | which a loader of shared objects never resolves; signed |
//! | `bad-unsigned.mvp`   | the ELF without signature and trailer                   |
//!
//! `bad-abi` patches both copies of the fingerprint so the file is
//! consistent: the loader must refuse it for the ABI whichever copy it
//! checks first, not because note and descriptor disagree.

use std::ops::Range;

use object::elf::{R_X86_64_COPY, SHT_NOTE};
use object::read::elf::ElfFile64;
use object::{LittleEndian, Object, ObjectSection, ObjectSymbol};
use plugins::meta::{Metadata, NOTE_OWNER, NOTE_SECTION, NOTE_TYPE};
use plugins::{DESCRIPTOR_MAGIC, DESCRIPTOR_SYMBOL};

use ed25519_compact::KeyPair;

use super::signing::sign;

type Elf<'a> = ElfFile64<'a, LittleEndian>;

/// Why a built plugin could not be read.
pub type ElfError = String;

fn parse(elf: &[u8]) -> Result<Elf<'_>, ElfError> {
    Elf::parse(elf).map_err(|e| format!("not a 64-bit little-endian ELF: {e}"))
}

/// The file range of a section.
fn section_range(elf: &Elf, name: &str) -> Result<Range<usize>, ElfError> {
    let section = elf.section_by_name(name).ok_or_else(|| format!("no {name} section"))?;
    let (offset, size) = section.file_range().ok_or_else(|| format!("{name} has no bytes in the file"))?;
    Ok(offset as usize..(offset + size) as usize)
}

fn align4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// The range of the modvisor note's descriptor among the ELF notes in
/// `notes` (the bytes of a note section).
pub fn find_note_descriptor(notes: &[u8]) -> Option<Range<usize>> {
    let word = |at: usize| Some(u32::from_le_bytes(notes.get(at..at + 4)?.try_into().ok()?) as usize);
    let mut at = 0;
    while at + 12 <= notes.len() {
        let (namesz, descsz, ty) = (word(at)?, word(at + 4)?, word(at + 8)? as u32);
        let name = notes.get(at + 12..at + 12 + namesz)?;
        let desc = at + 12 + align4(namesz);
        if name.strip_suffix(b"\0") == Some(NOTE_OWNER) && ty == NOTE_TYPE {
            return (desc + descsz <= notes.len()).then_some(desc..desc + descsz);
        }
        at = desc + align4(descsz);
    }
    None
}

/// The file range of the metadata note's descriptor (ABI fingerprint, ABI
/// items, then the text).
pub fn note_descriptor_range(elf: &[u8]) -> Result<Range<usize>, ElfError> {
    let file = parse(elf)?;
    let section = section_range(&file, NOTE_SECTION)?;
    let kind = file.section_by_name(NOTE_SECTION).map(|s| s.elf_section_header().sh_type.get(LittleEndian));
    if kind != Some(SHT_NOTE) {
        return Err(format!("{NOTE_SECTION} is not a note section"));
    }
    let desc =
        find_note_descriptor(&elf[section.clone()]).ok_or_else(|| format!("{NOTE_SECTION} holds no modvisor note"))?;
    Ok(section.start + desc.start..section.start + desc.end)
}

/// The plugin's metadata, as the loader will read it.
pub fn metadata(elf: &[u8]) -> Result<Metadata<'_>, ElfError> {
    let range = note_descriptor_range(elf)?;
    Metadata::parse(&elf[range]).map_err(|e| e.to_string())
}

/// The file offset of the descriptor's ABI field (after its 8-byte magic).
pub fn descriptor_abi_offset(elf: &[u8]) -> Result<usize, ElfError> {
    let file = parse(elf)?;
    let symbol = file
        .dynamic_symbols()
        .find(|s| s.name() == Ok(DESCRIPTOR_SYMBOL))
        .ok_or_else(|| format!("{DESCRIPTOR_SYMBOL} is not exported"))?;
    let address = symbol.address();
    let section = file
        .sections()
        .find(|s| s.address() <= address && address < s.address() + s.size())
        .ok_or_else(|| format!("{DESCRIPTOR_SYMBOL} lies in no section"))?;
    let (offset, _) = section.file_range().ok_or_else(|| format!("{DESCRIPTOR_SYMBOL} has no bytes in the file"))?;
    let start = (offset + address - section.address()) as usize;
    if elf.get(start..start + 8) != Some(&DESCRIPTOR_MAGIC[..]) {
        return Err(format!("{DESCRIPTOR_SYMBOL} does not start with the descriptor magic"));
    }
    Ok(start + 8)
}

/// The file offset of the first `.rela.dyn` entry.
pub fn first_relocation_offset(elf: &[u8]) -> Result<usize, ElfError> {
    let range = section_range(&parse(elf)?, ".rela.dyn")?;
    if range.len() < 24 {
        return Err(".rela.dyn is empty".into());
    }
    Ok(range.start)
}

/// A broken store file made from a good plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    Truncated,
    Signature,
    Abi,
    Relocation,
    Unsigned,
}

impl Mutation {
    pub const ALL: [Mutation; 5] =
        [Mutation::Truncated, Mutation::Signature, Mutation::Abi, Mutation::Relocation, Mutation::Unsigned];

    /// The file name in the store's `plugins/` folder.
    pub fn file_name(self) -> &'static str {
        match self {
            Mutation::Truncated => "bad-truncated.mvp",
            Mutation::Signature => "bad-signature.mvp",
            Mutation::Abi => "bad-abi.mvp",
            Mutation::Relocation => "bad-relocation.mvp",
            Mutation::Unsigned => "bad-unsigned.mvp",
        }
    }

    /// The store file made from the good plugin ELF `body`.
    pub fn apply(self, body: &[u8], key: &KeyPair) -> Result<Vec<u8>, ElfError> {
        let mut elf = body.to_vec();
        Ok(match self {
            Mutation::Truncated => sign(&body[..body.len() / 2], key),
            Mutation::Signature => {
                let mut file = sign(body, key);
                file[body.len()] ^= 1;
                file
            }
            Mutation::Abi => {
                let note_abi = note_descriptor_range(body)?.start;
                invert_u64(&mut elf, note_abi);
                invert_u64(&mut elf, descriptor_abi_offset(body)?);
                sign(&elf, key)
            }
            Mutation::Relocation => {
                set_relocation_type(&mut elf, first_relocation_offset(body)?, R_X86_64_COPY);
                sign(&elf, key)
            }
            Mutation::Unsigned => elf,
        })
    }
}

/// Replaces the little-endian u64 at `at` with its complement: a value
/// that certainly differs from the original.
pub fn invert_u64(bytes: &mut [u8], at: usize) {
    bytes[at..at + 8].iter_mut().for_each(|b| *b = !*b);
}

/// Sets the type (low 32 bits of `r_info`) of the Elf64_Rela at `at`,
/// keeping its symbol index.
pub fn set_relocation_type(bytes: &mut [u8], at: usize, ty: u32) {
    bytes[at + 8..at + 12].copy_from_slice(&ty.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(owner: &[u8], ty: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&(owner.len() as u32 + 1).to_le_bytes());
        n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        n.extend_from_slice(&ty.to_le_bytes());
        n.extend_from_slice(owner);
        n.push(0);
        n.resize(align4(n.len()), 0);
        n.extend_from_slice(desc);
        n.resize(align4(n.len()), 0);
        n
    }

    #[test]
    fn finds_the_modvisor_note_among_others() {
        let mut notes = note(b"GNU", 3, &[1, 2, 3, 4, 5]);
        let start = notes.len() + 12 + 12;
        notes.extend(note(NOTE_OWNER, NOTE_TYPE, b"12345678name=a\n"));
        assert_eq!(find_note_descriptor(&notes), Some(start..start + 15));
        assert_eq!(find_note_descriptor(&note(NOTE_OWNER, 1, b"x")), None, "other type");
        assert_eq!(find_note_descriptor(&note(b"modvisorx", NOTE_TYPE, b"x")), None, "other owner");
        let mut cut = note(NOTE_OWNER, NOTE_TYPE, b"12345678");
        cut.truncate(cut.len() - 1);
        assert_eq!(find_note_descriptor(&cut), None, "descriptor past the end");
        assert_eq!(find_note_descriptor(&[]), None);
    }

    #[test]
    fn byte_patches() {
        let mut b = 0x1122_3344_5566_7788u64.to_le_bytes().to_vec();
        b.insert(0, 0xaa);
        invert_u64(&mut b, 1);
        assert_eq!(b[0], 0xaa);
        assert_eq!(u64::from_le_bytes(b[1..].try_into().unwrap()), !0x1122_3344_5566_7788u64);

        // r_offset, r_info = symbol 3 / R_X86_64_GLOB_DAT (6), r_addend.
        let mut rela = [0x10u64, 3 << 32 | 6, 0].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        set_relocation_type(&mut rela, 0, R_X86_64_COPY);
        assert_eq!(u64::from_le_bytes(rela[8..16].try_into().unwrap()), 3 << 32 | 5);
        assert_eq!(u64::from_le_bytes(rela[..8].try_into().unwrap()), 0x10);
    }

    #[test]
    fn mutations_have_distinct_store_names() {
        let mut names: Vec<&str> = Mutation::ALL.iter().map(|m| m.file_name()).collect();
        names.dedup();
        assert_eq!(names.len(), Mutation::ALL.len());
        assert!(names.iter().all(|n| n.starts_with("bad-") && n.ends_with(".mvp")));
    }

    #[test]
    fn mutations_that_need_no_elf() {
        let key = KeyPair::from_seed(ed25519_compact::Seed::new([1; 32]));
        let body = b"0123456789";
        assert_eq!(Mutation::Unsigned.apply(body, &key).unwrap(), body);
        let truncated = Mutation::Truncated.apply(body, &key).unwrap();
        assert_eq!(plugins::sig::split(&truncated).unwrap().0, b"01234");
        let good = sign(body, &key);
        let flipped = Mutation::Signature.apply(body, &key).unwrap();
        let differing: Vec<usize> = (0..good.len()).filter(|&i| good[i] != flipped[i]).collect();
        assert_eq!(differing, [body.len()]);
        assert!(Mutation::Abi.apply(body, &key).unwrap_err().contains("ELF"));
    }
}
