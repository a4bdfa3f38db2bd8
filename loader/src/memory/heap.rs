//! The kernel heap: `linked_list_allocator` over one contiguous run of
//! frames taken at `memory::init`. A failed allocation returns null, so
//! `try_reserve` and friends report it; an infallible allocation that fails
//! ends in the allocation-error panic.
//!
//! The heap lock is a plain spinlock: interrupt and exception handlers must
//! not allocate.

use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Hands `[start, start + bytes)` to the heap.
///
/// # Safety
/// The range must be identity-mapped RW memory that nothing else uses and
/// that is never freed; call once.
pub unsafe fn init(start: u64, bytes: u64) {
    // SAFETY: forwarded from the caller.
    unsafe { HEAP.lock().init(start as *mut u8, bytes as usize) };
}

/// Heap size and bytes in use (both 0 before `init`).
pub fn usage() -> (u64, u64) {
    let heap = HEAP.lock();
    (heap.size() as u64, heap.used() as u64)
}
