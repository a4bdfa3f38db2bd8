//! EPT construction over `Vec`-backed frames, with the EPT capabilities
//! Bochs's CPU models report (`testdata/`).

use super::*;
use std::collections::BTreeSet;
use std::format;
use std::vec::Vec;

/// Frame `i` lives at host-physical `FRAMES + i * 4 KiB`.
const FRAMES: u64 = 0x7_0000_0000;
const GIB: u64 = 1 << 30;

/// Page tables in a `Vec`, at most `limit` of them.
struct Frames {
    tables: Vec<[u64; ENTRIES]>,
    limit: usize,
}

impl Frames {
    fn new() -> Frames {
        Frames::with_limit(usize::MAX)
    }
    fn with_limit(limit: usize) -> Frames {
        Frames { tables: Vec::new(), limit }
    }
    fn slot(&self, table: u64) -> usize {
        assert_eq!(table % PAGE_4K, 0, "table {table:#x} not page aligned");
        let i = ((table - FRAMES) / PAGE_4K) as usize;
        assert!(i < self.tables.len(), "table {table:#x} was never allocated");
        i
    }
    fn allocated(&self) -> BTreeSet<u64> {
        (0..self.tables.len() as u64).map(|i| FRAMES + i * PAGE_4K).collect()
    }
}

impl TableMemory for Frames {
    fn alloc_table(&mut self) -> Option<u64> {
        if self.tables.len() == self.limit {
            return None;
        }
        self.tables.push([0; ENTRIES]);
        Some(FRAMES + (self.tables.len() as u64 - 1) * PAGE_4K)
    }
    fn read_entry(&self, table: u64, index: usize) -> u64 {
        self.tables[self.slot(table)][index]
    }
    fn write_entry(&mut self, table: u64, index: usize, value: u64) {
        let i = self.slot(table);
        self.tables[i][index] = value;
    }
}

const DUMPS: [&str; 11] = [
    include_str!("../../testdata/broadwell_ult.txt"),
    include_str!("../../testdata/core2_penryn_t9600.txt"),
    include_str!("../../testdata/corei3_cnl.txt"),
    include_str!("../../testdata/corei5_arrandale_m520.txt"),
    include_str!("../../testdata/corei5_lynnfield_750.txt"),
    include_str!("../../testdata/corei7_haswell_4770.txt"),
    include_str!("../../testdata/corei7_icelake_u.txt"),
    include_str!("../../testdata/corei7_ivy_bridge_3770k.txt"),
    include_str!("../../testdata/corei7_sandy_bridge_2600k.txt"),
    include_str!("../../testdata/corei7_skylake_x.txt"),
    include_str!("../../testdata/tigerlake.txt"),
];

/// IA32_VMX_EPT_VPID_CAP as a dump records it, 0 when the model has none.
fn recorded_caps(dump: &str) -> u64 {
    let line = dump.lines().find(|l| l.contains("(0x48c)=0x"));
    line.map_or(0, |l| u64::from_str_radix(l.rsplit("=0x").next().unwrap(), 16).unwrap())
}

fn skylake_caps() -> u64 {
    recorded_caps(DUMPS[9])
}

fn new_ept(mem: &mut Frames) -> Ept {
    Ept::new(mem, skylake_caps()).unwrap()
}

fn count_tables(ept: &Ept, mem: &Frames) -> usize {
    let mut n = 0;
    ept.for_each_table(mem, |_| n += 1);
    n
}

#[test]
fn recorded_models_with_ept_build_tables() {
    for dump in DUMPS {
        let caps = recorded_caps(dump);
        let result = Ept::new(&mut Frames::new(), caps);
        match caps {
            // core2_penryn has no EPT at all.
            0 => assert_eq!(result, Err(EptError::NotSupported { missing: "4-level page walks" })),
            _ => assert!(result.is_ok(), "caps {caps:#x}"),
        }
    }
    // Every recorded model with EPT offers the 2 MiB pages and execute-only
    // translations modvisor may use, and none offers 1 GiB pages here.
    assert_eq!(skylake_caps() & (CAP_2M_PAGES | CAP_EXECUTE_ONLY), CAP_2M_PAGES | CAP_EXECUTE_ONLY);
    let no_wb = EPT_WALK_4_LEVELS;
    assert_eq!(
        Ept::new(&mut Frames::new(), no_wb),
        Err(EptError::NotSupported { missing: "write-back paging structures" })
    );
}

