//! What the loader's identity map looks like: which physical memory is free
//! to allocate, how every address below the top of the map is protected,
//! and which page sizes map it.

use super::Error;
use crate::memory::frames::PAGE_SIZE;
use crate::memory::memmap::{align_up, Range, RangeSet};
use core::fmt;
use x86_64::structures::paging::PageTableFlags;

pub const LARGE_PAGE_SIZE: u64 = 2 << 20;
/// The boot map (entry.S) covers this much; the loader's own map at least
/// as much, so ACPI tables and the LAPIC/IOAPIC MMIO windows stay reachable.
pub const BOOT_MAP_END: u64 = 4 << 30;
/// Below 1 MiB: real-mode IVT, BIOS data, EBDA, VGA, option ROMs; never
/// handed out.
pub const LOW_MEMORY_END: u64 = 0x10_0000;
/// The SMP trampoline: code page (mapped R+X) and data page (RW+NX).
pub const TRAMPOLINE_CODE: u64 = 0x8000;
pub const TRAMPOLINE_DATA: u64 = 0x9000;

/// Heap size bounds: usable/8 clamped to this range.
pub const HEAP_MIN: u64 = 2 << 20;
pub const HEAP_MAX: u64 = 32 << 20;

/// Access rights of a present page. Every one is W^X by construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    ReadOnly,
    ReadWrite,
    ReadExecute,
}

impl Protection {
    /// Leaf-entry flags (SDM Vol. 3A §4.6: a page is writable only if R/W
    /// is set at every level, executable only if XD is clear at every
    /// level; the loader keeps table-level entries RW and executable so the
    /// leaf decides).
    pub fn flags(self) -> PageTableFlags {
        let p = PageTableFlags::PRESENT;
        match self {
            Protection::ReadOnly => p | PageTableFlags::NO_EXECUTE,
            Protection::ReadWrite => p | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE,
            Protection::ReadExecute => p,
        }
    }

    /// The protection of a page that is (effectively) `writable` and
    /// `executable`; `None` for writable+executable, which no `Protection`
    /// allows.
    pub fn from_rights(writable: bool, executable: bool) -> Option<Protection> {
        match (writable, executable) {
            (false, false) => Some(Protection::ReadOnly),
            (true, false) => Some(Protection::ReadWrite),
            (false, true) => Some(Protection::ReadExecute),
            (true, true) => None,
        }
    }
}

/// Free physical memory: firmware RAM minus boot structures, the loader
/// image and the first 1 MiB, in whole pages.
pub fn usable(firmware: &RangeSet, in_use: &RangeSet, image: Range) -> Result<RangeSet, Error> {
    let mut u = firmware.clone();
    for r in in_use.iter() {
        u.remove(r)?;
    }
    u.remove(image)?;
    u.remove(Range::new(0, LOW_MEMORY_END))?;
    u.page_align();
    Ok(u)
}

/// The end of the identity map: 4 GiB or the top of RAM, whichever is
/// higher, in whole large pages.
pub fn identity_top(firmware: &RangeSet) -> u64 {
    let ram_top = firmware.iter().map(|r| r.end).max().unwrap_or(0);
    align_up(ram_top, LARGE_PAGE_SIZE).max(BOOT_MAP_END)
}

/// Heap size for `usable_bytes` of free RAM.
pub fn heap_bytes(usable_bytes: u64) -> u64 {
    (usable_bytes / 8).clamp(HEAP_MIN, HEAP_MAX) & !(PAGE_SIZE - 1)
}

/// The loader image's section bounds from the linker script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageSections {
    /// `__image_start`: `.boot` (multiboot2 header, 32-bit entry) comes first.
    pub start: u64,
    pub text_start: u64,
    pub text_end: u64,
    pub rodata_start: u64,
    pub rodata_end: u64,
    pub data_start: u64,
    /// `__data_end` = `__image_end`: `.data` and `.bss`.
    pub end: u64,
}

impl ImageSections {
    pub fn range(&self) -> Range {
        Range::new(self.start, self.end)
    }

    fn is_well_formed(&self) -> bool {
        let b =
            [self.start, self.text_start, self.text_end, self.rodata_start, self.rodata_end, self.data_start, self.end];
        b.iter().all(|x| x % PAGE_SIZE == 0)
            && b.windows(2).all(|w| w[0] <= w[1])
            && self.start >= LOW_MEMORY_END
            && self.text_end == self.rodata_start
            && self.rodata_end == self.data_start
    }
}

