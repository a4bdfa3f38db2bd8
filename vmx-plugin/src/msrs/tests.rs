//! The guest MSR policy and the MSR bitmap against hand-computed positions.

use super::*;
use std::format;
use std::vec::Vec;

const NONE: GuestFeatures = GuestFeatures { tsc_deadline: false, pcid: false, rdtscp: false };
const ALL: GuestFeatures = GuestFeatures { tsc_deadline: true, pcid: true, rdtscp: true };
const CONFIGURATIONS: [GuestFeatures; 3] = [NONE, GuestFeatures::DEFAULT, ALL];

#[test]
fn handling_of_each_listed_msr() {
    use Handling::*;
    let fixed = |f| Emulated(super::Emulated::Fixed(f));
    let table = [
        (0x10, PassThrough),
        (0x1b, fixed(Fixed::ApicBase)),
        (0x3a, fixed(Fixed::ReadOnly(1))),
        (0x8b, fixed(Fixed::Discard)),
        (0xfe, fixed(Fixed::ReadOnly(0))),
        (0x174, Vmcs(VmcsField { encoding: 0x482a, check: WriteCheck::Low32 })),
        (0x175, Vmcs(VmcsField { encoding: 0x6824, check: WriteCheck::Canonical })),
        (0x176, Vmcs(VmcsField { encoding: 0x6826, check: WriteCheck::Canonical })),
        (0x1a0, fixed(Fixed::MiscEnable)),
        (0x277, Vmcs(VmcsField { encoding: 0x2804, check: WriteCheck::Pat })),
        (0x2ff, fixed(Fixed::Discard)),
        (0x800, Emulated(super::Emulated::X2Apic { offset: 0 })),
        (0x808, Emulated(super::Emulated::X2Apic { offset: 0x80 })),
        (0x830, Emulated(super::Emulated::X2Apic { offset: 0x300 })),
        (0x8ff, Emulated(super::Emulated::X2Apic { offset: 0xff0 })),
        (0xc000_0080, Vmcs(VmcsField { encoding: 0x2806, check: WriteCheck::Efer })),
        (0xc000_0081, Saved(super::Saved::Star)),
        (0xc000_0082, Saved(super::Saved::Lstar)),
        (0xc000_0083, Saved(super::Saved::Cstar)),
        (0xc000_0084, Saved(super::Saved::Fmask)),
        (0xc000_0100, Vmcs(VmcsField { encoding: 0x680e, check: WriteCheck::Canonical })),
        (0xc000_0101, Vmcs(VmcsField { encoding: 0x6810, check: WriteCheck::Canonical })),
        (0xc000_0102, Saved(super::Saved::KernelGsBase)),
    ];
    for features in CONFIGURATIONS {
        for (index, expected) in table {
            assert_eq!(handling(index, features), expected, "{index:#x}");
        }
    }
    for saved in super::Saved::ALL {
        assert_eq!(handling(saved.index(), ALL), Saved(saved));
    }
}

#[test]
fn feature_msrs_exist_only_with_their_cpuid_feature() {
    assert_eq!(handling(0x6e0, ALL), Handling::Emulated(Emulated::TscDeadline));
    assert_eq!(handling(0x6e0, NONE), Handling::Unknown);
    assert_eq!(handling(0xc000_0103, ALL), Handling::Saved(Saved::TscAux));
    assert_eq!(handling(0xc000_0103, GuestFeatures::DEFAULT), Handling::Unknown);
}

#[test]
fn msrs_of_hidden_features_are_unknown() {
    // TSC_ADJUST, SPEC_CTRL, PRED_CMD, MTRR physbase 0, ARCH_CAPABILITIES,
    // FLUSH_CMD, PERF_CTL and PLATFORM_INFO (EIST), DEBUGCTL, the VMX
    // capability MSRs, a variable MTRR, PERF_GLOBAL_CTRL, XSS, TSC_AUX's
    // neighbour, and MSRs outside the bitmap.
    let unknown = [
        0x3b,
        0x48,
        0x49,
        0x200,
        0x10a,
        0x10b,
        0x199,
        0xce,
        0x1d9,
        0x480,
        0x48c,
        0x38f,
        0xda0,
        0xc000_0104,
        0x4000_0000,
    ];
    for features in CONFIGURATIONS {
        for index in unknown {
            assert_eq!(handling(index, features), Handling::Unknown, "{index:#x}");
            assert!(policy_intercepts(index, false, features) && policy_intercepts(index, true, features));
        }
    }
}

