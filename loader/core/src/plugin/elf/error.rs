//! Every way a plugin file can fail to load, worded for the shell user
//! (what is wrong and what to do), and the psABI names of relocations.

use crate::memory;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use object::elf;
use plugins::abi::Difference;
use plugins::meta;

use super::{MAX_IMAGE_SIZE, MAX_SEGMENTS};

/// Every way loading a plugin file can fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// No signature trailer: never signed, or cut short.
    Unsigned,
    /// The signature does not match this tree's key.
    BadSignature,
    /// The ELF file breaks a rule; the reason says which.
    Malformed(Malformed),
    /// The metadata note's ABI fingerprint is not the loader's; the items
    /// of the ABI that differ, when the note's item list tells.
    AbiMismatch { plugin: u64, loader: u64, differences: Vec<Difference> },
    /// The descriptor does not start with [`plugins::DESCRIPTOR_MAGIC`].
    DescriptorMagic { found: [u8; 8] },
    /// The descriptor's ABI fingerprint (after relocation) is not the loader's.
    DescriptorAbi { plugin: u64, loader: u64 },
    /// A descriptor entry point that must be set is null after relocation.
    DescriptorNull { field: &'static str },
    /// A relocation of a type the loader does not apply.
    UnsupportedRelocation { r_type: u32, offset: u64 },
    /// Imports the resolver does not provide, each named once.
    MissingImports(Vec<String>),
    /// No contiguous run of frames for the image.
    OutOfMemory { bytes: u64, error: memory::Error },
    /// Changing the protection of the image's pages failed.
    Protect { offset: u64, len: u64, error: memory::Error },
}

/// Why an ELF file is not a loadable plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Malformed {
    NotElf,
    NotElf64,
    NotLittleEndian,
    Machine(u16),
    Type(u16),
    /// The `object` crate could not read a structure (offsets, sizes).
    Structure(object::read::Error),
    NoLoadSegments,
    TooManySegments(usize),
    EmptySegment {
        index: usize,
    },
    SegmentOutsideFile {
        index: usize,
        offset: u64,
        size: u64,
        file_len: u64,
    },
    FileSizeAboveMemSize {
        index: usize,
        file_size: u64,
        mem_size: u64,
    },
    AddressOverflow {
        index: usize,
    },
    WritableAndExecutable {
        index: usize,
    },
    /// The segment's first page is below the previous segment's last page.
    Overlap {
        index: usize,
        start: u64,
        previous_end: u64,
    },
    TooLarge {
        size: u64,
    },
    NoMetadata,
    Metadata(String),
    NoDescriptor,
    DescriptorTooSmall {
        size: u64,
    },
    DescriptorPlacement {
        address: u64,
    },
    /// An allocated relocation table in a format other than RELA.
    RelocationFormat {
        section_type: u32,
    },
    /// A RELA table that refers to a symbol table other than `.dynsym`.
    RelocationSymbols {
        section: usize,
    },
    RelocationOutsideSegments {
        offset: u64,
    },
    SymbolIndex {
        index: u32,
    },
    SymbolName {
        index: u32,
    },
}

impl From<Malformed> for Error {
    fn from(m: Malformed) -> Self {
        Error::Malformed(m)
    }
}

impl From<object::read::Error> for Error {
    fn from(e: object::read::Error) -> Self {
        Error::Malformed(Malformed::Structure(e))
    }
}

/// The psABI name of an x86_64 relocation type (System V AMD64 ABI,
/// table 4.9 and the TLS additions).
pub fn relocation_name(r_type: u32) -> Option<&'static str> {
    const NAMES: [&str; 43] = [
        "NONE",
        "64",
        "PC32",
        "GOT32",
        "PLT32",
        "COPY",
        "GLOB_DAT",
        "JUMP_SLOT",
        "RELATIVE",
        "GOTPCREL",
        "32",
        "32S",
        "16",
        "PC16",
        "8",
        "PC8",
        "DTPMOD64",
        "DTPOFF64",
        "TPOFF64",
        "TLSGD",
        "TLSLD",
        "DTPOFF32",
        "GOTTPOFF",
        "TPOFF32",
        "PC64",
        "GOTOFF64",
        "GOTPC32",
        "GOT64",
        "GOTPCREL64",
        "GOTPC64",
        "GOTPLT64",
        "PLTOFF64",
        "SIZE32",
        "SIZE64",
        "GOTPC32_TLSDESC",
        "TLSDESC_CALL",
        "TLSDESC",
        "IRELATIVE",
        "RELATIVE64",
        "",
        "",
        "GOTPCRELX",
        "REX_GOTPCRELX",
    ];
    NAMES.get(r_type as usize).copied().filter(|n| !n.is_empty())
}