#[test]
fn eptp_is_write_back_four_levels_without_accessed_dirty() {
    let mut mem = Frames::new();
    let ept = new_ept(&mut mem);
    assert_eq!(ept.pml4(), FRAMES);
    // 6 (WB) in bits 2:0, 3 (4 levels - 1) in bits 5:3, bit 6 clear.
    assert_eq!(ept.eptp(), FRAMES | 0x1e);
    assert_eq!(ept.eptp_with_accessed_dirty(), Some(FRAMES | 0x5e));
    let no_ad = Ept::new(&mut mem, skylake_caps() & !CAP_ACCESSED_DIRTY).unwrap();
    assert_eq!(no_ad.eptp_with_accessed_dirty(), None);
}

#[test]
fn aligned_range_uses_2m_leaves() {
    let mut mem = Frames::new();
    let mut ept = new_ept(&mut mem);
    ept.map(&mut mem, 0, 0x4000_0000, 4 * PAGE_2M, Perms::RWX).unwrap();
    // PML4, PDPT, PD: no page table.
    assert_eq!(mem.tables.len(), 3);
    let pd = &mem.tables[2];
    for (i, entry) in pd.iter().enumerate().take(4) {
        // Address, RWX, memory type 6 in bits 5:3, ignore-PAT clear, large.
        assert_eq!(*entry, (0x4000_0000 + i as u64 * PAGE_2M) | 0x7 | 6 << 3 | 1 << 7);
    }
    assert_eq!(pd[4], 0);
    assert_eq!(ept.translate(&mem, 0x2345), Some((0x4000_2345, Perms::RWX)));
    assert_eq!(ept.translate(&mem, 3 * PAGE_2M + 0x1f_ffff), Some((0x4000_0000 + 4 * PAGE_2M - 1, Perms::RWX)));
    assert_eq!(ept.translate(&mem, 4 * PAGE_2M), None);
    // Non-leaf entries allow everything and carry no memory type.
    assert_eq!(mem.tables[0][0], (FRAMES + PAGE_4K) | 7);
}

#[test]
fn misaligned_host_uses_4k_leaves() {
    let mut mem = Frames::new();
    let mut ept = new_ept(&mut mem);
    ept.map(&mut mem, PAGE_2M, 0x1234_5000, PAGE_2M, Perms::RX).unwrap();
    // PML4, PDPT, PD and one PT of 512 leaves.
    assert_eq!(mem.tables.len(), 4);
    let pt = &mem.tables[3];
    assert!(pt.iter().enumerate().all(|(i, &e)| e == (0x1234_5000 + i as u64 * PAGE_4K) | 0x5 | 6 << 3));
    assert_eq!(ept.translate(&mem, PAGE_2M + 0x1ff_fff), Some((0x1254_4fff, Perms::RX)));
}

#[test]
fn head_and_tail_pages_around_large_ones() {
    let mut mem = Frames::new();
    let mut ept = new_ept(&mut mem);
    // Guest and host agree modulo 2 MiB: one 4K head page, two 2M pages,
    // one 4K tail page.
    let (guest, host) = (PAGE_2M - PAGE_4K, 0x8000_0000 + PAGE_2M - PAGE_4K);
    ept.map(&mut mem, guest, host, 2 * PAGE_4K + 2 * PAGE_2M, Perms::RW).unwrap();
    let pd = &mem.tables[2];
    assert_eq!(pd[0] & LARGE, 0, "head: a page table");
    assert_eq!(pd[1], (host + PAGE_4K) | 0x3 | 6 << 3 | LARGE);
    assert_eq!(pd[2], (host + PAGE_4K + PAGE_2M) | 0x3 | 6 << 3 | LARGE);
    assert_eq!(pd[3] & LARGE, 0, "tail: a page table");
    for offset in [0, PAGE_4K, PAGE_2M + 0x10, 2 * PAGE_2M + PAGE_4K, 2 * PAGE_2M + 2 * PAGE_4K - 1] {
        assert_eq!(ept.translate(&mem, guest + offset), Some((host + offset, Perms::RW)), "{offset:#x}");
    }
    assert_eq!(ept.translate(&mem, guest - 1), None);
    assert_eq!(ept.translate(&mem, guest + 2 * PAGE_4K + 2 * PAGE_2M), None);
}

