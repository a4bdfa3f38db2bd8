//! What the boot protocol tells us: command line, memory map, initrd, RSDP.
//! Both protocols end in the same [`BootInfo`].

#[cfg(feature = "ktest")]
mod ktests;
mod multiboot2;
mod pvh;

use loader_core::memory::memmap::{Range, RangeSet};
use tar_no_std::TarArchiveRef;

core::arch::global_asm!(include_str!("entry.S"), options(att_syntax));

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Pvh,
    Multiboot2,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Pvh => "PVH",
            Protocol::Multiboot2 => "multiboot2",
        }
    }
}

pub struct BootInfo {
    pub protocol: Protocol,
    pub cmdline: &'static str,
    /// RAM the firmware calls usable.
    pub usable: RangeSet,
    /// Memory the boot protocol's own structures and payloads occupy.
    pub in_use: RangeSet,
    pub initrd: Option<Range>,
    /// Physical RSDP address when the protocol passes one.
    pub rsdp: Option<u64>,
}

#[derive(Debug)]
pub enum Error {
    UnknownProtocol(u32),
    BadMagic { protocol: Protocol, found: u32 },
    NoMemoryMap(Protocol),
    BadStructure(&'static str),
    CommandLineNotUtf8,
    TooManyRanges,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::UnknownProtocol(p) => write!(f, "boot entry reported unknown protocol {p}"),
            Error::BadMagic { protocol, found } => {
                write!(f, "{} boot information has bad magic {found:#x}", protocol.name())
            }
            Error::NoMemoryMap(p) => write!(f, "the {} boot information has no memory map", p.name()),
            Error::BadStructure(what) => write!(f, "malformed boot information: {what}"),
            Error::CommandLineNotUtf8 => write!(f, "the kernel command line is not UTF-8"),
            Error::TooManyRanges => write!(f, "the firmware memory map has too many ranges"),
        }
    }
}

impl From<loader_core::memory::memmap::Error> for Error {
    fn from(_: loader_core::memory::memmap::Error) -> Self {
        Error::TooManyRanges
    }
}

/// The initrd's bytes, if the boot protocol passed one.
pub fn initrd() -> Option<&'static [u8]> {
    let r = crate::boot_info().0.initrd?;
    // SAFETY: the boot protocol put the initrd there; it is identity-mapped
    // and reserved (`in_use`), so nothing writes over it.
    Some(unsafe { core::slice::from_raw_parts(r.start as *const u8, r.len() as usize) })
}

/// The file `name` (a path inside the archive, e.g. `plugins/x-1.0.0.mvp`)
/// in the initrd, a ustar archive; `None` without an initrd, if it is not an
/// archive, or if it has no such file.
pub fn initrd_file(name: &str) -> Option<&'static [u8]> {
    let archive = TarArchiveRef::new(initrd()?).ok()?;
    let entry = archive.entries().find(|e| e.filename().as_str() == Ok(name))?;
    Some(entry.data())
}

/// Values passed by `entry.S` in %edi.
const PROTOCOL_PVH: u32 = 1;
const PROTOCOL_MB2: u32 = 2;

/// Reads the boot information left by the firmware or boot loader.
///
/// # Safety
/// `info` must be the physical address the boot protocol passed in %ebx, and
/// memory below 4 GiB must be identity-mapped (it is, by `entry.S`).
pub unsafe fn parse(protocol: u32, info: u64) -> Result<BootInfo, Error> {
    match protocol {
        // SAFETY: forwarded from the caller.
        PROTOCOL_PVH => unsafe { pvh::parse(info) },
        // SAFETY: forwarded from the caller.
        PROTOCOL_MB2 => unsafe { multiboot2::parse(info) },
        p => Err(Error::UnknownProtocol(p)),
    }
}

/// A NUL-terminated string at physical address `addr`, as UTF-8.
///
/// # Safety
/// `addr` must point at a NUL-terminated string in identity-mapped memory
/// that is never written again.
unsafe fn c_str(addr: u64) -> Result<&'static str, Error> {
    if addr == 0 {
        return Ok("");
    }
    // SAFETY: the caller guarantees a NUL-terminated, immutable string.
    let s = unsafe { core::ffi::CStr::from_ptr(addr as *const core::ffi::c_char) };
    s.to_str().map_err(|_| Error::CommandLineNotUtf8)
}
