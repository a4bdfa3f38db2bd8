//! The memory component's decisions, kept apart from the hardware so the
//! host can test them: what RAM is usable, how the identity map is laid out
//! and protected, how page tables are read and split, where stacks go, and
//! the component's one error type. The kernel's `memory` module applies them
//! (frame bitmap, CR3, heap, stacks).

pub mod frames;
pub mod layout;
pub mod memmap;
pub mod stacks;
pub mod walk;

pub use layout::Protection;

use core::fmt;

/// Every way the memory component can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The frame allocator refused (out of memory, double free, ...).
    Frames(frames::Error),
    /// The usable-memory computation needed more ranges than
    /// [`crate::memory::memmap::MAX_RANGES`].
    TooManyRanges,
    /// No usable range below 4 GiB holds the frame bitmap.
    NoRoomForBitmap { bytes: u64 },
    /// The CPU cannot mark pages non-executable.
    NoExecuteUnsupported,
    /// The linker script's section symbols are out of order or unaligned.
    BadImageLayout(layout::ImageSections),
    /// A range handed to `protect` is empty or not 4 KiB aligned.
    Unaligned { start: u64, len: u64 },
    /// A range handed to `protect` reaches past the identity map.
    OutsideIdentityMap { start: u64, len: u64, top: u64 },
    /// A range handed to `protect` overlaps the loader's own image, whose
    /// protections are fixed (W^X).
    LoaderImage { start: u64, len: u64 },
    /// The page at `addr` is not mapped.
    NotMapped { addr: u64 },
    /// A page table already maps `addr` where a new mapping was to go.
    AlreadyMapped { addr: u64 },
    /// A page that should be unmapped by now is still mapped (a page table
    /// about to be freed still maps `addr`).
    StillMapped { addr: u64 },
    /// A large page covers `addr` where a page table was expected.
    LargePageInTheWay { addr: u64 },
    /// the kernel's `memory::init` has not run yet.
    NotInitialized,
    /// the kernel's `memory::init` ran already.
    AlreadyInitialized,
    /// A stack must have between 1 and [`stacks::MAX_PAGES`] pages.
    StackSize { pages: u64 },
    /// Every stack slot is in use.
    NoStackSlot,
}

impl From<frames::Error> for Error {
    fn from(e: frames::Error) -> Self {
        Error::Frames(e)
    }
}

impl From<crate::memory::memmap::Error> for Error {
    fn from(_: crate::memory::memmap::Error) -> Self {
        Error::TooManyRanges
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Frames(e) => e.fmt(f),
            Error::TooManyRanges => write!(
                f,
                "usable memory is split into more than {} ranges; the firmware memory map is too \
                 fragmented for the loader",
                crate::memory::memmap::MAX_RANGES
            ),
            Error::NoRoomForBitmap { bytes } => write!(
                f,
                "no usable RAM range below 4 GiB can hold the {} KiB frame bitmap; give the \
                 machine more low memory",
                bytes / 1024
            ),
            Error::NoExecuteUnsupported => write!(
                f,
                "the CPU lacks the execute-disable bit (CPUID 80000001h:EDX[20]), so the loader \
                 cannot enforce W^X; use a CPU model with NX (e.g. QEMU -cpu max)"
            ),
            Error::BadImageLayout(s) => write!(
                f,
                "the loader image's section symbols are out of order or not page aligned ({s}); \
                 check loader/linker.ld"
            ),
            Error::Unaligned { start, len } => write!(
                f,
                "cannot change protection of {len:#x} bytes at {start:#x}: start and length must \
                 be non-zero multiples of 4 KiB"
            ),
            Error::OutsideIdentityMap { start, len, top } => write!(
                f,
                "cannot change protection of {len:#x} bytes at {start:#x}: the identity map ends \
                 at {top:#x}"
            ),
            Error::LoaderImage { start, len } => write!(
                f,
                "cannot change protection of {len:#x} bytes at {start:#x}: the range overlaps the \
                 loader image, whose W^X protections are fixed"
            ),
            Error::NotMapped { addr } => write!(f, "the page at {addr:#x} is not mapped"),
            Error::AlreadyMapped { addr } => {
                write!(f, "cannot map {addr:#x}: something is already mapped there")
            }
            Error::StillMapped { addr } => write!(
                f,
                "the page at {addr:#x} is still mapped although its page table is being freed; \
                 the memory state is inconsistent"
            ),
            Error::LargePageInTheWay { addr } => {
                write!(f, "cannot map {addr:#x} with 4 KiB pages: a large page covers it")
            }
            Error::NotInitialized => write!(f, "memory management is not initialised yet (mem::init)"),
            Error::AlreadyInitialized => write!(f, "memory management is already initialised"),
            Error::StackSize { pages } => {
                write!(f, "a stack of {pages} pages is not possible: ask for 1 to {} pages", stacks::MAX_PAGES)
            }
            Error::NoStackSlot => {
                write!(f, "all {} stack slots are in use; drop stacks that are no longer needed", stacks::SLOTS)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn messages_carry_the_numbers() {
        let e = Error::from(frames::Error::OutOfMemory { requested: 3 });
        assert_eq!(e.to_string(), frames::Error::OutOfMemory { requested: 3 }.to_string());
        let e = Error::OutsideIdentityMap { start: 0x1000, len: 0x2000, top: 0x1_0000_0000 }.to_string();
        assert!(e.contains("0x1000") && e.contains("0x2000") && e.contains("0x100000000"), "{e}");
        assert!(Error::StackSize { pages: 0 }.to_string().contains("1 to 511"));
    }
}
