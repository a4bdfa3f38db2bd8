//! The loader's page tables: built from the layout plan, loaded into CR3,
//! then changed page by page (protection, stack mappings). Tables live in
//! identity-mapped RAM, so the `x86_64` crate's `OffsetPageTable` with
//! offset 0 reaches them.

use super::Error;
use loader_core::memory::frames::{FrameAllocator, PAGE_SIZE};
use loader_core::memory::layout::{Plan, Protection, BOOT_MAP_END, LARGE_PAGE_SIZE};
use loader_core::memory::memmap::Range;
use loader_core::memory::stacks;
use loader_core::memory::walk::{self, Leaf};
use x86_64::instructions::tlb;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr3, Cr3Flags};
use x86_64::registers::model_specific::{Efer, EferFlags};
use x86_64::structures::paging::mapper::{FlagUpdateError, MapToError, MapperFlush, UnmapError};
use x86_64::structures::paging::{
    FrameAllocator as TableFrameSource, Mapper, OffsetPageTable, Page, PageSize, PageTable, PageTableFlags, PhysFrame,
    Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

/// Flags of every non-leaf entry: the leaves alone decide the rights.
const TABLE_FLAGS: PageTableFlags = PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE);

/// Turns on IA32_EFER.NXE (needed for the XD bit, SDM Vol. 3A §4.1.4) and
/// CR0.WP (supervisor writes honour read-only pages, §4.6.1). entry.S sets
/// both when it can; this makes sure, and refuses CPUs without NX.
pub fn enable_nx_and_wp() -> Result<(), Error> {
    let nx = raw_cpuid::CpuId::new()
        .get_extended_processor_and_feature_identifiers()
        .is_some_and(|f| f.has_execute_disable());
    if !nx {
        return Err(Error::NoExecuteUnsupported);
    }
    // SAFETY: the CPU supports NX (checked above); setting NXE only gives
    // meaning to bit 63 of paging entries, which the boot map leaves clear.
    unsafe { Efer::update(|f| f.insert(EferFlags::NO_EXECUTE_ENABLE)) };
    // SAFETY: WP only makes supervisor writes to read-only pages fault; the
    // boot map has none.
    unsafe { Cr0::update(|f| f.insert(Cr0Flags::WRITE_PROTECT)) };
    Ok(())
}

/// The words of RAM in `r`, as the frame bitmap's storage.
///
/// # Safety
/// `r` must be identity-mapped RAM that nothing else uses, now or later.
pub unsafe fn ram_words(r: Range) -> &'static mut [u64] {
    // SAFETY: forwarded from the caller; RAM is valid for any u64 value.
    unsafe { core::slice::from_raw_parts_mut(r.start as *mut u64, (r.len() / 8) as usize) }
}

/// The page table at physical address `phys`.
///
/// # Safety
/// `phys` must be a page table of the loader's hierarchy, identity-mapped,
/// and the caller must hold the memory lock (no other reference exists).
unsafe fn table_mut<'a>(phys: u64) -> &'a mut PageTable {
    // SAFETY: forwarded from the caller.
    unsafe { &mut *(phys as *mut PageTable) }
}

/// Hands frames to the `x86_64` crate for new page tables, remembering why
/// it could not.
struct TableFrames<'a, 'b> {
    frames: &'a mut FrameAllocator<'b>,
    limit: u64,
    error: Option<loader_core::memory::frames::Error>,
}

// SAFETY: every frame comes from the frame allocator, which hands each out
// once until it is freed.
unsafe impl TableFrameSource<Size4KiB> for TableFrames<'_, '_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        match self.frames.alloc_below(1, 1, self.limit) {
            Ok(a) => Some(PhysFrame::containing_address(PhysAddr::new(a))),
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}

impl TableFrames<'_, '_> {
    fn map_error<S: PageSize>(&self, e: MapToError<S>, addr: u64) -> Error {
        match e {
            MapToError::FrameAllocationFailed => match self.error {
                Some(e) => Error::Frames(e),
                None => Error::Frames(loader_core::memory::frames::Error::OutOfMemory { requested: 1 }),
            },
            MapToError::ParentEntryHugePage => Error::LargePageInTheWay { addr },
            MapToError::PageAlreadyMapped(_) => Error::AlreadyMapped { addr },
        }
    }
}

