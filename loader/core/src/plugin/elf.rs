//! Plugin files, up to the point where memory is involved: the signature
//! trailer, validation of the ELF shared object into a load [`Plan`], the
//! image layout, relocation and the descriptor check. The kernel's
//! `plugin::image` allocates frames, runs these steps on them and applies
//! the protections the plan asks for.
//!
//! What a plugin may be: an x86_64 little-endian ELF64 `ET_DYN` whose
//! `PT_LOAD` segments are in address order, never writable and executable
//! at once, and do not share pages, spanning at most [`MAX_IMAGE_SIZE`];
//! with a `.note.modvisor` metadata note whose ABI fingerprint is the
//! loader's; exporting [`plugins::DESCRIPTOR_SYMBOL`]; and with `RELA`
//! dynamic relocations of the four kinds a `-C relocation-model=pic`
//! build linked with `-shared` produces.

use crate::memory::frames::PAGE_SIZE;
use crate::memory::Protection;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader, Rela as _, SectionHeader, Sym as _, SymbolTable};
use object::{LittleEndian as LE, SymbolIndex};
use plugins::meta::{self, Metadata};

/// The public half of the tree's plugin signing key (see `build.rs`).
pub const SIGNING_KEY: [u8; 32] = *include_bytes!(concat!(env!("OUT_DIR"), "/plugin-signing.pub"));

/// Largest address span of a plugin image: far above any plugin we build,
/// low enough that a bad file cannot ask for all of memory.
pub const MAX_IMAGE_SIZE: u64 = 16 << 20;

/// Most `PT_LOAD` segments a plugin may have (rust-lld makes three).
pub const MAX_SEGMENTS: usize = 8;

mod error;

pub use error::{relocation_name, Error, Malformed};

type Header = elf::FileHeader64<LE>;

/// Splits a signed plugin file and verifies its signature with `key`;
/// returns the ELF bytes.
pub fn verify<'f>(file: &'f [u8], key: &[u8; 32]) -> Result<&'f [u8], Error> {
    let (body, signature) = plugins::sig::split(file).map_err(|_| Error::Unsigned)?;
    ed25519_compact::PublicKey::new(*key)
        .verify(body, &ed25519_compact::Signature::new(*signature))
        .map_err(|_| Error::BadSignature)?;
    Ok(body)
}

/// One `PT_LOAD` segment, placed in the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Offset of the segment's first byte from the image base.
    pub offset: u64,
    pub mem_size: u64,
    file_offset: u64,
    file_size: u64,
    pub protection: Protection,
}

impl Segment {
    /// The page-aligned image range `[start, end)` that holds the segment.
    pub fn pages(&self) -> (u64, u64) {
        (align_down(self.offset), align_up(self.offset + self.mem_size))
    }
}

/// A page-aligned range of the image and the protection it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub offset: u64,
    pub len: u64,
    pub protection: Protection,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// B + A
    Relative,
    /// S + A
    Abs64,
    /// S (GLOB_DAT and JUMP_SLOT)
    Symbol,
}

/// What `S` is for a relocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target<'a> {
    /// Symbol 0 or an `SHN_ABS` symbol: the value as it is.
    Absolute(u64),
    /// A symbol the plugin defines: its link-time address.
    Defined(u64),
    /// An undefined symbol, resolved by the caller.
    Import(&'a str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Relocation<'a> {
    /// Image offset of the 8 bytes to write.
    offset: u64,
    kind: Kind,
    target: Target<'a>,
    addend: i64,
}

/// A validated plugin ELF: where its segments go, what to relocate, where
/// its descriptor is. Borrows the ELF bytes.
#[derive(Debug)]
pub struct Plan<'a> {
    elf: &'a [u8],
    /// Bytes of address space the image needs (whole pages).
    pub size: u64,
    /// In address order, not sharing pages.
    pub segments: Vec<Segment>,
    pub metadata: Metadata<'a>,
    /// Image offset of the descriptor.
    pub descriptor: u64,
    /// The link-time address that the image base corresponds to.
    link_base: u64,
    relocations: Vec<Relocation<'a>>,
}

fn align_down(v: u64) -> u64 {
    v & !(PAGE_SIZE - 1)
}

fn align_up(v: u64) -> u64 {
    align_down(v + (PAGE_SIZE - 1))
}

/// Checks the identification bytes before `object` does, so the error says
/// which one is wrong.
fn check_ident(data: &[u8]) -> Result<(), Malformed> {
    // e_ident: magic [0..4], EI_CLASS [4], EI_DATA [5] (gABI, ELF header).
    let ident = data.get(..6).ok_or(Malformed::NotElf)?;
    if ident[..4] != elf::ELFMAG {
        return Err(Malformed::NotElf);
    }
    if ident[4] != elf::ELFCLASS64 {
        return Err(Malformed::NotElf64);
    }
    if ident[5] != elf::ELFDATA2LSB {
        return Err(Malformed::NotLittleEndian);
    }
    Ok(())
}

