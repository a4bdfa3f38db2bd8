//! The virtualization decision, its MSR-bitmap intercepts, and the
//! guest-interrupt-status and EOI-exit helpers.

use super::*;
use crate::config::{self, VmxConfig};
use crate::msr::Caps;
use crate::vapic::virt::*;
use std::collections::BTreeMap;

const ALL: Offered = Offered {
    tpr_shadow: true,
    virtualize_x2apic_mode: true,
    apic_register_virtualization: true,
    virtual_interrupt_delivery: true,
};

/// Takes one control away from an [`Offered`].
type Clear = fn(&mut Offered);

/// The configuration of a Bochs model recorded in `testdata/`: only the
/// `NAME (0xINDEX)=0xVALUE` lines matter here.
fn bochs(text: &str) -> VmxConfig {
    let mut msrs = BTreeMap::new();
    for line in text.lines() {
        if let (Some(open), Some(close)) = (line.find("(0x"), line.find(")=0x")) {
            let index = u32::from_str_radix(&line[open + 3..close], 16).unwrap();
            let value = line[close + 4..].split_whitespace().next().unwrap();
            msrs.insert(index, u64::from_str_radix(value, 16).unwrap());
        }
    }
    let caps = Caps::read(|index| msrs.get(&index).copied()).unwrap();
    VmxConfig::new(&caps, config::Policy::default()).unwrap()
}

#[test]
fn all_four_controls_and_no_force_give_virtualized() {
    assert_eq!(decide(ALL, Policy::default()), Mode::Virtualized);
    assert_eq!(Mode::Virtualized.controls(), VIRTUALIZED_CONTROLS);
}

#[test]
fn any_missing_control_or_the_policy_gives_emulated() {
    let forced = decide(ALL, Policy { force_emulation: true });
    assert_eq!(forced, Mode::Emulated(Reason::Forced));
    assert_eq!(forced.controls(), []);
    let without: [(Clear, config::Control); 4] = [
        (|o| o.tpr_shadow = false, config::USE_TPR_SHADOW),
        (|o| o.virtualize_x2apic_mode = false, config::VIRTUALIZE_X2APIC_MODE),
        (|o| o.apic_register_virtualization = false, config::APIC_REGISTER_VIRTUALIZATION),
        (|o| o.virtual_interrupt_delivery = false, config::VIRTUAL_INTERRUPT_DELIVERY),
    ];
    for (clear, control) in without {
        let mut offered = ALL;
        clear(&mut offered);
        assert_eq!(decide(offered, Policy::default()), Mode::Emulated(Reason::Missing(control)), "{}", control.name);
    }
    assert_eq!(decide(Offered::default(), Policy::default()), Mode::Emulated(Reason::Missing(config::USE_TPR_SHADOW)));
    assert_eq!(
        Reason::Missing(config::VIRTUAL_INTERRUPT_DELIVERY).to_string(),
        "x2APIC emulated: no virtual-interrupt delivery control"
    );
}

#[test]
fn bochs_models_decide_as_their_controls_say() {
    let skylake = bochs(include_str!("../../../testdata/corei7_skylake_x.txt"));
    assert_eq!(decide(Offered::from_config(&skylake), Policy::default()), Mode::Virtualized);
    let tigerlake = bochs(include_str!("../../../testdata/tigerlake.txt"));
    assert_eq!(decide(Offered::from_config(&tigerlake), Policy::default()), Mode::Virtualized);
    // Cannon Lake has x2APIC virtualization but no APIC-register
    // virtualization; Penryn has no secondary controls at all.
    let cnl = bochs(include_str!("../../../testdata/corei3_cnl.txt"));
    let reason = Reason::Missing(config::APIC_REGISTER_VIRTUALIZATION);
    assert_eq!(decide(Offered::from_config(&cnl), Policy::default()), Mode::Emulated(reason));
    let penryn = bochs(include_str!("../../../testdata/core2_penryn_t9600.txt"));
    let reason = Reason::Missing(config::VIRTUALIZE_X2APIC_MODE);
    assert_eq!(decide(Offered::from_config(&penryn), Policy::default()), Mode::Emulated(reason));
}