impl fmt::Display for ImageSections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "image {:#x}, text {:#x}-{:#x}, rodata {:#x}-{:#x}, data {:#x}-{:#x}",
            self.start, self.text_start, self.text_end, self.rodata_start, self.rodata_end, self.data_start, self.end
        )
    }
}

/// The most regions a plan has: see [`Plan::new`].
const MAX_REGIONS: usize = 9;

/// The identity map as contiguous regions `[start, next start)` covering
/// `0 .. top`, each unmapped (`None`) or mapped with one protection.
#[derive(Clone, Debug)]
pub struct Plan {
    regions: [(u64, Option<Protection>); MAX_REGIONS],
    len: usize,
    top: u64,
    image: Range,
}

impl Plan {
    pub fn new(image: ImageSections, top: u64) -> Result<Plan, Error> {
        if !image.is_well_formed() || !top.is_multiple_of(LARGE_PAGE_SIZE) || image.end > top {
            return Err(Error::BadImageLayout(image));
        }
        use Protection::*;
        let wanted = [
            // Page 0 stays unmapped so that null dereferences fault.
            (0, None),
            (PAGE_SIZE, Some(ReadWrite)),
            (TRAMPOLINE_CODE, Some(ReadExecute)),
            (TRAMPOLINE_DATA, Some(ReadWrite)),
            // `.boot` and `.text` are both code.
            (image.start, Some(ReadExecute)),
            (image.rodata_start, Some(ReadOnly)),
            (image.data_start, Some(ReadWrite)),
            (image.end, Some(ReadWrite)),
        ];
        let mut plan = Plan { regions: [(0, None); MAX_REGIONS], len: 0, top, image: image.range() };
        for (start, prot) in wanted {
            // Empty sections give two regions at one address: the later wins.
            if plan.len > 0 && plan.regions[plan.len - 1].0 == start {
                plan.len -= 1;
            }
            // Neighbours with one protection are one region, so a large page
            // can span them.
            if plan.len > 0 && plan.regions[plan.len - 1].1 == prot {
                continue;
            }
            plan.regions[plan.len] = (start, prot);
            plan.len += 1;
        }
        Ok(plan)
    }

    /// The end of the identity map.
    pub fn top(&self) -> u64 {
        self.top
    }

    /// The protection planned at `addr`; `None` if it is left unmapped or
    /// lies beyond the map.
    pub fn protection_at(&self, addr: u64) -> Option<Protection> {
        if addr >= self.top {
            return None;
        }
        self.region_at(addr).0
    }

    /// The protection of the region holding `addr` (below `top`) and where
    /// that region ends.
    fn region_at(&self, addr: u64) -> (Option<Protection>, u64) {
        let regions = &self.regions[..self.len];
        let i = regions.partition_point(|r| r.0 <= addr) - 1;
        (regions[i].1, regions.get(i + 1).map_or(self.top, |r| r.0))
    }

    /// The pages to map: a large page wherever a whole aligned 2 MiB lies in
    /// one region, 4 KiB pages elsewhere, nothing for unmapped regions.
    pub fn mappings(&self) -> Mappings<'_> {
        Mappings { plan: self, addr: 0 }
    }

    /// Checks a request to change the protection of `[start, start + len)`
    /// in the identity map.
    pub fn check_protect(&self, start: u64, len: u64) -> Result<(), Error> {
        if len == 0 || !start.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Unaligned { start, len });
        }
        let end = match start.checked_add(len) {
            Some(end) if end <= self.top => end,
            _ => return Err(Error::OutsideIdentityMap { start, len, top: self.top }),
        };
        if start < self.image.end && self.image.start < end {
            return Err(Error::LoaderImage { start, len });
        }
        let mut addr = start;
        while addr < end {
            let (prot, region_end) = self.region_at(addr);
            if prot.is_none() {
                return Err(Error::NotMapped { addr });
            }
            addr = region_end;
        }
        Ok(())
    }
}

/// One page of the identity map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub addr: u64,
    /// [`PAGE_SIZE`] or [`LARGE_PAGE_SIZE`].
    pub size: u64,
    pub prot: Protection,
}

pub struct Mappings<'p> {
    plan: &'p Plan,
    addr: u64,
}