/// The `PT_LOAD` segments as image segments, and the link-time range
/// `[link_base, link_base + size)` they span.
fn segments(header: &Header, data: &[u8]) -> Result<(Vec<Segment>, u64, u64), Error> {
    let headers = header.program_headers(LE, data)?;
    let n = headers.iter().filter(|p| p.p_type(LE) == elf::PT_LOAD).count();
    if n > MAX_SEGMENTS {
        return Err(Malformed::TooManySegments(n).into());
    }
    let mut loads = Vec::with_capacity(n);
    let mut previous_end = 0;
    for (index, ph) in headers.iter().enumerate() {
        if ph.p_type(LE) != elf::PT_LOAD {
            continue;
        }
        let (vaddr, mem_size) = (ph.p_vaddr(LE), ph.p_memsz(LE));
        let (file_offset, file_size) = (ph.p_offset(LE), ph.p_filesz(LE));
        if mem_size == 0 {
            return Err(Malformed::EmptySegment { index }.into());
        }
        if file_size > mem_size {
            return Err(Malformed::FileSizeAboveMemSize { index, file_size, mem_size }.into());
        }
        let file_len = data.len() as u64;
        if file_offset.checked_add(file_size).is_none_or(|end| end > file_len) {
            return Err(Malformed::SegmentOutsideFile { index, offset: file_offset, size: file_size, file_len }.into());
        }
        let end = vaddr.checked_add(mem_size).and_then(|e| e.checked_add(PAGE_SIZE - 1));
        if end.is_none() {
            return Err(Malformed::AddressOverflow { index }.into());
        }
        let flags = ph.p_flags(LE);
        let protection = Protection::from_rights(flags & elf::PF_W != 0, flags & elf::PF_X != 0)
            .ok_or(Malformed::WritableAndExecutable { index })?;
        let start = align_down(vaddr);
        if !loads.is_empty() && start < previous_end {
            return Err(Malformed::Overlap { index, start, previous_end }.into());
        }
        previous_end = align_up(vaddr + mem_size);
        // `offset` is the link-time address until the base is known.
        loads.push(Segment { offset: vaddr, mem_size, file_offset, file_size, protection });
    }
    let first = loads.first().ok_or(Malformed::NoLoadSegments)?;
    let link_base = align_down(first.offset);
    let size = previous_end - link_base;
    if size > MAX_IMAGE_SIZE {
        return Err(Malformed::TooLarge { size }.into());
    }
    for s in &mut loads {
        s.offset -= link_base;
    }
    Ok((loads, link_base, size))
}

/// The metadata note's descriptor bytes.
fn metadata_note<'a>(
    sections: &object::read::elf::SectionTable<'a, Header>,
    data: &'a [u8],
) -> Result<&'a [u8], Error> {
    let (_, section) = sections.section_by_name(LE, meta::NOTE_SECTION.as_bytes()).ok_or(Malformed::NoMetadata)?;
    let mut notes = section.notes(LE, data)?.ok_or(Malformed::NoMetadata)?;
    while let Some(note) = notes.next()? {
        if note.name() == meta::NOTE_OWNER && note.n_type(LE) == meta::NOTE_TYPE {
            return Ok(note.desc());
        }
    }
    Err(Malformed::NoMetadata.into())
}