#[test]
fn bitmap_positions() {
    let cases = [
        (0x0, false, Some((0, 0x01))),
        (0x1fff, false, Some((1023, 0x80))),
        (0xc000_0000, false, Some((1024, 0x01))),
        (0xc000_1fff, false, Some((2047, 0x80))),
        (0x0, true, Some((2048, 0x01))),
        // ICR: 0x830 / 8 = 262, bit 0.
        (0x830, true, Some((2048 + 262, 0x01))),
        // TSC deadline: 0x6e0 / 8 = 220, bit 0; EOI 0x80b: byte 257, bit 3.
        (0x6e0, false, Some((220, 0x01))),
        (0x80b, true, Some((2048 + 257, 0x08))),
        // EFER: 0x80 / 8 = 16; KERNEL_GS_BASE: 0x102 / 8 = 32, bit 2.
        (0xc000_0080, true, Some((3072 + 16, 0x01))),
        (0xc000_0102, false, Some((1024 + 32, 0x04))),
        (0xc000_1fff, true, Some((4095, 0x80))),
        (0x2000, false, None),
        (0xbfff_ffff, true, None),
        (0xc000_2000, false, None),
        (0x4000_0000, true, None),
    ];
    for (index, write, expected) in cases {
        assert_eq!(bitmap_position(index, write), expected, "{index:#x} write {write}");
    }
}

#[test]
fn one_intercepted_msr_sets_exactly_its_bit() {
    for index in [0x0, 0x10, 0x1b, 0x277, 0x6e0, 0x808, 0x1fff, 0xc000_0000, 0xc000_0080, 0xc000_0103, 0xc000_1fff] {
        for write in [false, true] {
            let only = |i: u32, w: bool| i == index && w == write;
            let bitmap = msr_bitmap(|i| only(i, false), |i| only(i, true));
            let (byte, mask) = bitmap_position(index, write).unwrap();
            assert_eq!(bitmap[byte], mask, "{index:#x}");
            let others: u32 = bitmap.iter().enumerate().filter(|&(b, _)| b != byte).map(|(_, v)| v.count_ones()).sum();
            // The ICR write is always set besides.
            let icr = u32::from(!(index == X2APIC_ICR && write));
            assert_eq!(others, icr, "{index:#x}");
            assert!(bitmap_intercepts(&bitmap, index, write));
            assert_eq!(bitmap_intercepts(&bitmap, index, !write), index == X2APIC_ICR && !write);
        }
    }
}

#[test]
fn icr_write_is_intercepted_in_every_configuration() {
    let nothing = msr_bitmap(|_| false, |_| false);
    assert!(bitmap_intercepts(&nothing, X2APIC_ICR, true));
    assert!(!bitmap_intercepts(&nothing, X2APIC_ICR, false), "reads may pass (they read the vAPIC page)");
    assert_eq!(nothing.iter().map(|b| b.count_ones()).sum::<u32>(), 1);
    let everything = msr_bitmap(|_| true, |_| true);
    assert!(everything.iter().all(|&b| b == 0xff));
    // Pass every x2APIC register through, as APIC virtualization might.
    let x2apic = |i: u32| !(X2APIC_FIRST..=X2APIC_LAST).contains(&i);
    assert!(bitmap_intercepts(&msr_bitmap(x2apic, x2apic), X2APIC_ICR, true));
    for features in CONFIGURATIONS {
        assert!(bitmap_intercepts(&policy_bitmap(features), X2APIC_ICR, true));
    }
    let mut page = [0xaa; MSR_BITMAP_SIZE];
    fill_msr_bitmap(&mut page, |_| false, |_| false);
    assert_eq!(page, nothing, "a caller's page is cleared first");
}

#[test]
fn policy_bitmap_decisions() {
    let bitmap = policy_bitmap(GuestFeatures::DEFAULT);
    let exits = |index, write| bitmap_intercepts(&bitmap, index, write);
    // (MSR, read exits, write exits)
    let table = [
        (IA32_TIME_STAMP_COUNTER, false, true),
        (IA32_APIC_BASE, true, true),
        (IA32_SYSENTER_CS, false, false),
        (IA32_SYSENTER_EIP, false, false),
        (IA32_MISC_ENABLE, true, true),
        (IA32_PAT, true, true),
        (IA32_MTRRCAP, true, true),
        (IA32_TSC_DEADLINE, true, true),
        (0x80b, true, true),
        (X2APIC_ICR, true, true),
        (IA32_EFER, true, true),
        (IA32_STAR, false, false),
        (IA32_LSTAR, false, false),
        (IA32_FS_BASE, false, false),
        (IA32_GS_BASE, false, false),
        (IA32_KERNEL_GS_BASE, false, false),
        (IA32_TSC_AUX, true, true),
        (0x3b, true, true),
        (0x4b56_4d00, true, true),
    ];
    for (index, read, write) in table {
        assert_eq!((exits(index, false), exits(index, true)), (read, write), "{index:#x}");
    }
    let all = policy_bitmap(ALL);
    assert!(!bitmap_intercepts(&all, IA32_TSC_AUX, false) && !bitmap_intercepts(&all, IA32_TSC_AUX, true));
}