#[test]
fn emulated_mode_intercepts_every_x2apic_msr_and_the_deadline() {
    let intercepts = Mode::Emulated(Reason::Forced).intercepts();
    let all: Vec<u32> = core::iter::once(MSR_TSC_DEADLINE).chain(0x800..=0x8ff).collect();
    assert_eq!(intercepts.reads().collect::<Vec<_>>(), all);
    assert_eq!(intercepts.writes().collect::<Vec<_>>(), all);
}

#[test]
fn virtualized_mode_lets_through_only_what_the_cpu_virtualizes() {
    let intercepts = Mode::Virtualized.intercepts();
    let mut reads_through = vec![0x802, 0x803, 0x808, 0x80a, 0x80d, 0x80f];
    reads_through.extend(0x810..=0x828);
    reads_through.extend([0x82f, 0x833, 0x834, 0x835, 0x836, 0x837]);
    let through: Vec<u32> = (0x800..=0x8ff).filter(|&m| !intercepts.read(m)).collect();
    assert_eq!(through, reads_through);
    let through: Vec<u32> = (0x800..=0x8ff).filter(|&m| !intercepts.write(m)).collect();
    assert_eq!(through, [MSR_TPR, MSR_EOI, MSR_SELF_IPI]);
    // The VMM's registers exit both ways; Bochs requires it of the ICR.
    for msr in [MSR_ICR, MSR_LVT_TIMER, MSR_TIMER_INITIAL, MSR_TIMER_CURRENT, MSR_TIMER_DIVIDE, MSR_TSC_DEADLINE] {
        assert!(intercepts.read(msr) && intercepts.write(msr), "{msr:#x}");
    }
    // Write-only registers' reads exit too, so the #GP is ours.
    assert!(intercepts.read(MSR_EOI) && intercepts.read(MSR_SELF_IPI));
    assert_eq!(intercepts.reads().next(), Some(MSR_TSC_DEADLINE));
}

#[test]
fn other_msrs_are_not_covered() {
    let intercepts = Mode::Emulated(Reason::Forced).intercepts();
    for msr in [0x1b, 0x6df, 0x6e1, 0x7ff, 0x900] {
        assert!(!Intercepts::covers(msr) && !intercepts.read(msr) && !intercepts.write(msr), "{msr:#x}");
    }
    assert!(Intercepts::covers(MSR_TSC_DEADLINE) && Intercepts::covers(0x8ff));
}

#[test]
fn apply_writes_the_read_and_write_bitmaps_and_nothing_else() {
    let mut bitmap = [0xa5u8; 4096];
    Mode::Virtualized.intercepts().apply(&mut bitmap);
    let bit = |base: usize, msr: usize| bitmap[base + msr / 8] >> (msr % 8) & 1 == 1;
    // 0x830 (ICR): byte 0x106 bit 0 in the read and the write bitmap.
    assert!(bit(0, 0x830) && bit(2048, 0x830));
    assert!(!bit(0, 0x808) && !bit(2048, 0x808), "TPR goes through");
    assert!(bit(0, 0x80b) && !bit(2048, 0x80b), "EOI writes go through, reads exit");
    assert!(bit(0, 0x6e0) && bit(2048, 0x6e0));
    // Neighbours of the covered MSRs keep the 0xa5 pattern.
    for (base, msr) in [(0, 0x6e1), (0, 0x6df), (2048, 0x7ff), (2048, 0x900), (1024, 0x830), (3072, 0x830)] {
        assert_eq!(bit(base, msr), 0xa5u8 >> (msr % 8) & 1 == 1, "{base} {msr:#x}");
    }
    assert_eq!(&bitmap[1024..2048], &[0xa5; 1024][..], "high MSRs untouched");
    // Applying emulation afterwards turns every covered bit on.
    Mode::Emulated(Reason::Forced).intercepts().apply(&mut bitmap);
    assert!(bitmap[0x100..0x120].iter().chain(&bitmap[2048 + 0x100..2048 + 0x120]).all(|&b| b == 0xff));
}