/// Writes the identity map's entries straight into tables that are not
/// live yet. The plan's mappings come in address order, so the page
/// directory and page table of the previous one are kept: most mappings
/// write one entry and walk nothing (the `x86_64` mapper walks from the
/// root for each).
struct IdentityWriter<'a, 'b> {
    root: u64,
    frames: &'a mut FrameAllocator<'b>,
    /// The 1 GiB slot (`addr >> 30`) and physical address of the last PD.
    pd: Option<(u64, u64)>,
    /// The 2 MiB slot (`addr >> 21`) and physical address of the last PT.
    pt: Option<(u64, u64)>,
}

impl IdentityWriter<'_, '_> {
    /// The table entry `index` of `table` leads to, made if missing.
    fn next_table(&mut self, table: u64, index: usize, addr: u64) -> Result<u64, Error> {
        // SAFETY: `table` is one of the new tables, which no CPU uses, and
        // the builder holds the only reference.
        let entry = &mut unsafe { table_mut(table) }[index];
        if entry.is_unused() {
            let next = new_table(self.frames, BOOT_MAP_END)?;
            entry.set_addr(PhysAddr::new(next), TABLE_FLAGS);
            return Ok(next);
        }
        if entry.flags().contains(PageTableFlags::HUGE_PAGE) {
            return Err(Error::LargePageInTheWay { addr });
        }
        Ok(entry.addr().as_u64())
    }

    fn pd_of(&mut self, addr: u64) -> Result<u64, Error> {
        match self.pd {
            Some((slot, pd)) if slot == addr >> 30 => Ok(pd),
            _ => {
                let pdpt = self.next_table(self.root, pml4_index(addr), addr)?;
                let pd = self.next_table(pdpt, pdpt_index(addr), addr)?;
                self.pd = Some((addr >> 30, pd));
                Ok(pd)
            }
        }
    }

    fn pt_of(&mut self, addr: u64) -> Result<u64, Error> {
        match self.pt {
            Some((slot, pt)) if slot == addr >> 21 => Ok(pt),
            _ => {
                let pd = self.pd_of(addr)?;
                let pt = self.next_table(pd, pd_index(addr), addr)?;
                self.pt = Some((addr >> 21, pt));
                Ok(pt)
            }
        }
    }

    /// Identity-maps the page of `size` (4 KiB or 2 MiB) at `addr`.
    fn map(&mut self, addr: u64, size: u64, prot: Protection) -> Result<(), Error> {
        let (table, index, flags) = if size == LARGE_PAGE_SIZE {
            (self.pd_of(addr)?, pd_index(addr), prot.flags() | PageTableFlags::HUGE_PAGE)
        } else {
            (self.pt_of(addr)?, pt_index(addr), prot.flags())
        };
        // SAFETY: as in `next_table`: a new table, not live, only ours.
        let entry = &mut unsafe { table_mut(table) }[index];
        if !entry.is_unused() {
            return Err(Error::AlreadyMapped { addr });
        }
        // No TLB flush: the tables were never loaded.
        entry.set_addr(PhysAddr::new(addr), flags);
        Ok(())
    }
}

/// A new zeroed page table below `limit`.
fn new_table(frames: &mut FrameAllocator, limit: u64) -> Result<u64, Error> {
    let phys = frames.alloc_below(1, 1, limit)?;
    // SAFETY: a freshly allocated, identity-mapped frame nobody else uses.
    unsafe { table_mut(phys) }.zero();
    Ok(phys)
}

pub struct Tables {
    /// The PML4.
    root: u64,
    /// The page directory of the stack region: entry `n` is slot `n`'s
    /// page table.
    stack_pd: u64,
}

