//! Register reads and writes, and the #GP faults of x2APIC mode.

use super::*;

#[test]
fn reset_state_reads_as_the_sdm_gives_it() {
    let mut apic = Lapic::new(0x23, clock());
    assert_eq!(read(&mut apic, MSR_ID), 0x23);
    assert_eq!(read(&mut apic, MSR_VERSION), 0x0006_0014);
    assert_eq!(read(&mut apic, MSR_LDR), 0x0002_0008);
    assert_eq!(read(&mut apic, MSR_SVR), 0xff);
    assert!(!apic.enabled());
    for msr in [MSR_TPR, MSR_PPR, MSR_ESR, MSR_ICR, MSR_TIMER_INITIAL, MSR_TIMER_CURRENT, MSR_TIMER_DIVIDE] {
        assert_eq!(read(&mut apic, msr), 0, "{msr:#x}");
    }
    for msr in [MSR_LVT_CMCI, MSR_LVT_TIMER, MSR_LVT_THERMAL, MSR_LVT_PMC, MSR_LVT_LINT0, MSR_LVT_LINT1, MSR_LVT_ERROR]
    {
        assert_eq!(read(&mut apic, msr), 0x1_0000, "{msr:#x} masked");
    }
    for n in 0..8 {
        for base in [MSR_ISR0, MSR_TMR0, MSR_IRR0] {
            assert_eq!(read(&mut apic, base + n), 0);
        }
    }
    assert_eq!(read(&mut apic, MSR_TSC_DEADLINE), 0);
}

#[test]
fn ldr_is_cluster_and_member_bit_of_the_id() {
    assert_eq!(logical_id(0), 0x0000_0001);
    assert_eq!(logical_id(5), 0x0000_0020);
    assert_eq!(logical_id(0x10), 0x0001_0001);
    assert_eq!(logical_id(0x1f), 0x0001_8000);
    // Only ID bits 19:4 name the cluster.
    assert_eq!(logical_id(0xf_fffe), 0xffff_4000);
    assert_eq!(logical_id(0x10_0003), 0x0000_0008);
}

#[test]
fn read_only_registers_fault_on_write_and_keep_their_value() {
    let mut apic = enabled(7);
    let mut read_only = vec![MSR_ID, MSR_VERSION, MSR_PPR, MSR_LDR, MSR_TIMER_CURRENT];
    read_only.extend(MSR_ISR0..=0x827);
    for msr in read_only {
        let before = read(&mut apic, msr);
        assert_eq!(apic.write_msr(msr, 0, T0), Err(Fault::ReadOnly { msr }));
        assert_eq!(read(&mut apic, msr), before, "{msr:#x}");
    }
}

#[test]
fn write_only_registers_fault_on_read() {
    let mut apic = enabled(0);
    for msr in [MSR_EOI, MSR_SELF_IPI] {
        assert_eq!(apic.read_msr(msr, T0), Err(Fault::WriteOnly { msr }));
    }
}

#[test]
fn msrs_without_a_register_fault_both_ways() {
    let mut apic = enabled(0);
    // 0x80E DFR and 0x831 ICR high exist in xAPIC mode only.
    for msr in [0x800, 0x801, 0x804, 0x809, 0x80c, 0x80e, 0x829, 0x82e, 0x831, 0x83a, 0x83d, 0x840, 0x8ff, 0x900] {
        assert_eq!(apic.read_msr(msr, T0), Err(Fault::Unknown { msr }));
        assert_eq!(apic.write_msr(msr, 0, T0), Err(Fault::Unknown { msr }));
    }
}

#[test]
fn the_access_table_is_what_read_and_write_do() {
    // Writing 0 is legal for every writable register, so the table and the
    // behaviour can be compared over the whole range.
    for msr in X2APIC_FIRST..=X2APIC_LAST {
        let mut apic = enabled(1);
        let (r, w) = (apic.read_msr(msr, T0).is_ok(), apic.write_msr(msr, 0, T0).is_ok());
        let expected = match register_access(msr) {
            None => (false, false),
            Some(Access::ReadOnly) => (true, false),
            Some(Access::WriteOnly) => (false, true),
            Some(Access::ReadWrite) => (true, true),
        };
        assert_eq!((r, w), expected, "{msr:#x}");
    }
}