#[test]
fn no_large_pages_without_the_capability() {
    let mut mem = Frames::new();
    let mut ept = Ept::new(&mut mem, skylake_caps() & !CAP_2M_PAGES).unwrap();
    ept.map(&mut mem, 0, 0, PAGE_2M, Perms::RWX).unwrap();
    assert_eq!(mem.tables.len(), 4);
}

#[test]
fn refuses_bad_ranges_and_rights() {
    let mut mem = Frames::new();
    let mut ept = new_ept(&mut mem);
    let mut map = |guest, host, len, perms| ept.map(&mut mem, guest, host, len, perms);
    assert_eq!(map(0x800, 0, PAGE_4K, Perms::R), Err(EptError::Unaligned { guest: 0x800, host: 0, len: PAGE_4K }));
    assert_eq!(map(0, 0, 0x10, Perms::R), Err(EptError::Unaligned { guest: 0, host: 0, len: 0x10 }));
    assert_eq!(map(0, 0, 0, Perms::R), Err(EptError::Empty { guest: 0 }));
    let top = GUEST_PHYS_LIMIT - PAGE_4K;
    assert_eq!(map(top, 0, PAGE_4K, Perms::R), Ok(()));
    assert_eq!(map(top, 0, 2 * PAGE_4K, Perms::R), Err(EptError::GuestOutOfRange { guest: top, len: 2 * PAGE_4K }));
    assert_eq!(
        map(GUEST_PHYS_LIMIT, 0, PAGE_4K, Perms::R),
        Err(EptError::GuestOutOfRange { guest: 1 << 48, len: PAGE_4K })
    );
    let huge = !(PAGE_4K - 1);
    assert_eq!(map(0, 0, huge, Perms::R), Err(EptError::GuestOutOfRange { guest: 0, len: huge }));
    assert_eq!(
        map(0, HOST_PHYS_LIMIT, PAGE_4K, Perms::R),
        Err(EptError::HostOutOfRange { host: 1 << 52, len: PAGE_4K })
    );
    // Write without read is an EPT misconfiguration; no rights at all maps
    // nothing.
    for perms in [Perms::NONE, Perms::new(false, true, false), Perms::new(false, true, true)] {
        assert_eq!(map(0, 0, PAGE_4K, perms), Err(EptError::BadPerms(perms)));
    }
    assert_eq!(map(0, 0, PAGE_4K, Perms::X), Ok(()), "Bochs offers execute-only");
    let mut mem = Frames::new();
    let mut ept = Ept::new(&mut mem, skylake_caps() & !CAP_EXECUTE_ONLY).unwrap();
    assert_eq!(ept.map(&mut mem, 0, 0, PAGE_4K, Perms::X), Err(EptError::BadPerms(Perms::X)));
}

#[test]
fn overlap_is_refused_and_changes_nothing() {
    let mut mem = Frames::new();
    let mut ept = new_ept(&mut mem);
    ept.map(&mut mem, 0x10_0000, 0x10_0000, 4 * PAGE_4K, Perms::RW).unwrap();
    ept.map(&mut mem, 4 * PAGE_2M, 0, PAGE_2M, Perms::RW).unwrap();
    let before = mem.tables.clone();
    let mut map = |guest, len| ept.map(&mut mem, guest, 0x9000_0000, len, Perms::R);
    assert_eq!(map(0x10_3000, PAGE_4K), Err(EptError::Overlap { guest: 0x10_3000 }));
    assert_eq!(map(0, 0x10_1000), Err(EptError::Overlap { guest: 0x10_0000 }));
    // Into a 2 MiB page from below, and inside it.
    assert_eq!(map(4 * PAGE_2M - PAGE_4K, 2 * PAGE_4K), Err(EptError::Overlap { guest: 4 * PAGE_2M }));
    assert_eq!(map(4 * PAGE_2M + 0x5000, PAGE_4K), Err(EptError::Overlap { guest: 4 * PAGE_2M + 0x5000 }));
    assert_eq!(mem.tables, before);
    // The pages next to a mapping are free.
    ept.map(&mut mem, 0x10_4000, 0x20_0000, PAGE_4K, Perms::R).unwrap();
    ept.map(&mut mem, 0x0f_f000, 0x20_1000, PAGE_4K, Perms::R).unwrap();
}

