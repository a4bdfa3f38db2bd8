//! Acceptance, priority (TPR/PPR) and EOI ordering.

use super::*;

#[test]
fn a_disabled_apic_accepts_no_fixed_interrupt() {
    let mut apic = Lapic::new(0, clock());
    assert!(!apic.accept(0x40));
    assert!(apic.irr().is_empty());
    // And one accepted before a disable is held, not offered.
    let mut apic = enabled(0);
    assert!(apic.accept(0x40));
    write(&mut apic, MSR_SVR, 0xff);
    assert_eq!(apic.pending(), None);
    write(&mut apic, MSR_SVR, 0x1ff);
    assert_eq!(apic.pending(), Some(0x40));
}

#[test]
fn vectors_below_16_are_refused_and_logged() {
    let mut apic = enabled(0);
    for vector in 0..16 {
        assert!(!apic.accept(vector), "{vector}");
    }
    assert!(apic.irr().is_empty());
    assert!(apic.accept(16));
    write(&mut apic, MSR_ESR, 0);
    assert_eq!(read(&mut apic, MSR_ESR), u64::from(ESR_RECEIVE_ILLEGAL_VECTOR));
}

#[test]
fn ppr_takes_the_higher_class_and_the_tpr_subclass_only_when_it_wins() {
    let mut apic = enabled(0);
    assert!(apic.accept(0x45));
    assert!(apic.ack(0x45));
    for (tpr, ppr) in [(0x00, 0x40), (0x32, 0x40), (0x4a, 0x4a), (0x40, 0x40), (0x52, 0x52), (0xff, 0xff)] {
        write(&mut apic, MSR_TPR, tpr);
        assert_eq!(read(&mut apic, MSR_PPR), ppr, "TPR {tpr:#x}");
        assert_eq!(apic.ppr(), ppr as u8);
    }
}

#[test]
fn pending_needs_a_class_above_the_ppr() {
    let mut apic = enabled(0);
    write(&mut apic, MSR_TPR, 0x45);
    assert!(apic.accept(0x4f));
    assert_eq!(apic.pending(), None, "same class as the TPR: blocked, subclass or not");
    assert!(apic.accept(0x50));
    assert_eq!(apic.pending(), Some(0x50));
    write(&mut apic, MSR_TPR, 0x50);
    assert_eq!(apic.pending(), None);
    write(&mut apic, MSR_TPR, 0x3f);
    assert_eq!(apic.pending(), Some(0x50), "the highest vector first");
}

#[test]
fn ack_moves_irr_to_isr_and_only_for_requested_vectors() {
    let mut apic = enabled(0);
    assert!(!apic.ack(0x30));
    assert!(apic.accept(0x30));
    assert!(apic.accept(0x30), "edge interrupts coalesce");
    assert!(apic.ack(0x30));
    assert!(!apic.irr().contains(0x30) && apic.isr().contains(0x30));
    assert_eq!(apic.pending(), None);
    assert_eq!(read(&mut apic, MSR_ISR0 + 1), 1 << 16);
    assert_eq!(read(&mut apic, MSR_IRR0 + 1), 0);
}

#[test]
fn in_service_vectors_block_their_class_and_below_and_nest() {
    let mut apic = enabled(0);
    assert!(apic.accept(0x30));
    assert!(apic.ack(0x30));
    // A higher class preempts the handler of 0x30 ...
    assert!(apic.accept(0x50));
    assert_eq!(apic.pending(), Some(0x50));
    assert!(apic.ack(0x50));
    // ... and while 0x50 is in service, 0x40 and 0x5f wait.
    assert!(apic.accept(0x40));
    assert!(apic.accept(0x5f));
    assert_eq!(apic.pending(), None);
    assert!(apic.accept(0x61));
    assert_eq!(apic.pending(), Some(0x61));
    assert!(apic.ack(0x61));
    // EOIs retire the highest in-service vector each time.
    assert_eq!(write(&mut apic, MSR_EOI, 0), Effect::EoiDone { vector: 0x61, level: false });
    assert_eq!(apic.pending(), None, "0x50 still in service");
    assert_eq!(write(&mut apic, MSR_EOI, 0), Effect::EoiDone { vector: 0x50, level: false });
    assert_eq!(apic.pending(), Some(0x5f));
    assert!(apic.ack(0x5f));
    assert_eq!(write(&mut apic, MSR_EOI, 0), Effect::EoiDone { vector: 0x5f, level: false });
    assert_eq!(apic.pending(), Some(0x40), "above 0x30's class");
    assert!(apic.ack(0x40));
    assert_eq!(write(&mut apic, MSR_EOI, 0), Effect::EoiDone { vector: 0x40, level: false });
    assert_eq!(write(&mut apic, MSR_EOI, 0), Effect::EoiDone { vector: 0x30, level: false });
    assert_eq!(write(&mut apic, MSR_EOI, 0), Effect::None, "nothing in service");
    assert!(apic.isr().is_empty() && apic.irr().is_empty());
}

#[test]
fn the_tmr_records_the_trigger_mode_for_the_eoi() {
    let mut apic = enabled(0);
    assert!(apic.accept_level(0x70));
    assert!(apic.tmr().contains(0x70));
    assert_eq!(read(&mut apic, MSR_TMR0 + 3), 1 << 16);
    assert!(apic.ack(0x70));
    assert_eq!(write(&mut apic, MSR_EOI, 0), Effect::EoiDone { vector: 0x70, level: true });
    // A later edge acceptance of the same vector clears it.
    assert!(apic.accept(0x70));
    assert!(!apic.tmr().contains(0x70));
    assert!(apic.ack(0x70));
    assert_eq!(write(&mut apic, MSR_EOI, 0), Effect::EoiDone { vector: 0x70, level: false });
}

#[test]
fn self_ipi_register_requests_locally() {
    let mut apic = enabled(0);
    assert_eq!(write(&mut apic, MSR_SELF_IPI, 0xa1), Effect::None);
    assert_eq!(apic.pending(), Some(0xa1));
    assert!(!apic.tmr().contains(0xa1), "edge");
}
