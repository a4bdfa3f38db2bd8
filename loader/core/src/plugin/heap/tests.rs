use super::*;
use std::collections::BTreeMap;
use std::string::ToString;
use std::vec::Vec;

type Small = Ledger<64, 4>;

/// Two plugins: 1 at [0x1000, 0x3000), 2 at [0x8000, 0x9000).
fn two() -> Small {
    let mut l = Small::new();
    l.open(1, 0x1000, 0x2000).unwrap();
    l.open(2, 0x8000, 0x1000).unwrap();
    l
}

fn held(l: &Small, id: u64) -> (u64, u64) {
    let a = l.account(id).unwrap();
    (a.held.bytes, a.held.blocks)
}

#[test]
fn blocks_belong_to_the_image_their_code_is_in() {
    let l = two();
    assert_eq!(l.owner_at(0x1000), Ok(1));
    assert_eq!(l.owner_at(0x2fff), Ok(1));
    assert_eq!(l.owner_at(0x8123), Ok(2));
    assert_eq!(l.owner_at(0x3000), Err(Error::NotInImage(0x3000)));
    assert_eq!(l.owner_at(0x7fff), Err(Error::NotInImage(0x7fff)));
}

#[test]
fn accounts_are_unique_disjoint_and_bounded() {
    let mut l = two();
    assert_eq!(l.open(1, 0x20000, 0x1000), Err(Error::AlreadyOpen(1)));
    assert_eq!(l.open(3, 0x2fff, 0x10), Err(Error::Overlaps { id: 3, other: 1 }));
    assert_eq!(l.open(3, 0x7000, 0x1001), Err(Error::Overlaps { id: 3, other: 2 }));
    l.open(3, 0x3000, 0x1000).unwrap();
    l.open(4, 0x9000, 0x1000).unwrap();
    assert_eq!(l.open(5, 0x10000, 0x1000), Err(Error::TooManyPlugins { max: 4 }));
    // A closed account's slot is reused.
    l.close(4, End::Unloaded).unwrap();
    l.open(5, 0x10000, 0x1000).unwrap();
    assert_eq!(l.account(4), None);
}

#[test]
fn frees_by_anyone_come_off_the_owners_account() {
    let mut l = two();
    l.record(1, 0x100_0000, 48, 8).unwrap();
    l.record(1, 0x100_0040, 16, 16).unwrap();
    l.record(2, 0x100_0080, 100, 4).unwrap();
    assert_eq!((held(&l, 1), held(&l, 2)), ((64, 2), (100, 1)));
    assert_eq!(l.held(), Totals { bytes: 164, blocks: 3 });
    // Whoever frees it (the ledger is not told), the owner is debited.
    assert_eq!(l.release(0x100_0040, 16, 16), Ok(Block { addr: 0x100_0040, size: 16, align: 16, owner: 1 }));
    assert_eq!(held(&l, 1), (48, 1));
    assert_eq!(l.release(0x100_0040, 16, 16), Err(Error::Unknown(0x100_0040)), "a double free is refused");
    assert_eq!(l.release(0x100_0099, 1, 1), Err(Error::Unknown(0x100_0099)));
    assert_eq!(
        l.release(0x100_0080, 100, 8),
        Err(Error::LayoutMismatch { addr: 0x100_0080, recorded: (100, 4), given: (100, 8) })
    );
    assert_eq!(held(&l, 2), (100, 1), "a mismatched free leaves the block alone");
    assert_eq!(l.record(2, 0x100_0000, 8, 8), Err(Error::Duplicate(0x100_0000)));
    assert_eq!(l.record(7, 0x200_0000, 8, 8), Err(Error::NoAccount(7)));
    assert_eq!(l.block(0x100_0000).map(|b| b.owner), Some(1));
}

#[test]
fn the_table_holds_three_quarters_of_its_slots() {
    let mut l = Small::new();
    l.open(1, 0, 0x1000).unwrap();
    for k in 0..Small::MAX_BLOCKS as u64 {
        l.record(1, 0x10 + k * 0x10, 1, 1).unwrap();
    }
    assert_eq!(l.has_room(), Err(Error::Full { max: 48 }));
    assert_eq!(l.record(1, 0x10_0000, 1, 1), Err(Error::Full { max: 48 }));
    l.release(0x10, 1, 1).unwrap();
    l.has_room().unwrap();
}

