//! ICR decoding, the IPI an ICR write sends, and its destinations.

use super::*;

/// ICR fields: vector, delivery mode, logical, assert, level, shorthand,
/// destination.
fn icr(vector: u8, mode: u64, logical: bool, shorthand: u64, dest: u32) -> u64 {
    u64::from(vector) | mode << 8 | u64::from(logical) << 11 | 1 << 14 | shorthand << 18 | u64::from(dest) << 32
}

fn ipi(value: u64) -> Ipi {
    Ipi::decode(value).unwrap()
}

/// The targets among vCPUs 0..n when `sender` sends `value`.
fn targets(value: u64, sender: u32, n: u32) -> Vec<u32> {
    destinations(ipi(value), sender, 0..n).collect()
}

#[test]
fn every_field_decodes() {
    let modes = [
        (0, DeliveryMode::Fixed),
        (1, DeliveryMode::LowestPriority),
        (2, DeliveryMode::Smi),
        (4, DeliveryMode::Nmi),
        (5, DeliveryMode::Init),
        (6, DeliveryMode::StartUp),
    ];
    for (bits, mode) in modes {
        assert_eq!(ipi(icr(0x31, bits, false, 0, 9)).mode, mode);
    }
    let shorthands = [
        (0, Shorthand::None),
        (1, Shorthand::SelfOnly),
        (2, Shorthand::AllIncludingSelf),
        (3, Shorthand::AllExcludingSelf),
    ];
    for (bits, shorthand) in shorthands {
        assert_eq!(ipi(icr(0x31, 0, false, bits, 0)).shorthand, shorthand);
    }
    let decoded = ipi(icr(0xfe, 0, true, 0, 0x0003_0005) | 1 << 15);
    let expected = Ipi {
        vector: 0xfe,
        mode: DeliveryMode::Fixed,
        dest_mode: DestMode::Logical,
        shorthand: Shorthand::None,
        dest: 0x0003_0005,
        assert: true,
        trigger: Trigger::Level,
    };
    assert_eq!(decoded, expected);
    let edge = ipi(0x30 | 7 << 32);
    assert_eq!((edge.dest_mode, edge.assert, edge.trigger, edge.dest), (DestMode::Physical, false, Trigger::Edge, 7));
}

#[test]
fn reserved_delivery_modes_fault() {
    for mode in [3, 7] {
        let value = icr(0x30, mode, false, 0, 1);
        assert_eq!(Ipi::decode(value), Err(Fault::Reserved { msr: MSR_ICR, value }));
    }
}

#[test]
fn an_icr_write_sends_and_reads_back() {
    let mut apic = enabled(1);
    let value = icr(0x40, 0, false, 0, 2);
    assert_eq!(write(&mut apic, MSR_ICR, value | 1 << 12), Effect::SendIpi(ipi(value)));
    assert_eq!(read(&mut apic, MSR_ICR), value, "delivery status reads idle");
}

#[test]
fn fixed_ipis_need_a_legal_vector_the_others_do_not() {
    let mut apic = enabled(1);
    for mode in [0, 1] {
        assert_eq!(write(&mut apic, MSR_ICR, icr(15, mode, false, 0, 2)), Effect::None);
    }
    write(&mut apic, MSR_ESR, 0);
    assert_eq!(read(&mut apic, MSR_ESR), u64::from(ESR_SEND_ILLEGAL_VECTOR));
    // NMI and INIT ignore the vector; a SIPI's vector is the start page.
    for (mode, vector) in [(4, 0), (5, 0), (6, 0x08), (2, 0)] {
        let value = icr(vector, mode, false, 0, 2);
        assert_eq!(write(&mut apic, MSR_ICR, value), Effect::SendIpi(ipi(value)), "mode {mode}");
    }
}

#[test]
fn init_level_deassert_sends_nothing() {
    let mut apic = enabled(1);
    let deassert = 5 << 8 | 1 << 15 | 2 << 32;
    assert!(ipi(deassert).is_init_deassert());
    assert_eq!(write(&mut apic, MSR_ICR, deassert), Effect::None);
    assert_eq!(read(&mut apic, MSR_ICR), deassert);
    // An INIT assert, edge or level, is sent.
    for value in [icr(0, 5, false, 0, 2), icr(0, 5, false, 0, 2) | 1 << 15] {
        assert!(!ipi(value).is_init_deassert());
        assert_eq!(write(&mut apic, MSR_ICR, value), Effect::SendIpi(ipi(value)));
    }
}

#[test]
fn physical_destinations() {
    assert_eq!(targets(icr(0x40, 0, false, 0, 5), 0, 8), [5]);
    assert_eq!(targets(icr(0x40, 0, false, 0, 0), 0, 8), [0], "to self by ID");
    assert_eq!(targets(icr(0x40, 0, false, 0, 8), 0, 8), [0u32; 0], "no such vCPU");
    // x2APIC IDs are 32 bits: 0x105 is not 5.
    assert_eq!(
        destinations(ipi(icr(0x40, 0, false, 0, 0x105)), 0, [5, 0x105].into_iter()).collect::<Vec<_>>(),
        [0x105]
    );
}

#[test]
fn broadcast_reaches_everyone_in_both_modes() {
    for logical in [false, true] {
        assert_eq!(targets(icr(0x40, 0, logical, 0, 0xffff_ffff), 3, 6), [0, 1, 2, 3, 4, 5], "logical {logical}");
    }
}

#[test]
fn logical_destinations_are_a_cluster_and_a_member_mask() {
    // Cluster 1 holds IDs 16-31; mask bits 0 and 2 are IDs 16 and 18.
    assert_eq!(targets(icr(0x40, 0, true, 0, 0x0001_0005), 0, 40), [16, 18]);
    assert_eq!(targets(icr(0x40, 0, true, 0, 0x0000_8001), 0, 40), [0, 15]);
    assert_eq!(targets(icr(0x40, 0, true, 0, 0x0002_ffff), 0, 40), (32..40).collect::<Vec<_>>());
    assert_eq!(targets(icr(0x40, 0, true, 0, 0x0003_ffff), 0, 40), [0u32; 0], "empty cluster");
    assert_eq!(targets(icr(0x40, 0, true, 0, 0x0001_0000), 0, 40), [0u32; 0], "empty mask");
    // A physical destination of the same value names one ID only.
    assert_eq!(targets(icr(0x40, 0, false, 0, 0x0000_0005), 0, 40), [5]);
}

#[test]
fn shorthands_ignore_the_destination() {
    let dest = 0x0001_0005;
    for logical in [false, true] {
        assert_eq!(targets(icr(0x40, 0, logical, 1, dest), 3, 6), [3]);
        assert_eq!(targets(icr(0x40, 0, logical, 2, dest), 3, 6), [0, 1, 2, 3, 4, 5]);
        assert_eq!(targets(icr(0x40, 0, logical, 3, dest), 3, 6), [0, 1, 2, 4, 5]);
    }
    // All-excluding-self from the only vCPU reaches nobody.
    assert_eq!(targets(icr(0x40, 0, false, 3, 0), 0, 1), [0u32; 0]);
}

#[test]
fn destinations_keep_the_callers_order_and_ids() {
    let ids = [7, 3, 0x20, 1];
    let all_but_3: Vec<u32> = destinations(ipi(icr(0x40, 0, false, 3, 0)), 3, ids.into_iter()).collect();
    assert_eq!(all_but_3, [7, 0x20, 1]);
}