/// Each (register, value) sets a reserved bit or encoding.
const RESERVED: [(u32, u64); 21] = [
    (MSR_TPR, 0x100),
    (MSR_TPR, 1 << 32),
    (MSR_EOI, 1),
    (MSR_ESR, 1),
    (MSR_SVR, 1 << 10),
    (MSR_SVR, 1 << 12), // EOI-broadcast suppression is not offered
    (MSR_SVR, 0x1ff | 1 << 40),
    (MSR_LVT_TIMER, 1 << 19),
    (MSR_LVT_TIMER, 0b11 << 17),
    (MSR_LVT_TIMER, 0x100), // no delivery mode in the timer LVT
    (MSR_LVT_ERROR, 0x400),
    (MSR_LVT_THERMAL, 1 << 13),
    (MSR_LVT_PMC, 1 << 15),
    (MSR_LVT_CMCI, 1 << 14),
    (MSR_LVT_LINT0, 1 << 17),
    (MSR_TIMER_DIVIDE, 0b100),
    (MSR_TIMER_INITIAL, 1 << 32),
    (MSR_SELF_IPI, 0x100),
    (MSR_ICR, 1 << 13),
    (MSR_ICR, 0x300 | 0x30),
    (MSR_ICR, 0x700 | 0x30),
];

#[test]
fn reserved_bits_fault_and_change_nothing() {
    for (msr, value) in RESERVED {
        let mut apic = enabled(2);
        let before = apic;
        assert_eq!(apic.write_msr(msr, value, T0), Err(Fault::Reserved { msr, value }), "{msr:#x} {value:#x}");
        assert_eq!(apic, before, "{msr:#x} {value:#x}");
    }
    for bit in [13, 16, 17, 20, 25, 31] {
        let value = 1u64 << bit | 0x30;
        assert!(Ipi::decode(value).is_err(), "ICR bit {bit}");
    }
}

#[test]
fn writable_registers_read_back_without_status_bits() {
    let mut apic = enabled(3);
    let cases = [
        (MSR_TPR, 0x5a, 0x5a),
        (MSR_SVR, 0x3ff, 0x3ff),
        (MSR_LVT_CMCI, 0x1_07f0 | 1 << 12, 0x1_07f0),
        (MSR_LVT_THERMAL, 0x0_04f1, 0x0_04f1),
        (MSR_LVT_PMC, 0x1_0222, 0x1_0222),
        (MSR_LVT_LINT0, 0x1_a7ff | 1 << 14 | 1 << 12, 0x1_a7ff),
        (MSR_LVT_LINT1, 0x0_0400, 0x0_0400),
        (MSR_LVT_ERROR, 0x0_00fe | 1 << 12, 0x0_00fe),
        (MSR_LVT_TIMER, 0x2_00ef | 1 << 12, 0x2_00ef),
        (MSR_TIMER_DIVIDE, 0b1011, 0b1011),
        (MSR_TIMER_INITIAL, 0xffff_ffff, 0xffff_ffff),
        (MSR_ICR, 0x0000_0009_000c_40fe | 1 << 12, 0x0000_0009_000c_40fe),
    ];
    for (msr, value, back) in cases {
        write(&mut apic, msr, value);
        assert_eq!(read(&mut apic, msr), back, "{msr:#x}");
    }
}

#[test]
fn esr_reports_errors_only_after_a_write_latches_them() {
    let mut apic = enabled(0);
    assert!(!apic.accept(3));
    assert_eq!(read(&mut apic, MSR_ESR), 0, "not latched yet");
    write(&mut apic, MSR_ESR, 0);
    assert_eq!(read(&mut apic, MSR_ESR), u64::from(ESR_RECEIVE_ILLEGAL_VECTOR));
    write(&mut apic, MSR_SELF_IPI, 15);
    write(&mut apic, MSR_ESR, 0);
    assert_eq!(read(&mut apic, MSR_ESR), u64::from(ESR_SEND_ILLEGAL_VECTOR), "the write cleared the old error");
    write(&mut apic, MSR_ESR, 0);
    assert_eq!(read(&mut apic, MSR_ESR), 0);
}

