//! Walks over page tables in a map of guest-physical words.

use super::*;
use std::collections::BTreeMap;

struct Memory(BTreeMap<u64, u64>);

impl Memory {
    fn read(&self, gpa: u64) -> Option<u64> {
        (gpa < 1 << 30).then(|| self.0.get(&gpa).copied().unwrap_or(0))
    }
}

const LONG: Paging = Paging { cr0: 0x8000_0031, cr3: 0x1000, cr4: 0x20, long_mode: true };

/// PML4 at 0x1000, PDPT at 0x2000, PD at 0x3000, PT at 0x4000:
/// - 0x0000_0040_0020_0000 (PML4 0, PDPT 1, PD 1): a 2 MiB page at 0x60_0000;
/// - 0xffff_8000_0000_0000 (PML4 256): a 1 GiB page at 0x4000_0000;
/// - 0x5000 (PD 0, PT 5): a 4 KiB page at 0x9000.
fn tables() -> Memory {
    let mut m = BTreeMap::new();
    m.insert(0x1000, 0x2003);
    m.insert(0x1000 + 256 * 8, 0x5003);
    m.insert(0x5000, 0x4000_0083);
    m.insert(0x2000, 0x3003);
    m.insert(0x2008, 0x6003);
    m.insert(0x6008, 0x60_0083);
    m.insert(0x3000, 0x4003);
    m.insert(0x4000 + 5 * 8, 0x9003);
    Memory(m)
}

#[test]
fn four_level_pages_of_each_size() {
    let m = tables();
    let t = |gva| translate(&LONG, gva, |a| m.read(a));
    assert_eq!(t(0x5123), Ok(0x9123));
    assert_eq!(t(0x4020_0000 + 0x1234), Ok(0x60_1234));
    assert_eq!(t(0xffff_8000_0012_3456), Ok(0x4012_3456));
    assert_eq!(t(0x6000), Err(Error::NotPresent { gva: 0x6000, level: 1 }));
    assert_eq!(t(0x80_0000_0000), Err(Error::NotPresent { gva: 0x80_0000_0000, level: 4 }));
}

#[test]
fn no_paging_is_the_identity_and_pae_is_walked() {
    let m = tables();
    let off = Paging { cr0: 0x10, ..LONG };
    assert_eq!(translate(&off, 0xb_8000, |a| m.read(a)), Ok(0xb_8000));
    // PAE: the 4-entry PDPT at 0x2000, PD at 0x3000, PT at 0x4000.
    let pae = Paging { long_mode: false, cr3: 0x2000, ..LONG };
    assert_eq!(translate(&pae, 0x5010, |a| m.read(a)), Ok(0x9010));
    assert_eq!(translate(&pae, 0x4020_0010, |a| m.read(a)), Ok(0x60_0010));
    let flat32 = Paging { cr4: 0, long_mode: false, ..LONG };
    assert_eq!(translate(&flat32, 0, |a| m.read(a)), Err(Error::Paging32));
}

#[test]
fn tables_outside_ram_are_reported() {
    let far = Paging { cr3: 0x8000_0000, ..LONG };
    assert_eq!(translate(&far, 0, |a| tables().read(a)), Err(Error::Unreadable { gpa: 0x8000_0000 }));
}

#[test]
fn reads_cross_pages() {
    let mut m = tables().0;
    // 0x6000 maps to 0x7000 now: 0x5ffe..0x6002 spans two pages.
    m.insert(0x4000 + 6 * 8, 0x7003);
    let m = Memory(m);
    let mut out = [0u8; 4];
    let bytes = |gpa: u64, buf: &mut [u8]| {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (gpa + i as u64) as u8;
        }
        true
    };
    read_virtual(&LONG, 0x5ffe, &mut out, |a| m.read(a), bytes).unwrap();
    assert_eq!(out, [0xfe, 0xff, 0x00, 0x01]);
    let e = read_virtual(&LONG, 0x7ffe, &mut out, |a| m.read(a), bytes);
    assert_eq!(e, Err(Error::NotPresent { gva: 0x7ffe, level: 1 }));
    assert!(std::format!("{}", e.unwrap_err()).contains("not mapped"));
}