impl Tables {
    /// Builds the identity map of `plan` and the stack region's directory.
    /// Every table goes below 4 GiB, where the boot map lets us write it.
    pub fn build(plan: &Plan, frames: &mut FrameAllocator) -> Result<Tables, Error> {
        let root = new_table(frames, BOOT_MAP_END)?;
        let mut t = Tables { root, stack_pd: 0 };
        {
            // Identity mappings of the plan, in tables that are not live
            // yet: nothing can observe them until `activate`.
            let mut writer = IdentityWriter { root, frames: &mut *frames, pd: None, pt: None };
            for m in plan.mappings() {
                writer.map(m.addr, m.size, m.prot)?;
            }
        }
        let pdpt = new_table(frames, BOOT_MAP_END)?;
        t.stack_pd = new_table(frames, BOOT_MAP_END)?;
        // SAFETY: the root is ours and not live yet, and the mapper that
        // borrowed it is gone.
        let pml4 = unsafe { table_mut(root) };
        pml4[pml4_index(stacks::REGION_START)].set_addr(PhysAddr::new(pdpt), TABLE_FLAGS);
        // SAFETY: `pdpt` was just allocated (and zeroed); nothing else
        // refers to it.
        let stack_pdpt = unsafe { table_mut(pdpt) };
        stack_pdpt[pdpt_index(stacks::REGION_START)].set_addr(PhysAddr::new(t.stack_pd), TABLE_FLAGS);
        Ok(t)
    }

    /// Loads the tables into CR3.
    ///
    /// # Safety
    /// Everything the CPU is using (code, stack, data it will touch) must be
    /// mapped by these tables at the addresses it is used at.
    pub unsafe fn activate(&self) {
        // SAFETY: forwarded from the caller. The root is 4 KiB aligned.
        unsafe { Cr3::write(PhysFrame::containing_address(PhysAddr::new(self.root)), Cr3Flags::empty()) };
    }