#[test]
fn fixed_msr_values() {
    assert_eq!(Fixed::ApicBase.read(true), 0xfee0_0d00);
    assert_eq!(Fixed::ApicBase.read(false), 0xfee0_0c00);
    assert_eq!(Fixed::MiscEnable.read(false), 0x1801);
    // Hermit's write: the value read, x2APIC bit (already) set.
    assert_eq!(Fixed::ApicBase.write(0x1b, 0xfee0_0d00, true), Ok(()));
    assert_eq!(Fixed::ApicBase.write(0x1b, 0xfee0_0c00, true), Ok(()), "BSP flag is read-only");
    for value in [0xfee0_0900, 0xfee0_0000, 0xfec0_0c00, 0] {
        assert_eq!(Fixed::ApicBase.write(0x1b, value, false), Err(MsrError::ApicModeChange { value }));
    }
    assert_eq!(Fixed::MiscEnable.write(0x1a0, 0x1801, false), Ok(()));
    assert_eq!(Fixed::MiscEnable.write(0x1a0, 0x1, false), Err(MsrError::Reserved { index: 0x1a0, value: 1 }));
    assert_eq!(Fixed::ReadOnly(1).read(false), 1);
    assert_eq!(Fixed::ReadOnly(0).write(0xfe, 0, false), Err(MsrError::ReadOnly { index: 0xfe }));
    assert_eq!((Fixed::Discard.read(true), Fixed::Discard.write(0x8b, 0, true)), (0, Ok(())));
}

#[test]
fn efer_writes() {
    const PAGING: bool = true;
    // uhyve's initial EFER (LME|LMA|NXE) and Hermit's write adding SCE.
    assert_eq!(efer_write(0xd00, 0xd01, PAGING), Ok(0xd01));
    // LMA is the CPU's: a write that clears or sets it changes nothing.
    assert_eq!(efer_write(0xd00, 0x901, PAGING), Ok(0xd01));
    assert_eq!(efer_write(0x0, 0x400, !PAGING), Ok(0x0));
    assert_eq!(efer_write(0xd00, 0xc01, PAGING), Err(MsrError::LongModeChange { value: 0xc01 }));
    assert_eq!(efer_write(0xd00, 0x501, PAGING), Ok(0x501), "NXE may go");
    assert_eq!(efer_write(0x0, 0x100, !PAGING), Ok(0x100), "LME before paging is how long mode starts");
    for reserved in [0x2, 0x200, 0x1000, 0x2000, 1 << 63] {
        assert_eq!(
            efer_write(0xd00, 0xd00 | reserved, PAGING),
            Err(MsrError::Reserved { index: 0xc000_0080, value: 0xd00 | reserved })
        );
    }
}

#[test]
fn vmcs_field_write_checks() {
    let pat_default = 0x0007_0406_0007_0406;
    assert_eq!(GUEST_IA32_PAT.write_value(IA32_PAT, pat_default), Ok(pat_default));
    for bad in [0x0007_0406_0007_0402, 0x0307_0406_0007_0406, 0x0008_0406_0007_0406] {
        assert_eq!(GUEST_IA32_PAT.write_value(IA32_PAT, bad), Err(MsrError::Reserved { index: IA32_PAT, value: bad }));
    }
    for ok in [0, 0x7fff_ffff_ffff, 0xffff_8000_0000_0000, u64::MAX] {
        assert_eq!(GUEST_GS_BASE.write_value(IA32_GS_BASE, ok), Ok(ok), "{ok:#x}");
    }
    for bad in [0x8000_0000_0000, 0x0001_0000_0000_0000, 0x7fff_8000_0000_0000] {
        let expected = Err(MsrError::NonCanonical { index: IA32_FS_BASE, value: bad });
        assert_eq!(GUEST_FS_BASE.write_value(IA32_FS_BASE, bad), expected, "{bad:#x}");
    }
    assert_eq!(GUEST_SYSENTER_CS.write_value(IA32_SYSENTER_CS, 0x1_0000_0010), Ok(0x10));
    assert!(GUEST_IA32_EFER.write_value(IA32_EFER, 0).is_err(), "EFER needs efer_write");
}

#[test]
fn error_messages() {
    let shown: Vec<_> = [
        MsrError::Unknown { index: 0x48 },
        MsrError::LongModeChange { value: 0xc01 },
        MsrError::ApicModeChange { value: 0xfee0_0900 },
    ]
    .iter()
    .map(|e| format!("{e}"))
    .collect();
    assert_eq!(shown[0], "MSR 0x48 does not exist for this guest (#GP)");
    assert_eq!(shown[1], "EFER 0xc01 changes LME while paging is on; turn paging off first (#GP)");
    assert!(shown[2].contains("x2APIC mode"), "{}", shown[2]);
}