impl<'a> Plan<'a> {
    /// Validates a plugin ELF (without its signature trailer).
    pub fn parse(data: &'a [u8]) -> Result<Plan<'a>, Error> {
        check_ident(data)?;
        let header = Header::parse(data)?;
        let machine = header.e_machine(LE);
        if machine != elf::EM_X86_64 {
            return Err(Malformed::Machine(machine).into());
        }
        let ty = header.e_type(LE);
        if ty != elf::ET_DYN {
            return Err(Malformed::Type(ty).into());
        }
        let (segments, link_base, size) = segments(header, data)?;

        let sections = header.sections(LE, data)?;
        let note = metadata_note(&sections, data)?;
        let metadata = Metadata::parse(note).map_err(|e| Malformed::Metadata(e.to_string()))?;
        if metadata.abi != plugins::ABI_FINGERPRINT {
            let differences = plugins::abi::differences(&plugins::ITEMS, metadata.items()).collect();
            return Err(Error::AbiMismatch { plugin: metadata.abi, loader: plugins::ABI_FINGERPRINT, differences });
        }

        let mut plan = Plan { elf: data, size, segments, metadata, descriptor: 0, link_base, relocations: Vec::new() };
        let dynsym = sections.symbols(LE, data, elf::SHT_DYNSYM)?;
        plan.descriptor = plan.find_descriptor(&dynsym)?;
        for (index, section) in sections.enumerate() {
            let loaded = section.sh_flags(LE) & u64::from(elf::SHF_ALLOC) != 0;
            match section.sh_type(LE) {
                elf::SHT_RELA if loaded => {
                    if section.sh_link(LE) as usize != dynsym.section().0 {
                        return Err(Malformed::RelocationSymbols { section: index.0 }.into());
                    }
                    let (table, _) =
                        section.rela(LE, data)?.ok_or(Malformed::RelocationSymbols { section: index.0 })?;
                    for r in table {
                        plan.add_relocation(&dynsym, r)?;
                    }
                }
                t @ (elf::SHT_REL | elf::SHT_RELR) if loaded => {
                    return Err(Malformed::RelocationFormat { section_type: t }.into())
                }
                _ => {}
            }
        }
        Ok(plan)
    }

    /// Image offset of `[address, address + len)` when a segment's memory
    /// holds all of it.
    fn image_offset(&self, address: u64, len: u64) -> Option<u64> {
        let offset = address.checked_sub(self.link_base)?;
        let end = offset.checked_add(len)?;
        self.segments.iter().any(|s| s.offset <= offset && end <= s.offset + s.mem_size).then_some(offset)
    }

    fn find_descriptor(&self, dynsym: &SymbolTable<'a, Header>) -> Result<u64, Error> {
        let name = plugins::DESCRIPTOR_SYMBOL.as_bytes();
        let sym = dynsym
            .iter()
            .find(|s| !s.is_undefined(LE) && dynsym.symbol_name(LE, s) == Ok(name))
            .ok_or(Malformed::NoDescriptor)?;
        let (address, size) = (sym.st_value(LE), sym.st_size(LE));
        let need = core::mem::size_of::<plugins::Descriptor>() as u64;
        if size < need {
            return Err(Malformed::DescriptorTooSmall { size }.into());
        }
        let align = core::mem::align_of::<plugins::Descriptor>() as u64;
        match self.image_offset(address, need) {
            Some(offset) if offset % align == 0 => Ok(offset),
            _ => Err(Malformed::DescriptorPlacement { address }.into()),
        }
    }

    fn add_relocation(&mut self, dynsym: &SymbolTable<'a, Header>, r: &elf::Rela64<LE>) -> Result<(), Error> {
        let (r_type, address) = (r.r_type(LE, false), r.r_offset(LE));
        let kind = match r_type {
            elf::R_X86_64_NONE => return Ok(()),
            elf::R_X86_64_RELATIVE => Kind::Relative,
            elf::R_X86_64_64 => Kind::Abs64,
            elf::R_X86_64_GLOB_DAT | elf::R_X86_64_JUMP_SLOT => Kind::Symbol,
            _ => return Err(Error::UnsupportedRelocation { r_type, offset: address }),
        };
        let offset = self.image_offset(address, 8).ok_or(Malformed::RelocationOutsideSegments { offset: address })?;
        let index = r.r_sym(LE, false);
        let target = match (kind, index) {
            (Kind::Relative, _) | (_, 0) => Target::Absolute(0),
            _ => {
                let sym = dynsym.symbol(SymbolIndex(index as usize)).map_err(|_| Malformed::SymbolIndex { index })?;
                if sym.is_undefined(LE) {
                    let name = dynsym.symbol_name(LE, sym).ok().and_then(|n| core::str::from_utf8(n).ok());
                    match name {
                        Some(n) if !n.is_empty() => Target::Import(n),
                        _ => return Err(Malformed::SymbolName { index }.into()),
                    }
                } else if sym.st_shndx(LE) == elf::SHN_ABS {
                    Target::Absolute(sym.st_value(LE))
                } else {
                    Target::Defined(sym.st_value(LE))
                }
            }
        };
        self.relocations.push(Relocation { offset, kind, target, addend: r.r_addend(LE) });
        Ok(())
    }

    /// Writes the image into `image` (exactly [`Plan::size`] bytes): each
    /// segment's file bytes at its offset, zeros everywhere else.
    ///
    /// # Panics
    /// If `image` is not [`Plan::size`] bytes long.
    pub fn lay_out(&self, image: &mut [u8]) {
        assert_eq!(image.len() as u64, self.size, "the image buffer must be Plan::size bytes");
        image.fill(0);
        for s in &self.segments {
            // `parse` checked both ranges.
            let from = &self.elf[s.file_offset as usize..(s.file_offset + s.file_size) as usize];
            image[s.offset as usize..(s.offset + s.file_size) as usize].copy_from_slice(from);
        }
    }

    /// Applies the relocations to `image`, which will run at `base`;
    /// `resolve` gives the address of each import. Writes nothing unless
    /// every import resolves.
    pub fn relocate(&self, image: &mut [u8], base: u64, resolve: impl Fn(&str) -> Option<u64>) -> Result<(), Error> {
        let mut missing: Vec<String> = Vec::new();
        for r in &self.relocations {
            if let Target::Import(name) = r.target {
                if resolve(name).is_none() && !missing.iter().any(|m| m == name) {
                    missing.push(name.into());
                }
            }
        }
        if !missing.is_empty() {
            return Err(Error::MissingImports(missing));
        }
        // B in the psABI: what to add to a link-time address.
        let bias = base.wrapping_sub(self.link_base);
        for r in &self.relocations {
            let s = match r.target {
                Target::Absolute(v) => v,
                Target::Defined(v) => bias.wrapping_add(v),
                Target::Import(name) => resolve(name).ok_or_else(|| Error::MissingImports(alloc::vec![name.into()]))?,
            };
            let value = match r.kind {
                Kind::Relative => bias.wrapping_add_signed(r.addend),
                Kind::Abs64 => s.wrapping_add_signed(r.addend),
                Kind::Symbol => s,
            };
            let at = image
                .get_mut(r.offset as usize..r.offset as usize + 8)
                .ok_or(Malformed::RelocationOutsideSegments { offset: r.offset + self.link_base })?;
            at.copy_from_slice(&value.to_le_bytes());
        }
        Ok(())
    }

    /// Checks the relocated descriptor: magic, ABI fingerprint, and the
    /// entry points a `plugins::Descriptor` reference may not hold as null.
    pub fn check_descriptor(&self, image: &[u8]) -> Result<(), Error> {
        use core::mem::offset_of;
        use plugins::Descriptor;
        // `parse` placed the whole descriptor inside the image.
        let word = |field: usize| -> [u8; 8] {
            let at = self.descriptor as usize + field;
            image.get(at..at + 8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8])
        };
        let magic = word(offset_of!(Descriptor, magic));
        if magic != plugins::DESCRIPTOR_MAGIC {
            return Err(Error::DescriptorMagic { found: magic });
        }
        let abi = u64::from_le_bytes(word(offset_of!(Descriptor, abi)));
        if abi != plugins::ABI_FINGERPRINT {
            return Err(Error::DescriptorAbi { plugin: abi, loader: plugins::ABI_FINGERPRINT });
        }
        // Plain fn pointers: null is not a valid value for them.
        for (field, at) in [("init", offset_of!(Descriptor, init)), ("fini", offset_of!(Descriptor, fini))] {
            if word(at) == [0; 8] {
                return Err(Error::DescriptorNull { field });
            }
        }
        Ok(())
    }