/// A small deterministic generator, so that a failure replays.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn lookups_survive_any_order_of_records_and_releases() {
    // Few slots and clustered addresses: long probe runs that wrap around
    // the table's end, and deletions inside them.
    for seed in 0..20 {
        let mut l = Small::new();
        l.open(1, 0, 0x1000).unwrap();
        l.open(2, 0x1000, 0x1000).unwrap();
        let mut model: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        let mut rng = Lcg(seed);
        for _ in 0..2000 {
            let addr = 8 * (1 + rng.next() % 120);
            let owner = 1 + rng.next() % 2;
            if let Some(&(size, _)) = model.get(&addr) {
                let b = l.release(addr, size, 8).unwrap();
                assert_eq!(model.remove(&addr).map(|m| m.1), Some(b.owner));
            } else if model.len() < Small::MAX_BLOCKS {
                let size = 1 + rng.next() % 64;
                l.record(owner, addr, size, 8).unwrap();
                model.insert(addr, (size, owner));
            }
            for (&a, &(size, owner)) in &model {
                assert_eq!(l.block(a), Some(Block { addr: a, size, align: 8, owner }), "seed {seed}");
            }
        }
        for id in [1, 2] {
            let want: Vec<u64> = model.values().filter(|m| m.1 == id).map(|m| m.0).collect();
            assert_eq!(held(&l, id), (want.iter().sum(), want.len() as u64), "seed {seed}");
        }
    }
}

#[test]
fn a_successor_adopts_what_its_predecessor_handed_over() {
    // 1 is the running version, 2 the new one of a swap, 3 a bystander.
    let mut l = Ledger::<64, 4>::new();
    l.open(1, 0x1000, 0x1000).unwrap();
    l.open(2, 0x2000, 0x1000).unwrap();
    l.open(3, 0x3000, 0x1000).unwrap();
    l.record(1, 0xa000, 4096, 4096).unwrap();
    l.record(1, 0xb000, 32, 8).unwrap();
    l.record(3, 0xc000, 8, 8).unwrap();
    assert_eq!(l.adopt(2, 0xa000), Err(Error::NotYours { addr: 0xa000, owner: 1, by: 2 }), "no swap yet");
    l.begin_handover(1, 2).unwrap();
    assert_eq!(l.adopt(2, 0xa000).map(|b| b.owner), Ok(2));
    assert_eq!(l.adopt(2, 0xa000).map(|b| b.owner), Ok(2), "adopting one's own is a no-op");
    assert_eq!(l.adopt(2, 0xc000), Err(Error::NotYours { addr: 0xc000, owner: 3, by: 2 }));
    assert_eq!(l.adopt(3, 0xb000), Err(Error::NotYours { addr: 0xb000, owner: 1, by: 3 }));
    assert_eq!(l.adopt(2, 0xd000), Err(Error::Unknown(0xd000)));
    assert_eq!((held(&l, 1), held(&l, 2)), ((32, 1), (4096, 1)));
    assert_eq!(l.end_handover(2, true), Totals::default());
    assert_eq!(l.account(2).unwrap().predecessor, None);
    // The retired version still held 32 bytes: a leak, freed.
    let c = l.close(1, End::Retired).unwrap();
    assert_eq!((c.leftover, c.disposal), (Totals { bytes: 32, blocks: 1 }, Disposal::Free));
    assert_eq!(l.next_to_free().map(|b| (b.addr, b.size, b.align)), Some((0xb000, 32, 8)));
    assert_eq!(l.next_to_free(), None);
    // What the successor adopted is its own: it frees it later.
    assert_eq!(l.release(0xa000, 4096, 4096).map(|b| b.owner), Ok(2));
    assert_eq!(held(&l, 2), (0, 0));
    assert_eq!(l.adopt(2, 0xc000).map(|b| b.owner), Err(Error::NotYours { addr: 0xc000, owner: 3, by: 2 }));
}

#[test]
fn a_swap_called_off_gives_adopted_blocks_back() {
    let mut l = two();
    l.record(1, 0xa000, 4096, 4096).unwrap();
    l.record(2, 0xe000, 10, 1).unwrap();
    l.begin_handover(1, 2).unwrap();
    l.adopt(2, 0xa000).unwrap();
    assert_eq!(l.end_handover(2, false), Totals { bytes: 4096, blocks: 1 });
    assert_eq!((held(&l, 1), held(&l, 2)), ((4096, 1), (10, 1)));
    // The new version goes; only its own block was a leak.
    let c = l.close(2, End::Refused).unwrap();
    assert_eq!(c.leftover, Totals { bytes: 10, blocks: 1 });
    assert_eq!(l.next_to_free().map(|b| b.addr), Some(0xe000));
    assert_eq!(l.next_to_free(), None);
    assert_eq!(l.block(0xa000).map(|b| b.owner), Some(1));
    // Ending a handover twice, or for no account, changes nothing.
    assert_eq!(l.end_handover(1, false), Totals::default());
    assert_eq!(l.end_handover(9, true), Totals::default());
}