impl Iterator for Mappings<'_> {
    type Item = Mapping;

    fn next(&mut self) -> Option<Mapping> {
        while self.addr < self.plan.top {
            let (prot, region_end) = self.plan.region_at(self.addr);
            let large = self.addr.is_multiple_of(LARGE_PAGE_SIZE) && region_end - self.addr >= LARGE_PAGE_SIZE;
            let size = if large { LARGE_PAGE_SIZE } else { PAGE_SIZE };
            let addr = self.addr;
            self.addr += size;
            if let Some(prot) = prot {
                return Some(Mapping { addr, size, prot });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;
    use Protection::*;

    const MIB: u64 = 1 << 20;
    const P: u64 = PAGE_SIZE;

    fn image() -> ImageSections {
        ImageSections {
            start: MIB,
            text_start: MIB + 0x1000,
            text_end: MIB + 0x20000,
            rodata_start: MIB + 0x20000,
            rodata_end: MIB + 0x28000,
            data_start: MIB + 0x28000,
            end: MIB + 0x40000,
        }
    }

    fn set(ranges: &[(u64, u64)]) -> RangeSet {
        let mut s = RangeSet::default();
        for &(a, b) in ranges {
            s.insert(Range::new(a, b)).unwrap();
        }
        s
    }

    #[test]
    fn usable_takes_out_low_memory_image_and_boot_structures() {
        let firmware = set(&[(0, 0x9fc00), (MIB, 128 * MIB)]);
        let in_use = set(&[(0x5000, 0x5100), (0x200_0000, 0x200_0100)]);
        let u = usable(&firmware, &in_use, image().range()).unwrap();
        let got: Vec<_> = u.iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(got, [(MIB + 0x40000, 0x200_0000), (0x200_1000, 128 * MIB)]);
    }

    #[test]
    fn identity_top_is_at_least_4_gib() {
        assert_eq!(identity_top(&set(&[(0, 128 * MIB)])), 4 << 30);
        assert_eq!(identity_top(&set(&[(0, 2 << 30), (4 << 30, (9 << 30) + 1)])), (9 << 30) + LARGE_PAGE_SIZE);
        assert_eq!(identity_top(&RangeSet::default()), 4 << 30);
    }

    #[test]
    fn heap_is_an_eighth_clamped() {
        assert_eq!(heap_bytes(8 * MIB), 2 * MIB);
        assert_eq!(heap_bytes(100 * MIB), 12_800 * 1024);
        assert_eq!(heap_bytes(2048 * MIB), 32 * MIB);
        assert_eq!(heap_bytes(100 * MIB + 8), 12_800 * 1024);
    }

    #[test]
    fn protections_are_w_xor_x() {
        for p in [ReadOnly, ReadWrite, ReadExecute] {
            let f = p.flags();
            assert!(f.contains(PageTableFlags::PRESENT));
            let (w, x) = (f.contains(PageTableFlags::WRITABLE), !f.contains(PageTableFlags::NO_EXECUTE));
            assert!(!(w && x), "{p:?}");
            assert_eq!(Protection::from_rights(w, x), Some(p));
        }
        assert_eq!(Protection::from_rights(true, true), None);
    }

    #[test]
    fn plan_protects_each_part() {
        let plan = Plan::new(image(), 4 << 30).unwrap();
        let at = |a| plan.protection_at(a);
        assert_eq!(at(0), None);
        assert_eq!(at(0xfff), None);
        assert_eq!(at(0x1000), Some(ReadWrite));
        assert_eq!(at(0x8000), Some(ReadExecute));
        assert_eq!(at(0x8fff), Some(ReadExecute));
        assert_eq!(at(0x9000), Some(ReadWrite));
        assert_eq!(at(0xa000), Some(ReadWrite));
        assert_eq!(at(MIB - 1), Some(ReadWrite));
        assert_eq!(at(MIB), Some(ReadExecute), ".boot is code");
        assert_eq!(at(MIB + 0x1fff0), Some(ReadExecute));
        assert_eq!(at(MIB + 0x20000), Some(ReadOnly));
        assert_eq!(at(MIB + 0x28000), Some(ReadWrite));
        assert_eq!(at(MIB + 0x40000), Some(ReadWrite));
        assert_eq!(at(0xfee0_0000), Some(ReadWrite), "LAPIC");
        assert_eq!(at(4 << 30), None, "beyond the map");
    }

    #[test]
    fn mappings_cover_everything_but_page_0_with_the_largest_pages() {
        let top = 6 << 30;
        let plan = Plan::new(image(), top).unwrap();
        let maps: Vec<Mapping> = plan.mappings().collect();
        // Contiguous, from page 1 to the top.
        assert_eq!(maps[0].addr, P);
        let mut next = P;
        for m in &maps {
            assert_eq!(m.addr, next);
            assert_eq!(m.addr % m.size, 0);
            assert_eq!(Some(m.prot), plan.protection_at(m.addr));
            assert_eq!(Some(m.prot), plan.protection_at(m.addr + m.size - 1));
            next = m.addr + m.size;
        }
        assert_eq!(next, top);
        // Only the first 2 MiB (page 0, trampoline, image) needs 4 KiB pages.
        let small = maps.iter().filter(|m| m.size == P).count();
        assert_eq!(small, 511);
        assert_eq!(maps.len(), 511 + (top / LARGE_PAGE_SIZE - 1) as usize);
    }

    #[test]
    fn an_image_across_a_large_page_boundary_splits_both_sides() {
        let mut img = image();
        img.data_start = 2 * MIB + 0x4000;
        img.rodata_end = img.data_start;
        img.end = 2 * MIB + 0x10000;
        let plan = Plan::new(img, 4 << 30).unwrap();
        let small: Vec<Mapping> = plan.mappings().filter(|m| m.size == P).collect();
        assert_eq!(small.len(), 511 + 512);
        assert!(small.iter().all(|m| m.addr < 4 * MIB));
        assert_eq!(plan.protection_at(2 * MIB + 0x3000), Some(ReadOnly));
        assert_eq!(plan.protection_at(2 * MIB + 0x4000), Some(ReadWrite));
    }

    #[test]
    fn bad_layouts_are_refused() {
        let mut img = image();
        img.rodata_start += P;
        assert_eq!(Plan::new(img, 4 << 30).err(), Some(Error::BadImageLayout(img)));
        let mut img = image();
        img.text_end += 8;
        img.rodata_start += 8;
        assert!(Plan::new(img, 4 << 30).is_err());
        let mut img = image();
        img.start = 0x8000;
        assert!(Plan::new(img, 4 << 30).is_err());
        assert!(Plan::new(image(), (4 << 30) + P).is_err());
        assert!(Plan::new(image(), MIB).is_err());
    }

    #[test]
    fn empty_sections_are_fine() {
        let mut img = image();
        img.rodata_end = img.rodata_start;
        img.data_start = img.rodata_start;
        let plan = Plan::new(img, 4 << 30).unwrap();
        assert_eq!(plan.protection_at(img.rodata_start), Some(ReadWrite));
        assert_eq!(plan.protection_at(img.rodata_start - 1), Some(ReadExecute));
    }

    #[test]
    fn protect_requests_are_checked() {
        let plan = Plan::new(image(), 4 << 30).unwrap();
        assert_eq!(plan.check_protect(0x8000, P), Ok(()));
        assert_eq!(plan.check_protect(0x200_0000, 0x20_0000), Ok(()));
        assert_eq!(plan.check_protect(0x8000, 0), Err(Error::Unaligned { start: 0x8000, len: 0 }));
        assert_eq!(plan.check_protect(0x8001, P), Err(Error::Unaligned { start: 0x8001, len: P }));
        assert_eq!(plan.check_protect(0x8000, 10), Err(Error::Unaligned { start: 0x8000, len: 10 }));
        assert_eq!(plan.check_protect(0, P), Err(Error::NotMapped { addr: 0 }));
        assert_eq!(plan.check_protect(MIB - P, 2 * P), Err(Error::LoaderImage { start: MIB - P, len: 2 * P }));
        assert_eq!(plan.check_protect(MIB + 0x3f000, P), Err(Error::LoaderImage { start: MIB + 0x3f000, len: P }));
        assert_eq!(plan.check_protect(MIB + 0x40000, P), Ok(()));
        let top = 4 << 30;
        assert_eq!(
            plan.check_protect(top - P, 2 * P),
            Err(Error::OutsideIdentityMap { start: top - P, len: 2 * P, top })
        );
        let high = !(P - 1);
        assert_eq!(plan.check_protect(high, 2 * P), Err(Error::OutsideIdentityMap { start: high, len: 2 * P, top }));
    }
}
