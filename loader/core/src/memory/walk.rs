//! Reading 4-level page tables (SDM Vol. 3A §4.5) and splitting large
//! pages. The caller says how to reach a table from its physical address,
//! so the same code walks the live tables in the image and fake ones in
//! host tests.

use super::layout::{Protection, LARGE_PAGE_SIZE};
use crate::memory::frames::PAGE_SIZE;
use x86_64::structures::paging::page_table::PageTableEntry;
use x86_64::structures::paging::{PageTable, PageTableFlags};
use x86_64::PhysAddr;

/// A present translation, with the rights that result from every level.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Leaf {
    pub virt: u64,
    pub phys: u64,
    /// 4 KiB, 2 MiB or 1 GiB.
    pub size: u64,
    /// R/W set at every level (SDM Vol. 3A §4.6.1; CR0.WP=1 makes this
    /// bind supervisor writes too).
    pub writable: bool,
    /// XD clear at every level (with IA32_EFER.NXE=1).
    pub executable: bool,
}

/// Addresses in hex, as in every other message about memory.
impl core::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let w = if self.writable { "W" } else { "-" };
        let x = if self.executable { "X" } else { "-" };
        write!(f, "Leaf {{ {:#x} -> {:#x}, {:#x} bytes, R{w}{x} }}", self.virt, self.phys, self.size)
    }
}

impl Leaf {
    /// The leaf's rights as a [`Protection`]; `None` if writable and
    /// executable.
    pub fn protection(&self) -> Option<Protection> {
        Protection::from_rights(self.writable, self.executable)
    }
}

/// Bytes one entry maps at each level, from the PML4 down.
const ENTRY_SPAN: [u64; 4] = [1 << 39, 1 << 30, 1 << 21, 1 << 12];

/// Calls `f` for every present translation under the PML4 at `root`, in
/// address order. `table(phys)` returns the page table at `phys`.
pub fn for_each_leaf<'t>(root: u64, table: impl Fn(u64) -> &'t PageTable, mut f: impl FnMut(Leaf)) {
    walk(table(root), 0, 0, true, true, &table, &mut f);
}

/// The translation of `virt`, if present.
pub fn lookup<'t>(root: u64, table: impl Fn(u64) -> &'t PageTable, virt: u64) -> Option<Leaf> {
    let (mut writable, mut executable) = (true, true);
    let mut t = table(root);
    for (level, span) in ENTRY_SPAN.iter().enumerate() {
        let e = &t[((virt / span) % 512) as usize];
        let flags = e.flags();
        if !flags.contains(PageTableFlags::PRESENT) {
            return None;
        }
        writable &= flags.contains(PageTableFlags::WRITABLE);
        executable &= !flags.contains(PageTableFlags::NO_EXECUTE);
        if level == 3 || (level > 0 && flags.contains(PageTableFlags::HUGE_PAGE)) {
            let base = virt & !(span - 1);
            return Some(Leaf { virt: base, phys: leaf_phys(e, *span), size: *span, writable, executable });
        }
        t = table(e.addr().as_u64());
    }
    None
}

fn walk<'t>(
    t: &'t PageTable,
    level: usize,
    base: u64,
    writable: bool,
    executable: bool,
    table: &impl Fn(u64) -> &'t PageTable,
    f: &mut impl FnMut(Leaf),
) {
    let span = ENTRY_SPAN[level];
    for (i, e) in t.iter().enumerate() {
        let flags = e.flags();
        if !flags.contains(PageTableFlags::PRESENT) {
            continue;
        }
        let virt = canonical(base + i as u64 * span);
        let w = writable && flags.contains(PageTableFlags::WRITABLE);
        let x = executable && !flags.contains(PageTableFlags::NO_EXECUTE);
        if level == 3 || (level > 0 && flags.contains(PageTableFlags::HUGE_PAGE)) {
            f(Leaf { virt, phys: leaf_phys(e, span), size: span, writable: w, executable: x });
        } else {
            walk(table(e.addr().as_u64()), level + 1, virt, w, x, table, f);
        }
    }
}