#[test]
fn what_is_left_is_freed_or_kept_by_how_the_plugin_ended() {
    for (end, freed) in [
        (End::Unloaded, true),
        (End::Retired, true),
        (End::Refused, true),
        (End::Panicked, false),
        (End::Stranded, false),
    ] {
        let mut l = two();
        l.record(1, 0x5000, 24, 8).unwrap();
        l.record(1, 0x6000, 40, 8).unwrap();
        l.record(2, 0x7000, 8, 8).unwrap();
        let c = l.close(1, end).unwrap();
        assert_eq!(c.leftover, Totals { bytes: 64, blocks: 2 }, "{end:?}");
        assert_eq!(c.disposal == Disposal::Free, freed, "{end:?}");
        assert_eq!(l.account(1), None);
        assert_eq!(l.leaked(), (Totals { bytes: 64, blocks: 2 }, 1));
        let mut out: Vec<u64> = core::iter::from_fn(|| l.next_to_free()).map(|b| b.addr).collect();
        out.sort_unstable();
        if freed {
            assert_eq!(out, [0x5000, 0x6000], "{end:?}");
            assert_eq!(l.kept(), Totals::default());
        } else {
            assert!(out.is_empty(), "{end:?}");
            assert_eq!(l.kept(), Totals { bytes: 64, blocks: 2 });
            // Something that still used a kept block may free it yet.
            l.release(0x5000, 24, 8).unwrap();
            assert_eq!(l.kept(), Totals { bytes: 40, blocks: 1 });
        }
        assert_eq!(held(&l, 2), (8, 1), "the other plugin is untouched");
        assert_eq!(l.close(1, end), Err(Error::NoAccount(1)));
    }
}

#[test]
fn a_clean_plugin_closes_without_a_leak() {
    let mut l = two();
    l.record(1, 0x5000, 24, 8).unwrap();
    l.release(0x5000, 24, 8).unwrap();
    let c = l.close(1, End::Unloaded).unwrap();
    assert_eq!(c.leftover, Totals::default());
    assert_eq!(c.report("x 1.0.0"), None);
    assert_eq!(l.leaked(), (Totals::default(), 0));
    assert_eq!(l.next_to_free(), None);
}

#[test]
fn both_versions_of_a_swap_have_accounts_of_their_own() {
    // Old and new alive at once: each one's allocations go to its image;
    // the old one retires clean, the new one carries on.
    let mut l = two();
    let (old_code, new_code) = (0x1800, 0x8800);
    for k in 0..5 {
        l.record(l.owner_at(old_code).unwrap(), 0x10_0000 + k * 64, 64, 8).unwrap();
    }
    l.begin_handover(1, 2).unwrap();
    l.record(l.owner_at(new_code).unwrap(), 0x20_0000, 32, 8).unwrap();
    l.adopt(2, 0x10_0000).unwrap();
    l.end_handover(2, true);
    // The old version's retire frees the rest of its state.
    for k in 1..5 {
        l.release(0x10_0000 + k * 64, 64, 8).unwrap();
    }
    assert_eq!(l.close(1, End::Retired).unwrap().leftover, Totals::default());
    assert_eq!(held(&l, 2), (96, 2));
}

#[test]
fn reports_name_the_plugin_the_bytes_and_what_became_of_them() {
    let freed = Closing { end: End::Retired, leftover: Totals { bytes: 672, blocks: 9 }, disposal: Disposal::Free };
    assert_eq!(
        freed.report("cpuhp-plugin 1.2.0").unwrap(),
        "heap leak: cpuhp-plugin 1.2.0 still held 672 bytes in 9 blocks when a swap retired it; freed them"
    );
    let one = Closing { end: End::Unloaded, leftover: Totals { bytes: 8, blocks: 1 }, disposal: Disposal::Free };
    assert!(one.report("x 1.0.0").unwrap().contains("8 bytes in 1 block when it was unloaded"));
    let kept =
        Closing { end: End::Panicked, leftover: Totals { bytes: 4096, blocks: 1 }, disposal: End::Panicked.disposal() };
    let r = kept.report("vmx-plugin 1.0.0").unwrap();
    assert!(
        r.starts_with("heap leak: vmx-plugin 1.0.0 still held 4096 bytes in 1 block after it panicked; kept"),
        "{r}"
    );
    assert!(r.contains("hardware"), "{r}");
}

#[test]
fn errors_say_what_happened() {
    assert!(Error::Unknown(0x10).to_string().contains("freed twice"));
    assert!(Error::NotInImage(0x10).to_string().contains("no loaded plugin image"));
    assert!(Error::Full { max: 3 }.to_string().contains("3 blocks"));
    assert!(Error::TooManyPlugins { max: 64 }.to_string().contains("64 plugins"));
}

#[test]
fn the_kernel_ledger_fits_its_limits() {
    // The kernel's instance: one static, no heap.
    let l: std::boxed::Box<Ledger<SLOTS, ACCOUNTS>> = std::boxed::Box::default();
    assert_eq!(Ledger::<SLOTS, ACCOUNTS>::MAX_BLOCKS, 3072);
    assert_eq!(l.held(), Totals::default());
}