#[test]
fn out_of_memory_undoes_the_partial_map() {
    // PML4, PDPT and PD fit; the second PD (the range crosses 1 GiB) does
    // not, after two 2 MiB leaves below 1 GiB were written.
    let mut mem = Frames::with_limit(3);
    let mut ept = new_ept(&mut mem);
    let guest = GIB - 2 * PAGE_2M;
    assert_eq!(ept.map(&mut mem, guest, 0, 4 * PAGE_2M, Perms::RW), Err(EptError::OutOfMemory));
    assert!(mem.tables.iter().skip(2).all(|t| t.iter().all(|&e| e == 0)), "leaves undone");
    assert_eq!(ept.translate(&mem, guest), None);
    assert_eq!(count_tables(&ept, &mem), 3, "the empty tables stay linked, for freeing");
    assert_eq!(Ept::new(&mut mem, skylake_caps()), Err(EptError::OutOfMemory));
}

#[test]
fn unmap_splits_a_large_page() {
    let mut mem = Frames::new();
    let mut ept = new_ept(&mut mem);
    let host = 0x4000_0000;
    ept.map(&mut mem, 0, host, 2 * PAGE_2M, Perms::RWX).unwrap();
    // The APIC-access page case: one page out of guest RAM.
    let hole = PAGE_2M + 0x5000;
    assert_eq!(ept.unmap(&mut mem, hole, PAGE_4K), Ok(PAGE_4K));
    assert_eq!(ept.translate(&mem, hole), None);
    for guest in [0, PAGE_2M, hole - 1, hole + PAGE_4K, 2 * PAGE_2M - 1] {
        assert_eq!(ept.translate(&mem, guest), Some((host + guest, Perms::RWX)), "{guest:#x}");
    }
    let pt = mem.tables.last().unwrap();
    assert_eq!(pt[4], (host + PAGE_2M + 0x4000) | 0x7 | 6 << 3, "split leaves keep WB and rights, not bit 7");
    // The page can be mapped again; unmapping what is not mapped is a no-op.
    ept.map(&mut mem, hole, 0xfee0_0000, PAGE_4K, Perms::RW).unwrap();
    assert_eq!(ept.translate(&mem, hole + 8), Some((0xfee0_0008, Perms::RW)));
    assert_eq!(ept.unmap(&mut mem, 4 * PAGE_2M, PAGE_2M), Ok(0));
    assert_eq!(ept.unmap(&mut mem, 0, 4 * PAGE_2M), Ok(2 * PAGE_2M));
    assert_eq!(ept.translate(&mem, 0), None);
    assert_eq!(ept.unmap(&mut mem, 0, 0), Err(EptError::Empty { guest: 0 }));
}

#[test]
fn unmap_that_must_split_fails_cleanly_without_memory() {
    let mut mem = Frames::with_limit(3);
    let mut ept = new_ept(&mut mem);
    ept.map(&mut mem, 0, 0, PAGE_2M, Perms::RW).unwrap();
    assert_eq!(ept.unmap(&mut mem, PAGE_4K, PAGE_4K), Err(EptError::OutOfMemory));
    assert_eq!(ept.translate(&mem, PAGE_4K), Some((PAGE_4K, Perms::RW)));
}