#[test]
fn an_unmasked_error_lvt_raises_its_vector() {
    let mut apic = enabled(0);
    write(&mut apic, MSR_LVT_ERROR, 0xfe);
    assert!(!apic.accept(0));
    assert_eq!(apic.pending(), Some(0xfe));
    // An illegal error vector cannot be delivered: it is logged instead.
    let mut apic = enabled(0);
    write(&mut apic, MSR_LVT_ERROR, 0x05);
    write(&mut apic, MSR_SELF_IPI, 1);
    assert_eq!(apic.pending(), None);
    write(&mut apic, MSR_ESR, 0);
    assert_eq!(read(&mut apic, MSR_ESR), u64::from(ESR_SEND_ILLEGAL_VECTOR | ESR_RECEIVE_ILLEGAL_VECTOR));
}

#[test]
fn a_disabled_apic_keeps_every_lvt_masked() {
    let mut apic = enabled(0);
    for msr in [MSR_LVT_LINT0, MSR_LVT_ERROR] {
        write(&mut apic, msr, 0x40);
    }
    assert_eq!(write(&mut apic, MSR_LVT_TIMER, 0x41), Effect::TimerChanged);
    // Disabling masks them all, and the timer must be re-armed (unarmed).
    assert_eq!(write(&mut apic, MSR_SVR, 0xff), Effect::TimerChanged);
    for msr in [MSR_LVT_LINT0, MSR_LVT_ERROR, MSR_LVT_TIMER] {
        assert_eq!(read(&mut apic, msr) & u64::from(LVT_MASKED), u64::from(LVT_MASKED), "{msr:#x}");
    }
    // While disabled, unmasking does not take.
    write(&mut apic, MSR_LVT_LINT1, 0x42);
    write(&mut apic, MSR_LVT_TIMER, 0x43);
    assert_eq!(read(&mut apic, MSR_LVT_LINT1), 0x1_0042);
    assert_eq!(read(&mut apic, MSR_LVT_TIMER), 0x1_0043);
    // Enabling leaves them masked until the guest unmasks them.
    assert_eq!(write(&mut apic, MSR_SVR, 0x1ff), Effect::None);
    assert_eq!(read(&mut apic, MSR_LVT_LINT1), 0x1_0042);
    write(&mut apic, MSR_LVT_LINT1, 0x42);
    assert_eq!(read(&mut apic, MSR_LVT_LINT1), 0x42);
}

#[test]
fn init_resets_all_but_the_id() {
    let mut apic = enabled(0x41);
    apic.set_tsc_offset(99);
    write(&mut apic, MSR_TPR, 0x20);
    write(&mut apic, MSR_LVT_TIMER, 0x30);
    write(&mut apic, MSR_TIMER_INITIAL, 1000);
    assert!(apic.accept(0x50));
    apic.init_reset();
    let mut fresh = Lapic::new(0x41, clock());
    fresh.set_tsc_offset(99);
    assert_eq!(apic, fresh);
    assert_eq!(read(&mut apic, MSR_LDR), 0x0004_0002);
}

#[test]
fn vector_sets_find_the_highest_and_lay_out_as_registers() {
    let mut set = VectorSet::EMPTY;
    assert_eq!(set.highest(), None);
    for v in [16, 31, 32, 200, 255] {
        set.insert(v);
    }
    assert_eq!(set.highest(), Some(255));
    set.remove(255);
    assert_eq!(set.highest(), Some(200));
    assert_eq!((set.word(0), set.word(1), set.word(6)), (0x8001_0000, 1, 1 << 8));
    assert_eq!(set.to_u64s(), [0x1_8001_0000, 0, 0, 1 << 8]);
    assert!(set.contains(31) && !set.contains(30));
}

#[test]
fn faults_name_their_msr() {
    let fault = Fault::Reserved { msr: MSR_TPR, value: 0x100 };
    assert_eq!(fault.msr(), MSR_TPR);
    assert_eq!(fault.to_string(), "#GP: value 0x100 sets reserved bits of x2APIC MSR 0x808");
    assert_eq!(Fault::WriteOnly { msr: MSR_EOI }.to_string(), "#GP: x2APIC MSR 0x80b is write-only");
}