/// `R_X86_64_COPY (5)`, or `unknown type 99`.
struct RelocationType(u32);

impl fmt::Display for RelocationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match relocation_name(self.0) {
            Some(n) => write!(f, "R_X86_64_{n} ({})", self.0),
            None => write!(f, "unknown type {}", self.0),
        }
    }
}

const REBUILD: &str =
    "rebuild the plugin with the runner (a -C relocation-model=pic staticlib linked by rust-lld -shared)";

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unsigned => write!(
                f,
                "the plugin file has no modvisor signature trailer: it is unsigned or truncated; sign it with the \
                 runner, and check the whole file reached the initrd"
            ),
            Error::BadSignature => write!(
                f,
                "the plugin's signature does not verify with this loader's key: it was changed after signing, or \
                 signed with another tree's keys/plugin-signing.key; sign it again in this tree"
            ),
            Error::Malformed(m) => write!(f, "malformed plugin ELF: {m}"),
            Error::AbiMismatch { plugin, loader, differences } if differences.is_empty() => write!(
                f,
                "the plugin says ABI {plugin:016x}, the loader has ABI {loader:016x}, yet every item of the \
                 plugin's ABI is the loader's: the note was changed after the build; rebuild the plugin"
            ),
            Error::AbiMismatch { plugin, loader, differences } => {
                write!(f, "the plugin was built for ABI {plugin:016x}, the loader has ABI {loader:016x}: ")?;
                for (i, d) in differences.iter().enumerate() {
                    write!(f, "{}{d}", if i == 0 { "" } else { ", " })?;
                }
                write!(f, "; rebuild the plugin against this tree's SDK (plugins::ffi)")
            }
            Error::DescriptorMagic { found } => write!(
                f,
                "the plugin's {} does not start with the descriptor magic {:?} (found {found:02x?}); declare it \
                 with plugins::plugin!",
                plugins::DESCRIPTOR_SYMBOL,
                core::str::from_utf8(&plugins::DESCRIPTOR_MAGIC).unwrap_or("")
            ),
            Error::DescriptorAbi { plugin, loader } => write!(
                f,
                "the plugin's descriptor says ABI {plugin:016x}, the loader has ABI {loader:016x}, unlike its \
                 metadata note: rebuild the plugin against this tree's SDK"
            ),
            Error::DescriptorNull { field } => write!(
                f,
                "the plugin descriptor's `{field}` is null after relocation; declare the plugin with \
                 plugins::plugin!"
            ),
            Error::UnsupportedRelocation { r_type, offset } => write!(
                f,
                "relocation {} at {offset:#x} is not supported (the loader applies R_X86_64_RELATIVE, 64, \
                 GLOB_DAT and JUMP_SLOT); {REBUILD}",
                RelocationType(*r_type)
            ),
            Error::MissingImports(names) => {
                write!(f, "the plugin imports symbols the loader does not export: ")?;
                for (i, n) in names.iter().enumerate() {
                    write!(f, "{}{n}", if i == 0 { "" } else { ", " })?;
                }
                write!(f, "; plugins may call only the plugins::LOADER_EXPORTS functions (mv_*)")
            }
            Error::OutOfMemory { bytes, error } => {
                write!(f, "no {} KiB of contiguous memory for the plugin image: {error}", bytes / 1024)
            }
            Error::Protect { offset, len, error } => {
                write!(f, "cannot protect {len:#x} bytes at image offset {offset:#x}: {error}")
            }
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::NotElf => write!(f, "the file does not start with the ELF magic"),
            Malformed::NotElf64 => write!(f, "not a 64-bit ELF file"),
            Malformed::NotLittleEndian => write!(f, "not a little-endian ELF file"),
            Malformed::Machine(m) => write!(f, "machine {m} is not x86_64 ({})", elf::EM_X86_64),
            Malformed::Type(t) => {
                write!(f, "ELF type {t} is not a shared object (ET_DYN, {}); {REBUILD}", elf::ET_DYN)
            }
            Malformed::Structure(e) => write!(f, "{e}"),
            Malformed::NoLoadSegments => write!(f, "no PT_LOAD segment"),
            Malformed::TooManySegments(n) => write!(f, "{n} PT_LOAD segments, more than {MAX_SEGMENTS}"),
            Malformed::EmptySegment { index } => write!(f, "program header {index}: PT_LOAD with no memory"),
            Malformed::SegmentOutsideFile { index, offset, size, file_len } => write!(
                f,
                "program header {index}: {size:#x} file bytes at offset {offset:#x} reach past the end of the \
                 {file_len:#x}-byte file"
            ),
            Malformed::FileSizeAboveMemSize { index, file_size, mem_size } => {
                write!(f, "program header {index}: file size {file_size:#x} is larger than memory size {mem_size:#x}")
            }
            Malformed::AddressOverflow { index } => {
                write!(f, "program header {index}: the segment's addresses overflow 64 bits")
            }
            Malformed::WritableAndExecutable { index } => {
                write!(f, "program header {index}: a segment both writable and executable breaks W^X; {REBUILD}")
            }
            Malformed::Overlap { index, start, previous_end } => write!(
                f,
                "program header {index}: the segment's first page {start:#x} is below the end {previous_end:#x} \
                 of the previous segment's pages; segments must be in address order and not share pages"
            ),
            Malformed::TooLarge { size } => {
                write!(f, "the segments span {size:#x} bytes, more than the limit {MAX_IMAGE_SIZE:#x}")
            }
            Malformed::NoMetadata => write!(
                f,
                "no metadata note (owner `modvisor`, type {:#x}) in a section {}; declare the plugin with \
                 plugins::plugin!",
                meta::NOTE_TYPE,
                meta::NOTE_SECTION
            ),
            Malformed::Metadata(e) => write!(f, "bad metadata note: {e}"),
            Malformed::NoDescriptor => write!(
                f,
                "no defined dynamic symbol {}; declare the plugin with plugins::plugin! and link with a version \
                 script that exports it",
                plugins::DESCRIPTOR_SYMBOL
            ),
            Malformed::DescriptorTooSmall { size } => write!(
                f,
                "the symbol {} has {size} bytes, a descriptor has {}: plugin and loader disagree on the SDK",
                plugins::DESCRIPTOR_SYMBOL,
                core::mem::size_of::<plugins::Descriptor>()
            ),
            Malformed::DescriptorPlacement { address } => {
                write!(f, "the descriptor at {address:#x} is not 8-byte aligned inside a loaded segment")
            }
            Malformed::RelocationFormat { section_type } => write!(
                f,
                "a loaded relocation table of section type {section_type} (the loader reads only RELA, type {}); \
                 {REBUILD}",
                elf::SHT_RELA
            ),
            Malformed::RelocationSymbols { section } => {
                write!(f, "relocation section {section} does not refer to the dynamic symbol table")
            }
            Malformed::RelocationOutsideSegments { offset } => {
                write!(f, "a relocation at {offset:#x} does not lie inside a loaded segment")
            }
            Malformed::SymbolIndex { index } => {
                write!(f, "a relocation refers to dynamic symbol {index}, which does not exist")
            }
            Malformed::SymbolName { index } => write!(f, "dynamic symbol {index} has no valid UTF-8 name"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn every_error_says_what_to_do() {
        let errors = [
            Error::Unsigned,
            Error::BadSignature,
            Error::Malformed(Malformed::Type(2)),
            Error::AbiMismatch { plugin: 1, loader: 2, differences: vec![] },
            Error::AbiMismatch { plugin: 1, loader: 2, differences: vec![Difference::Missing("export mv_new")] },
            Error::DescriptorMagic { found: [0; 8] },
            Error::DescriptorAbi { plugin: 1, loader: 2 },
            Error::DescriptorNull { field: "init" },
            Error::UnsupportedRelocation { r_type: 5, offset: 0x10 },
            Error::MissingImports(vec!["x".into()]),
            Error::OutOfMemory { bytes: 0x3000, error: memory::Error::NotInitialized },
            Error::Protect { offset: 0, len: 0x1000, error: memory::Error::NotInitialized },
        ];
        for e in errors {
            let text = e.to_string();
            assert!(text.len() > 40, "{e:?}: `{text}` is too terse");
        }
    }
}