    fn mapper(&mut self) -> OffsetPageTable<'_> {
        // SAFETY: the root is our PML4, and `&mut self` (inside the memory
        // lock) is the only way to reach it.
        let root = unsafe { table_mut(self.root) };
        // SAFETY: every table of the hierarchy is in identity-mapped RAM
        // (physical offset 0), reachable only through `&mut self` too.
        unsafe { OffsetPageTable::new(root, VirtAddr::zero()) }
    }

    fn read(phys: u64) -> &'static PageTable {
        // SAFETY: walks only follow entries of the loader's own tables,
        // which are identity-mapped; the memory lock is held by the caller
        // of `lookup`/`for_each_leaf`, so nothing changes them meanwhile.
        unsafe { &*(phys as *const PageTable) }
    }

    pub fn lookup(&self, virt: u64) -> Option<Leaf> {
        walk::lookup(self.root, Self::read, virt)
    }

    #[cfg(feature = "ktest")]
    pub fn for_each_leaf(&self, f: impl FnMut(Leaf)) {
        walk::for_each_leaf(self.root, Self::read, f)
    }

    /// Sets `prot` on every 4 KiB page of `r` (page aligned, identity map).
    /// Checks that every page is mapped before changing any.
    pub fn protect(&mut self, r: Range, prot: Protection, frames: &mut FrameAllocator) -> Result<(), Error> {
        let pages = (r.start..r.end).step_by(PAGE_SIZE as usize);
        if let Some(addr) = pages.clone().find(|a| self.lookup(*a).is_none()) {
            return Err(Error::NotMapped { addr });
        }
        for addr in pages {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(addr));
            // SAFETY: changes rights of an identity-mapped page at the
            // caller's request; the mapping itself stays.
            match unsafe { self.mapper().update_flags(page, prot.flags()) } {
                Ok(flush) => flush.flush(),
                Err(FlagUpdateError::ParentEntryHugePage) => {
                    self.split(addr, frames)?;
                    // SAFETY: as above, now on the 4 KiB entry.
                    let flush = unsafe { self.mapper().update_flags(page, prot.flags()) };
                    flush.map_err(|_| Error::NotMapped { addr })?.flush();
                }
                Err(FlagUpdateError::PageNotMapped) => return Err(Error::NotMapped { addr }),
            }
        }
        Ok(())
    }

    /// Replaces the 2 MiB page holding `addr` with a page table of 512
    /// 4 KiB pages that translate the same way.
    fn split(&mut self, addr: u64, frames: &mut FrameAllocator) -> Result<(), Error> {
        let pt = new_table(frames, u64::MAX)?;
        // The caller found a 2 MiB page at `addr`, so the PML4 and PDPT
        // entries lead to a page directory; all are our tables, under the
        // memory lock.
        // SAFETY: the root is our PML4.
        let pml4 = unsafe { table_mut(self.root) };
        // SAFETY: the entry leads to one of our PDPTs (above).
        let pdpt = unsafe { table_mut(pml4[pml4_index(addr)].addr().as_u64()) };
        // SAFETY: the entry leads to one of our page directories (above).
        let pd = unsafe { table_mut(pdpt[pdpt_index(addr)].addr().as_u64()) };
        let entry = &mut pd[pd_index(addr)];
        // SAFETY: `pt` is a fresh frame, not yet in any table.
        walk::split_large(entry, unsafe { table_mut(pt) });
        entry.set_addr(PhysAddr::new(pt), TABLE_FLAGS);
        // The new entries translate exactly like the large page, so either
        // may be used until this flush; it drops the large-page TLB entry
        // and the paging-structure caches (SDM Vol. 3A §4.10.2.3, §4.10.4.1)
        // before any 4 KiB entry gets different rights.
        tlb::flush(VirtAddr::new(addr));
        Ok(())
    }

    /// Maps the 4 KiB page at `virt` to `phys` (outside the identity map),
    /// creating page tables as needed.
    pub fn map_page(
        &mut self,
        virt: u64,
        phys: u64,
        prot: Protection,
        frames: &mut FrameAllocator,
    ) -> Result<(), Error> {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(virt));
        let frame = PhysFrame::containing_address(PhysAddr::new(phys));
        let mut source = TableFrames { frames, limit: u64::MAX, error: None };
        // SAFETY: `virt` lies outside the identity map, in a region only the
        // caller uses, and `phys` is a frame the caller owns.
        let r = unsafe { self.mapper().map_to_with_table_flags(page, frame, prot.flags(), TABLE_FLAGS, &mut source) };
        r.map(MapperFlush::flush).map_err(|e| source.map_error(e, virt))
    }

    /// Unmaps the 4 KiB page at `virt` and returns its frame.
    pub fn unmap_page(&mut self, virt: u64) -> Result<u64, Error> {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(virt));
        match self.mapper().unmap(page) {
            Ok((frame, flush)) => {
                flush.flush();
                Ok(frame.start_address().as_u64())
            }
            Err(UnmapError::ParentEntryHugePage) => Err(Error::LargePageInTheWay { addr: virt }),
            Err(_) => Err(Error::NotMapped { addr: virt }),
        }
    }

    /// Frees the page table of stack slot `slot`, whose pages are all
    /// unmapped already; nothing to do if it never got one.
    pub fn free_stack_table(&mut self, slot: usize, frames: &mut FrameAllocator) -> Result<(), Error> {
        // SAFETY: the stack directory is ours, under the memory lock.
        let entry = unsafe { &mut table_mut(self.stack_pd)[slot] };
        if entry.is_unused() {
            return Ok(());
        }
        let pt = entry.addr().as_u64();
        // SAFETY: the entry points at the slot's page table.
        if let Some(i) = unsafe { table_mut(pt) }.iter().position(|e| !e.is_unused()) {
            return Err(Error::StillMapped { addr: stacks::slot_base(slot) + i as u64 * PAGE_SIZE });
        }
        entry.set_unused();
        // Drops paging-structure cache entries that still point at the
        // table (SDM Vol. 3A §4.10.4.1) before the frame is reused.
        tlb::flush(VirtAddr::new(stacks::slot_base(slot)));
        frames.free(pt, 1)?;
        Ok(())
    }
}

fn pml4_index(addr: u64) -> usize {
    ((addr >> 39) & 511) as usize
}

fn pdpt_index(addr: u64) -> usize {
    ((addr >> 30) & 511) as usize
}

fn pd_index(addr: u64) -> usize {
    ((addr >> 21) & 511) as usize
}

fn pt_index(addr: u64) -> usize {
    ((addr >> 12) & 511) as usize
}
