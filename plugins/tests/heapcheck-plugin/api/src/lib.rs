//! The `heapcheck` interface: heapcheck-plugin's allocations on request,
//! for the in-image `heap` suite, which checks them against the loader's
//! account of the plugin. A crate of its own, so that a caller depends on
//! the interface, not on the plugin's code.
#![no_std]

/// The size of the block each version hands to the next by pointer.
pub const HANDED_BYTES: usize = 256;

/// The `heapcheck` interface table. Sizes are in bytes; the blocks are
/// byte-aligned.
#[repr(C)]
pub struct Heapcheck {
    /// 1 for 1.0.0, 2 for 2.0.0.
    pub generation: extern "C" fn() -> u32,
    /// Allocates `bytes` that this version keeps until its fini or retire
    /// frees them; 0, or -1 when refused (no memory, or 16 held already).
    pub hold: extern "C" fn(bytes: usize) -> i32,
    /// Allocates `bytes` and forgets them: a leak for the loader to find
    /// when this version goes. 0 or -1.
    pub leak: extern "C" fn(bytes: usize) -> i32,
    /// Allocates `bytes` and gives them to the caller, who frees them
    /// (size `bytes`, alignment 1); null when refused.
    pub give: extern "C" fn(bytes: usize) -> *mut u8,
    /// The address of the block of [`HANDED_BYTES`] this version owns and
    /// hands to its successor by pointer in the swap state.
    pub handed: extern "C" fn() -> u64,
    /// The next version's state import adopts the handed block and then
    /// refuses the state: a swap called off after an adoption. Applies to
    /// the next swap only.
    pub refuse_next_import: extern "C" fn(),
}

// SAFETY: `Heapcheck` is the `heapcheck` table.
unsafe impl plugins::Interface for Heapcheck {
    const NAME: &'static str = "heapcheck";
    const VERSION: &'static str = "1.0.0";
}