/// Sign-extends bit 47 (SDM Vol. 3A §3.3.7.1, canonical addresses).
fn canonical(virt: u64) -> u64 {
    (((virt << 16) as i64) >> 16) as u64
}

/// In a large-page entry, bit 12 is PAT, not an address bit (SDM Vol. 3A
/// Tables 4-17 and 4-15).
const LARGE_PAT: u64 = 1 << 12;
/// In a 4 KiB entry, the PAT bit is bit 7, where large entries have PS.
const SMALL_PAT: PageTableFlags = PageTableFlags::HUGE_PAGE;

fn leaf_phys(e: &PageTableEntry, span: u64) -> u64 {
    let addr = e.addr().as_u64();
    if span == PAGE_SIZE {
        addr
    } else {
        addr & !(span - 1)
    }
}

/// Fills `table` with the 512 4 KiB entries that translate exactly like the
/// 2 MiB entry `large`: same frames, same flags, same memory type.
pub fn split_large(large: &PageTableEntry, table: &mut PageTable) {
    let raw = large.addr().as_u64();
    let base = raw & !(LARGE_PAGE_SIZE - 1);
    let mut flags = large.flags() - PageTableFlags::HUGE_PAGE;
    if raw & LARGE_PAT != 0 {
        flags |= SMALL_PAT;
    }
    for (i, e) in table.iter_mut().enumerate() {
        e.set_addr(PhysAddr::new(base + i as u64 * PAGE_SIZE), flags);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::collections::HashMap;
    use std::vec::Vec;

    /// Page tables in host memory, addressed by fake physical addresses.
    struct Fake {
        tables: HashMap<u64, Box<PageTable>>,
        next: u64,
    }

    const TABLE: PageTableFlags = PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE);

    impl Fake {
        fn new() -> Fake {
            let mut f = Fake { tables: HashMap::new(), next: 0x100_0000 };
            f.alloc();
            f
        }
        fn alloc(&mut self) -> u64 {
            let a = self.next;
            self.next += PAGE_SIZE;
            self.tables.insert(a, Box::new(PageTable::new()));
            a
        }
        fn root(&self) -> u64 {
            0x100_0000
        }
        /// Maps `virt` at `level` (0 = PML4 entry ... 3 = PT entry) with
        /// `flags`, creating tables with `table_flags` on the way.
        fn map(&mut self, virt: u64, phys: u64, level: usize, flags: PageTableFlags, table_flags: PageTableFlags) {
            let mut t = self.root();
            for span in &ENTRY_SPAN[..level] {
                let i = ((virt / span) % 512) as usize;
                let e = &self.tables[&t][i];
                t = if e.is_unused() {
                    let n = self.alloc();
                    self.tables.get_mut(&t).unwrap()[i].set_addr(PhysAddr::new(n), table_flags);
                    n
                } else {
                    e.addr().as_u64()
                };
            }
            let i = ((virt / ENTRY_SPAN[level]) % 512) as usize;
            self.tables.get_mut(&t).unwrap()[i].set_addr(PhysAddr::new(phys), flags);
        }
        fn leaves(&self) -> Vec<Leaf> {
            let mut v = Vec::new();
            for_each_leaf(self.root(), |p| &*self.tables[&p], |l| v.push(l));
            v
        }
        fn lookup(&self, virt: u64) -> Option<Leaf> {
            lookup(self.root(), |p| &*self.tables[&p], virt)
        }
    }

    const P: PageTableFlags = PageTableFlags::PRESENT;
    const W: PageTableFlags = PageTableFlags::WRITABLE;
    const NX: PageTableFlags = PageTableFlags::NO_EXECUTE;
    const PS: PageTableFlags = PageTableFlags::HUGE_PAGE;

    #[test]
    fn walks_every_size_and_combines_rights() {
        let mut f = Fake::new();
        f.map(0x1000, 0x1000, 3, P | W | NX, TABLE);
        f.map(0x20_0000, 0x20_0000, 2, P | PS, TABLE);
        f.map(0x4000_0000, 0x8000_0000, 1, P | W | PS, TABLE);
        // Read-only at the PML4 level: nothing below is writable.
        f.map(0xffff_c000_0020_0000, 0x30_0000, 3, P | W | NX, P);
        let leaves = f.leaves();
        assert_eq!(
            leaves,
            [
                Leaf { virt: 0x1000, phys: 0x1000, size: 0x1000, writable: true, executable: false },
                Leaf { virt: 0x20_0000, phys: 0x20_0000, size: 0x20_0000, writable: false, executable: true },
                Leaf { virt: 0x4000_0000, phys: 0x8000_0000, size: 1 << 30, writable: true, executable: true },
                Leaf { virt: 0xffff_c000_0020_0000, phys: 0x30_0000, size: 0x1000, writable: false, executable: false },
            ]
        );
        assert_eq!(f.lookup(0x1234), Some(leaves[0]));
        assert_eq!(f.lookup(0x3f_ffff), Some(leaves[1]));
        assert_eq!(f.lookup(0x7fff_ffff), Some(leaves[2]));
        assert_eq!(f.lookup(0xffff_c000_0020_0fff), Some(leaves[3]));
        assert_eq!(f.lookup(0), None);
        assert_eq!(f.lookup(0x2000), None);
        assert_eq!(f.lookup(0xffff_c000_0000_0000), None);
        assert_eq!(leaves[0].protection(), Some(Protection::ReadWrite));
        assert_eq!(leaves[1].protection(), Some(Protection::ReadExecute));
        assert_eq!(leaves[2].protection(), None, "writable and executable");
        assert_eq!(leaves[3].protection(), Some(Protection::ReadOnly));
    }

    #[test]
    fn leaves_print_in_hex() {
        let l = Leaf { virt: 0xffff_c000_0000_0000, phys: 0x1000, size: 0x1000, writable: true, executable: false };
        assert_eq!(std::format!("{l:?}"), "Leaf { 0xffffc00000000000 -> 0x1000, 0x1000 bytes, RW- }");
    }

    #[test]
    fn no_execute_at_a_table_level_covers_the_leaves() {
        let mut f = Fake::new();
        f.map(0x40_0000, 0x40_0000, 2, P | W | PS, TABLE | NX);
        assert_eq!(f.lookup(0x40_0000).unwrap().protection(), Some(Protection::ReadWrite));
    }

    #[test]
    fn split_keeps_frames_flags_and_memory_type() {
        let mut large = PageTableEntry::new();
        let pwt_pcd = PageTableFlags::WRITE_THROUGH | PageTableFlags::NO_CACHE;
        large.set_addr(PhysAddr::new(0x60_0000 | LARGE_PAT), P | W | NX | PS | pwt_pcd);
        let mut t = PageTable::new();
        split_large(&large, &mut t);
        for (i, e) in t.iter().enumerate() {
            assert_eq!(e.addr().as_u64(), 0x60_0000 + i as u64 * 0x1000);
            assert_eq!(e.flags(), P | W | NX | pwt_pcd | SMALL_PAT);
        }
        large.set_addr(PhysAddr::new(0x80_0000), P | PS);
        split_large(&large, &mut t);
        assert_eq!(t[511].addr().as_u64(), 0x9f_f000);
        assert_eq!(t[511].flags(), P);
        // The walker reads a large entry with PAT set at the right frame.
        let mut f = Fake::new();
        f.map(0x60_0000, 0x60_0000 | LARGE_PAT, 2, P | PS, TABLE);
        assert_eq!(f.lookup(0x60_0000).unwrap().phys, 0x60_0000);
    }
}
