//! Memory: the physical frame allocator, the loader's own page tables
//! (identity map with W^X), page protection changes, the kernel heap and
//! guarded stacks. The decisions live in the library (`loader_core::memory::frames`,
//! `loader_core::memory`); this module applies them to the hardware.
//!
//! One lock guards the frame allocator and the page tables. It is taken
//! with interrupts masked, so an interrupt handler can never spin on a lock
//! its own CPU holds; exception handlers must not call into this module
//! except [`is_guard_page`], which takes no lock.

mod heap;
#[cfg(feature = "ktest")]
mod ktests;
mod paging;
mod stacks;

pub use loader_core::memory::walk::Leaf;
pub use loader_core::memory::{Error, Protection};
pub use stacks::{is_guard_page, switch_stack, Stack};

use crate::boot::BootInfo;
use loader_core::memory::frames::{self, FrameAllocator, PAGE_SIZE};
use loader_core::memory::layout::{self, ImageSections, Plan, BOOT_MAP_END};
use loader_core::memory::memmap::Range;
use paging::Tables;
use spin::Mutex;

struct State {
    frames: FrameAllocator<'static>,
    tables: Tables,
    plan: Plan,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Runs `f` on the memory state, with interrupts masked.
fn with_state<R>(f: impl FnOnce(&mut State) -> Result<R, Error>) -> Result<R, Error> {
    x86_64::instructions::interrupts::without_interrupts(|| match STATE.lock().as_mut() {
        Some(s) => f(s),
        None => Err(Error::NotInitialized),
    })
}

/// Takes over memory management from the boot code: frame allocator over
/// free RAM, the loader's page tables (loaded into CR3), and the heap.
pub fn init(boot: &BootInfo) -> Result<(), Error> {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut state = STATE.lock();
        if state.is_some() {
            return Err(Error::AlreadyInitialized);
        }
        paging::enable_nx_and_wp()?;
        let image = image_sections();
        let plan = Plan::new(image, layout::identity_top(&boot.usable))?;

        let mut usable = layout::usable(&boot.usable, &boot.in_use, image.range())?;
        // The bitmap is written right away, through the boot map.
        let bitmap_range = frames::place_bitmap(&usable, BOOT_MAP_END)
            .ok_or(Error::NoRoomForBitmap { bytes: frames::bitmap_words(&usable) as u64 * 8 })?;
        usable.remove(bitmap_range)?;
        // SAFETY: the range is usable RAM that nothing else uses (it was
        // just taken out of the set the allocator will manage), below 4 GiB
        // so identity-mapped by the boot map and by the tables built below,
        // and it is never freed.
        let bitmap = unsafe { paging::ram_words(bitmap_range) };
        let mut frames = FrameAllocator::new(bitmap, &usable)?;

        let tables = Tables::build(&plan, &mut frames)?;
        // SAFETY: `build` mapped everything the loader touches at the same
        // addresses: its image (so this code and the boot stack), all RAM
        // (boot structures, the bitmap, page tables) and the first 4 GiB.
        unsafe { tables.activate() };

        let heap_bytes = layout::heap_bytes(frames.free_frames() * PAGE_SIZE);
        let heap_start = frames.alloc(heap_bytes / PAGE_SIZE, 1)?;
        // SAFETY: freshly allocated, identity-mapped RW, and never freed.
        unsafe { heap::init(heap_start, heap_bytes) };

        const MIB: u64 = 1 << 20;
        log::info!(
            "memory: {} MiB free of {} MiB usable ({} ranges), heap {} MiB at {:#x}, bitmap at {:#x}, \
             identity map to {:#x}",
            frames.free_frames() * PAGE_SIZE / MIB,
            frames.total_frames() * PAGE_SIZE / MIB,
            usable.iter().count(),
            heap_bytes / MIB,
            heap_start,
            bitmap_range.start,
            plan.top(),
        );
        *state = Some(State { frames, tables, plan });
        Ok(())
    })
}

/// Changes the protection of `[start, start + len)` in the identity map,
/// 4 KiB aligned, splitting large pages as needed, and flushes the TLB of
/// this CPU only. Page 0 and the loader image cannot be changed; anything
/// else can, so callers must own the range (frames they allocated, the SMP
/// trampoline pages): write-protecting the heap or a page table would make
/// the next write to it fault.
///
/// Once other CPUs run, the caller must also shoot down their TLBs before
/// relying on the new protection (or, for ReadExecute, before another CPU
/// executes the page); until then they may keep using the old rights.
pub fn protect(start: u64, len: u64, prot: Protection) -> Result<(), Error> {
    with_state(|s| {
        s.plan.check_protect(start, len)?;
        s.tables.protect(Range::new(start, start + len), prot, &mut s.frames)
    })
}

/// `count` contiguous physical frames, the first aligned to `align_pages`
/// frames; returns its physical (= identity-mapped) address.
pub fn alloc_frames(count: u64, align_pages: u64) -> Result<u64, Error> {
    with_state(|s| Ok(s.frames.alloc(count, align_pages)?))
}

/// Returns frames from [`alloc_frames`]. Freeing frames that are not
/// allocated is an error and changes nothing.
pub fn free_frames(addr: u64, count: u64) -> Result<(), Error> {
    with_state(|s| Ok(s.frames.free(addr, count)?))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    pub frames_total: u64,
    pub frames_free: u64,
    pub heap_bytes: u64,
    pub heap_used: u64,
}

/// Current counters (all zero before [`init`]).
pub fn stats() -> Stats {
    let (frames_total, frames_free) =
        with_state(|s| Ok((s.frames.total_frames(), s.frames.free_frames()))).unwrap_or((0, 0));
    let (heap_bytes, heap_used) = heap::usage();
    Stats { frames_total, frames_free, heap_bytes, heap_used }
}

/// The live translation of `addr`.
pub fn translate(addr: u64) -> Result<Option<Leaf>, Error> {
    with_state(|s| Ok(s.tables.lookup(addr)))
}

/// Calls `f` on every live translation, in address order.
#[cfg(feature = "ktest")]
pub fn for_each_mapping(f: impl FnMut(Leaf)) -> Result<(), Error> {
    with_state(|s| {
        s.tables.for_each_leaf(f);
        Ok(())
    })
}

/// The address the linker gave symbol `$sym`, taken by an instruction the
/// optimiser cannot see through: to LLVM two extern statics are distinct
/// objects, so under LTO it folds `&__text_end == &__rodata_start` to false
/// although the linker script puts both at one address.
macro_rules! linker_address {
    ($sym:ident) => {{
        let addr: u64;
        // SAFETY: `lea` computes the symbol's address and touches nothing else.
        unsafe {
            core::arch::asm!("lea {}, [rip + {}]", out(reg) addr, sym $sym, options(pure, nomem, nostack, preserves_flags))
        };
        addr
    }};
}

/// The image's section bounds from the linker script.
pub fn image_sections() -> ImageSections {
    extern "C" {
        static __image_start: u8;
        static __text_start: u8;
        static __text_end: u8;
        static __rodata_start: u8;
        static __rodata_end: u8;
        static __data_start: u8;
        static __data_end: u8;
    }
    ImageSections {
        start: linker_address!(__image_start),
        text_start: linker_address!(__text_start),
        text_end: linker_address!(__text_end),
        rodata_start: linker_address!(__rodata_start),
        rodata_end: linker_address!(__rodata_end),
        data_start: linker_address!(__data_start),
        end: linker_address!(__data_end),
    }
}
