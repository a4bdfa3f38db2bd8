//! Where guarded stacks live: a 1 GiB virtual region outside the identity
//! map, cut into 2 MiB slots. A stack occupies the top of its slot; every
//! page of the slot below it stays unmapped, so an overflow, however large
//! its frame, faults inside the slot. One slot is exactly the span of one
//! page table, which is allocated with the stack and freed with it.
//!
//! The slot table is lock-free so that the exception path can ask
//! [`Slots::is_guard`] even if the fault hit while memory locks were held.

use super::layout::LARGE_PAGE_SIZE;
use super::Error;
use crate::memory::frames::PAGE_SIZE;
use core::sync::atomic::{AtomicU16, Ordering};

/// PML4 entry 384, PDPT entry 0: far from the identity map and from where
/// plugins will be mapped.
pub const REGION_START: u64 = 0xffff_c000_0000_0000;
pub const SLOT_BYTES: u64 = LARGE_PAGE_SIZE;
pub const SLOTS: usize = 512;
pub const REGION_END: u64 = REGION_START + SLOTS as u64 * SLOT_BYTES;
/// A slot minus the one guard page.
pub const MAX_PAGES: u64 = SLOT_BYTES / PAGE_SIZE - 1;

const _: () = assert!(MAX_PAGES <= u16::MAX as u64);

/// Lowest address of `slot`.
pub const fn slot_base(slot: usize) -> u64 {
    REGION_START + slot as u64 * SLOT_BYTES
}

/// Initial stack pointer of the stack in `slot`.
pub const fn slot_top(slot: usize) -> u64 {
    slot_base(slot) + SLOT_BYTES
}

/// The unmapped page just below a stack of `pages` pages in `slot`.
pub const fn guard_page(slot: usize, pages: u64) -> u64 {
    slot_top(slot) - (pages + 1) * PAGE_SIZE
}

/// Which slots hold a stack, and how many pages each has.
pub struct Slots {
    /// 0: free; otherwise the stack's size in pages.
    pages: [AtomicU16; SLOTS],
}

impl Default for Slots {
    fn default() -> Self {
        Self::new()
    }
}

impl Slots {
    pub const fn new() -> Slots {
        Slots { pages: [const { AtomicU16::new(0) }; SLOTS] }
    }

    /// Takes the lowest free slot for a stack of `pages` pages.
    pub fn claim(&self, pages: u64) -> Result<usize, Error> {
        if pages == 0 || pages > MAX_PAGES {
            return Err(Error::StackSize { pages });
        }
        self.pages
            .iter()
            .position(|p| p.compare_exchange(0, pages as u16, Ordering::AcqRel, Ordering::Relaxed).is_ok())
            .ok_or(Error::NoStackSlot)
    }

    /// Gives `slot` back, after its pages are unmapped.
    pub fn release(&self, slot: usize) {
        self.pages[slot].store(0, Ordering::Release);
    }

    /// Whether `addr` lies below a live stack inside its slot: the guard
    /// page or the unmapped rest of the slot. A fault there is a stack
    /// overflow.
    pub fn is_guard(&self, addr: u64) -> bool {
        if !(REGION_START..REGION_END).contains(&addr) {
            return false;
        }
        let slot = ((addr - REGION_START) / SLOT_BYTES) as usize;
        match self.pages[slot].load(Ordering::Acquire) {
            0 => false,
            pages => addr < slot_top(slot) - pages as u64 * PAGE_SIZE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_is_one_pdpt_entry() {
        assert_eq!((REGION_START >> 39) & 511, 384);
        assert_eq!((REGION_START >> 30) & 511, 0);
        assert_eq!(REGION_END - REGION_START, 1 << 30);
        assert_eq!(MAX_PAGES, 511);
    }

    #[test]
    fn slots_are_claimed_lowest_first_and_reused() {
        let s = Slots::new();
        assert_eq!(s.claim(4), Ok(0));
        assert_eq!(s.claim(MAX_PAGES), Ok(1));
        assert_eq!(s.claim(1), Ok(2));
        s.release(1);
        assert_eq!(s.claim(8), Ok(1));
    }

    #[test]
    fn sizes_are_checked_and_slots_run_out() {
        let s = Slots::new();
        assert_eq!(s.claim(0), Err(Error::StackSize { pages: 0 }));
        assert_eq!(s.claim(MAX_PAGES + 1), Err(Error::StackSize { pages: MAX_PAGES + 1 }));
        for i in 0..SLOTS {
            assert_eq!(s.claim(1), Ok(i));
        }
        assert_eq!(s.claim(1), Err(Error::NoStackSlot));
    }

    #[test]
    fn guard_covers_the_slot_below_a_live_stack() {
        let s = Slots::new();
        let slot = s.claim(2).unwrap();
        let _other = s.claim(3).unwrap();
        let top = slot_top(slot);
        assert_eq!(guard_page(slot, 2), top - 3 * PAGE_SIZE);
        assert!(s.is_guard(guard_page(slot, 2)));
        assert!(s.is_guard(guard_page(slot, 2) + PAGE_SIZE - 1));
        assert!(s.is_guard(slot_base(slot)), "a large frame jumping over the guard page");
        assert!(!s.is_guard(top - 2 * PAGE_SIZE), "the stack itself");
        assert!(!s.is_guard(top - 1));
        assert!(!s.is_guard(slot_base(2)), "a free slot is not a stack");
        assert!(!s.is_guard(0x1000));
        assert!(!s.is_guard(REGION_END));
        s.release(slot);
        assert!(!s.is_guard(guard_page(slot, 2)), "a dropped stack has no guard");
    }
}