#[test]
fn guest_interrupt_status_is_the_highest_irr_and_isr() {
    let mut apic = enabled(0);
    assert_eq!(GuestInterruptStatus::of(&apic).to_u16(), 0);
    assert!(apic.accept(0x31) && apic.ack(0x31));
    assert!(apic.accept(0x60) && apic.accept(0x42));
    let status = GuestInterruptStatus::of(&apic);
    assert_eq!(status, GuestInterruptStatus { rvi: 0x60, svi: 0x31 });
    assert_eq!(status.to_u16(), 0x3160);
    assert_eq!(GuestInterruptStatus::from_u16(0x3160), status);
    assert_eq!(status.request(0x50).rvi, 0x60, "lower requests leave RVI");
    assert_eq!(status.request(0x70), GuestInterruptStatus { rvi: 0x70, svi: 0x31 });
    assert_eq!(VMCS_GUEST_INTERRUPT_STATUS, 0x810);
}

#[test]
fn eoi_exit_bitmaps_are_zero_for_edge_and_mark_level_vectors() {
    let mut apic = enabled(0);
    assert!(apic.accept(0x41));
    assert_eq!(eoi_exit_bitmap(apic.tmr()), [0; 4]);
    assert!(apic.accept_level(0x41) && apic.accept_level(0xff));
    assert_eq!(eoi_exit_bitmap(apic.tmr()), [0, 1 << 1, 0, 1 << 63]);
    assert_eq!(VMCS_EOI_EXIT_BITMAPS, [0x201c, 0x201e, 0x2020, 0x2022]);
}

#[test]
fn the_page_image_holds_each_read_through_register_at_its_xapic_offset() {
    let mut lapic = enabled(5);
    lapic.write_msr(MSR_TPR, 0x20, T0).unwrap();
    lapic.write_msr(MSR_LVT_LINT0, 0x1_0042, T0).unwrap();
    lapic.accept(0x61);
    assert!(lapic.ack(0x61));
    lapic.accept(0x35);
    let mut page = [0u32; 1024];
    publish(&lapic, &mut page);
    let reads = Mode::Virtualized.intercepts();
    for msr in X2APIC_FIRST..=X2APIC_LAST {
        let at = page.get(page_offset(msr));
        if reads.read(msr) {
            assert_eq!(at, 0, "{msr:#x} exits, so the page leaves it alone");
        } else {
            assert_eq!(u64::from(at), lapic.read_msr(msr, T0).unwrap(), "{msr:#x}");
        }
    }
    assert_eq!(page.get(0x20), 5, "ID at 0x20");
    assert_eq!(page.get(0x80), 0x20, "TPR at 0x80");
    assert_eq!(page.get(0xa0), 0x60, "PPR at 0xa0: the in-service 0x61's class");
    assert_eq!(page.get(0x100 + 0x30), 1 << 1, "ISR word 3 has 0x61");
    assert_eq!(page.get(0x200 + 0x10), 1 << 0x15, "IRR word 1 has 0x35");
}

#[test]
fn absorbing_takes_what_the_cpu_changed_and_publishing_it_again_changes_nothing() {
    let mut lapic = enabled(5);
    lapic.accept(0x40);
    let mut page = [0u32; 1024];
    publish(&lapic, &mut page);
    // The CPU delivered 0x40 (IRR to ISR), took a self-IPI of 0x90 into the
    // IRR and a TPR write of 0x30, as virtual-interrupt delivery does.
    page.set(page_offset(MSR_IRR0 + 2), 0);
    page.set(page_offset(MSR_ISR0 + 2), 1);
    page.set(page_offset(MSR_IRR0 + 4), 1 << 0x10);
    page.set(page_offset(MSR_TPR), 0x30);
    absorb(&mut lapic, &page);
    assert!(lapic.isr().contains(0x40) && !lapic.irr().contains(0x40));
    assert!(lapic.irr().contains(0x90));
    assert_eq!(lapic.tpr(), 0x30);
    assert_eq!(lapic.pending(), Some(0x90), "0x90 outranks the in-service 0x40");
    let before = page;
    publish(&lapic, &mut page);
    let ppr = page_offset(MSR_PPR) / 4;
    for (i, (a, b)) in before.iter().zip(page.iter()).enumerate() {
        if i != ppr {
            assert_eq!(a, b, "word {i}");
        }
    }
    assert_eq!(page.get(page_offset(MSR_PPR)), 0x40, "PPR recomputed from ISR 0x40 over TPR 0x30");
    assert_eq!(GuestInterruptStatus::of(&lapic), GuestInterruptStatus { rvi: 0x90, svi: 0x40 });
}