#[test]
fn every_allocated_table_is_visited_once_children_first() {
    let mut mem = Frames::new();
    let mut ept = new_ept(&mut mem);
    ept.map(&mut mem, 0, 0, 3 * PAGE_2M + 5 * PAGE_4K, Perms::RWX).unwrap();
    ept.map(&mut mem, 5 * GIB + 0x3000, 0x3000, 0x2000, Perms::R).unwrap();
    ept.map(&mut mem, 600 * GIB, 0, PAGE_2M, Perms::R).unwrap();
    ept.unmap(&mut mem, PAGE_2M + PAGE_4K, PAGE_4K).unwrap();
    ept.unmap(&mut mem, 5 * GIB, PAGE_2M).unwrap();
    let mut seen = Vec::new();
    ept.for_each_table(&mem, |t| seen.push(t));
    assert_eq!(seen.iter().copied().collect::<BTreeSet<_>>(), mem.allocated(), "freed == allocated");
    assert_eq!(seen.len(), mem.tables.len(), "no table twice");
    assert_eq!(*seen.last().unwrap(), ept.pml4(), "the PML4 last");
    // A parent comes after each of its children.
    let position = |t: u64| seen.iter().position(|&s| s == t).unwrap();
    for (i, table) in mem.tables.iter().enumerate() {
        let parent = FRAMES + i as u64 * PAGE_4K;
        for &e in table.iter().filter(|&&e| present(e) && e & LARGE == 0) {
            if mem.allocated().contains(&(e & ADDRESS)) {
                assert!(position(e & ADDRESS) < position(parent));
            }
        }
    }
}

#[test]
fn translate_ands_the_rights_of_every_level() {
    let mut mem = Frames::new();
    let mut ept = new_ept(&mut mem);
    ept.map(&mut mem, 0, 0, PAGE_4K, Perms::RWX).unwrap();
    // A table built by someone else with a read-only PDPT entry.
    mem.tables[0][0] &= !(WRITE | EXECUTE);
    assert_eq!(ept.translate(&mem, 0x10), Some((0x10, Perms::R)));
    assert_eq!(ept.translate(&mem, GUEST_PHYS_LIMIT), None);
}

#[test]
fn ept_violation_qualifications() {
    let cases = [
        // Read of an unmapped page through a linear address.
        (0x181, (true, false, false), Perms::NONE, LinearAccess::Translation, false),
        // Write to a read/execute page.
        (0x02 | 0x5 << 3 | 1 << 7 | 1 << 8, (false, true, false), Perms::RX, LinearAccess::Translation, false),
        // Fetch during a guest page walk (the walk's read).
        (0x01 | 1 << 7, (true, false, false), Perms::NONE, LinearAccess::PagingStructure, false),
        (0x04 | 0x3 << 3, (false, false, true), Perms::RW, LinearAccess::None, false),
        // Bits 9-11 (advanced information) are ignored; bit 12 is not.
        (0x1e02 | 1 << 7 | 1 << 8, (false, true, false), Perms::NONE, LinearAccess::Translation, true),
    ];
    for (qual, (read, write, fetch), allowed, linear, nmi_unblocking) in cases {
        let expected = EptViolation { read, write, fetch, allowed, linear, nmi_unblocking };
        assert_eq!(EptViolation::decode(qual), expected, "{qual:#x}");
    }
    let shown = |qual| format!("{}", EptViolation::decode(qual));
    assert_eq!(shown(0x181), "read to an unmapped page (translation of a linear address)");
    assert_eq!(shown(0x1aa), "write to a page allowing r-x (translation of a linear address)");
    assert_eq!(shown(0x1083), "read+write to an unmapped page (guest paging-structure entry), NMI unblocked by IRET");
    assert_eq!(shown(0x38), "access to a page allowing rwx (no guest-linear address)");
}

#[test]
fn error_messages_name_the_addresses() {
    let shown = format!("{}", EptError::Overlap { guest: 0x10_3000 });
    assert_eq!(shown, "guest-physical page 0x103000 is already mapped; unmap it before mapping again");
    let shown = format!("{}", EptError::BadPerms(Perms::new(false, true, false)));
    assert!(shown.contains("-w-"), "{shown}");
}
