//! Stacks with guard pages, in the stack region of `loader_core::memory::stacks`
//! (outside the identity map), mapped RW+NX with 4 KiB pages.

use super::{with_state, Error};
use loader_core::memory::frames::PAGE_SIZE;
use loader_core::memory::layout::Protection;
use loader_core::memory::stacks::{self, Slots};

static SLOTS: Slots = Slots::new();

/// A mapped stack; dropping it unmaps its pages and frees its frames.
#[derive(Debug)]
pub struct Stack {
    slot: usize,
    #[cfg(feature = "ktest")]
    pages: u64,
    /// Pages mapped so far, from the top down (all of them once `new`
    /// returns; fewer while `new` unwinds a failure).
    mapped: u64,
}

impl Stack {
    /// A stack of `pages` 4 KiB pages (1 ..= 511) with an unmapped guard
    /// page below it.
    pub fn new(pages: u64) -> Result<Stack, Error> {
        let mut stack = Stack {
            slot: SLOTS.claim(pages)?,
            #[cfg(feature = "ktest")]
            pages,
            mapped: 0,
        };
        // On failure `stack` is dropped, which undoes the pages mapped so far.
        with_state(|s| {
            while stack.mapped < pages {
                let frame = s.frames.alloc(1, 1)?;
                let virt = stack.top() - (stack.mapped + 1) * PAGE_SIZE;
                if let Err(e) = s.tables.map_page(virt, frame, Protection::ReadWrite, &mut s.frames) {
                    s.frames.free(frame, 1)?;
                    return Err(e);
                }
                stack.mapped += 1;
            }
            Ok(())
        })?;
        Ok(stack)
    }

    /// The initial stack pointer (16-byte aligned, as the SysV ABI wants).
    pub fn top(&self) -> u64 {
        stacks::slot_top(self.slot)
    }

    /// The lowest mapped address.
    #[cfg(feature = "ktest")]
    pub fn bottom(&self) -> u64 {
        self.top() - self.pages * PAGE_SIZE
    }

    /// The unmapped page just below the stack.
    #[cfg(feature = "ktest")]
    pub fn guard_page(&self) -> u64 {
        stacks::guard_page(self.slot, self.pages)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let r = with_state(|s| {
            for i in 0..self.mapped {
                let frame = s.tables.unmap_page(self.top() - (i + 1) * PAGE_SIZE)?;
                s.frames.free(frame, 1)?;
            }
            s.tables.free_stack_table(self.slot, &mut s.frames)
        });
        match r {
            // Without memory state `new` mapped nothing.
            Ok(()) | Err(Error::NotInitialized) => {}
            // The pages were mapped by `new` and nothing else maps this
            // slot: failing here means the memory state is corrupt.
            Err(e) => panic!("cannot release the stack in slot {}: {e}", self.slot),
        }
        SLOTS.release(self.slot);
    }
}

/// Whether a fault at `addr` hit below a live stack (its guard page or the
/// unmapped rest of its slot): a stack overflow. Takes no lock, so the
/// exception path may call it.
pub fn is_guard_page(addr: u64) -> bool {
    SLOTS.is_guard(addr)
}

/// Moves the running CPU onto `stack` and calls `f` there. The stack is
/// never freed (nothing can return to where it would be dropped), and the
/// old stack is abandoned: `f` takes no arguments, so nothing refers to it.
pub fn switch_stack(stack: Stack, f: extern "C" fn() -> !) -> ! {
    let top = stack.top();
    core::mem::forget(stack);
    // SAFETY: `top` is the 16-byte aligned end of a mapped, writable stack
    // that stays mapped forever (forgotten above), so `call` leaves the
    // stack aligned as the SysV ABI requires at function entry; %rbp = 0
    // ends frame-pointer walks there. `f` never returns.
    unsafe {
        core::arch::asm!(
            "mov rsp, {top}",
            "xor ebp, ebp",
            "call {f}",
            "ud2",
            top = in(reg) top,
            f = in(reg) f,
            options(noreturn)
        )
    }
}