    /// Protections covering the whole image: each segment's pages as its
    /// flags say, the pages between segments read-only.
    pub fn regions(&self) -> Vec<Region> {
        let mut out = Vec::new();
        let mut cursor = 0;
        for s in &self.segments {
            let (start, end) = s.pages();
            if start > cursor {
                out.push(Region { offset: cursor, len: start - cursor, protection: Protection::ReadOnly });
            }
            out.push(Region { offset: start, len: end - start, protection: s.protection });
            cursor = end;
        }
        out
    }
}

/// An interface a plugin provides or requires, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedLink {
    pub interface: String,
    /// A version (provides) or a semver range (requires).
    pub version: String,
    /// Bytes of the table: the provider's, or the one the consumer was
    /// built against.
    pub table_size: u64,
}

/// An owned copy of a plugin's metadata, for after the file is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedMetadata {
    pub abi: u64,
    pub name: String,
    pub version: String,
    pub provides: Vec<OwnedLink>,
    pub requires: Vec<OwnedLink>,
    /// CPU features (`plugins::meta::cpu`) the plugin needs.
    pub needs: u32,
}

impl From<&Metadata<'_>> for OwnedMetadata {
    fn from(m: &Metadata<'_>) -> Self {
        let own = |l: meta::Link| OwnedLink {
            interface: l.interface.to_string(),
            version: l.version.to_string(),
            table_size: l.table_size,
        };
        OwnedMetadata {
            abi: m.abi,
            name: m.name.into(),
            version: m.version.into(),
            provides: m.provides().map(own).collect(),
            requires: m.requires().map(own).collect(),
            needs: m.needs,
        }
    }
}

#[cfg(test)]
mod tests;
