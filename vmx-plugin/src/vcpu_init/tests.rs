//! The first-entry state: uhyve's long-mode boot state, the test-guest
//! ABI, real mode, and each refusal.

use super::*;

/// Fixed bits of the shape Bochs's Skylake-X reports (PE, NE, PG and VMXE
/// fixed on; LA57 not offered), EFER with NXE and SCE on.
const LIMITS: Limits = Limits {
    cr0_fixed0: 0x8000_0021,
    cr0_fixed1: 0xffff_ffff,
    cr4_fixed0: 0x2000,
    cr4_fixed1: 0x0037_27ff,
    unrestricted: true,
    host_efer: 0xd01,
};

/// What uhyve gives a Hermit kernel (hermit-guests.md §5.3).
fn uhyve() -> VcpuInit {
    let mut gprs = [0; 15];
    (gprs[5], gprs[4]) = (0x9000, 1);
    VcpuInit {
        mode: vcpu_mode::LONG,
        cs: 0x08,
        ss: 0x10,
        ds: 0x10,
        cr0: 0x8000_0031,
        cr3: 0x10000,
        cr4: 0x20,
        efer: 0xd00,
        gdt_base: 0x1000,
        gdt_limit: 23,
        rip: 0x40000,
        rsp: 0x38000,
        rflags: 2,
        gprs,
        ..VcpuInit::default()
    }
}

#[test]
fn uhyve_boot_state_is_taken_as_given() {
    let s = decide(&uhyve(), &LIMITS).unwrap();
    assert!(s.long_mode);
    assert_eq!((s.cr0, s.cr3, s.cr4, s.cr4_shadow), (0x8000_0031, 0x10000, 0x2020, 0x20));
    assert_eq!(s.gdtr, (0x1000, 23));
    assert_eq!((s.rip, s.rsp, s.rflags), (0x40000, 0x38000, 2));
    assert_eq!(s.segments[1], Segment { selector: 8, base: 0, limit: 0xffff_ffff, access: AR_CODE64 });
    assert_eq!(s.segments[2].access, AR_DATA);
    assert_eq!(s.segments[6].access, AR_UNUSABLE);
    assert_eq!(s.segments[7].access, AR_TSS);
    assert_eq!((s.gprs[5], s.gprs[4]), (0x9000, 1));
}

#[test]
fn the_test_abi_is_one_caller() {
    let init = test_abi(0x500, 0x1000, 0x20_0000, 0x80_0000, [1, 2, 8 << 20], LIMITS.host_efer);
    let s = decide(&init, &LIMITS).unwrap();
    assert_eq!((s.cr0, s.cr3, s.cr4), (0x8000_0031, 0x1000, 0x2020));
    assert_eq!((s.gprs[5], s.gprs[4], s.gprs[3]), (1, 2, 8 << 20));
    assert_eq!(s.gdtr, (0x500, 23));
}

#[test]
fn null_data_selectors_are_unusable() {
    let s = decide(&VcpuInit { ds: 0, ss: 0, ..uhyve() }, &LIMITS).unwrap();
    assert_eq!(s.segments[0].access, AR_UNUSABLE);
    assert_eq!(s.segments[2].access, AR_UNUSABLE);
}

#[test]
fn long_mode_refusals_name_the_rule() {
    let cases = [
        (VcpuInit { cr0: 0x11, ..uhyve() }, Error::Missing { what: "CR0", bits: CR0_PG }),
        (VcpuInit { cr4: 0, ..uhyve() }, Error::Missing { what: "CR4", bits: CR4_PAE }),
        (VcpuInit { cr4: 0x20 | CR4_LA57, ..uhyve() }, Error::NotAllowed { what: "CR4", bits: CR4_LA57 }),
        (VcpuInit { cr4: 0x20 | 1 << 40, ..uhyve() }, Error::NotAllowed { what: "CR4", bits: 1 << 40 }),
        (VcpuInit { efer: 0, ..uhyve() }, Error::Missing { what: "EFER", bits: EFER_LME }),
        (VcpuInit { efer: 0xd00 | 1 << 14, ..uhyve() }, Error::NotAllowed { what: "EFER", bits: 1 << 14 }),
        (VcpuInit { cs: 0, ..uhyve() }, Error::BadSelector { what: "CS", selector: 0, gdt_limit: 23 }),
        (VcpuInit { cs: 0x18, ..uhyve() }, Error::BadSelector { what: "CS", selector: 0x18, gdt_limit: 23 }),
        (VcpuInit { ds: 0x13, ..uhyve() }, Error::BadSelector { what: "DS", selector: 0x13, gdt_limit: 23 }),
        (VcpuInit { rip: 1 << 47, ..uhyve() }, Error::NotCanonical(1 << 47)),
        (VcpuInit { rflags: 2 | RFLAGS_VM, ..uhyve() }, Error::NotAllowed { what: "RFLAGS", bits: RFLAGS_VM }),
        (VcpuInit { rflags: 1 << 3, ..uhyve() }, Error::NotAllowed { what: "RFLAGS", bits: 1 << 3 }),
        (VcpuInit { mode: 7, ..uhyve() }, Error::BadMode(7)),
    ];
    for (init, want) in cases {
        assert_eq!(decide(&init, &LIMITS), Err(want), "{init:?}");
    }
    let msg = std::format!("{}", Error::Missing { what: "CR0", bits: CR0_PG });
    assert_eq!(msg, "CR0 must have bits 0x80000000 set");
}

fn real() -> VcpuInit {
    VcpuInit { mode: vcpu_mode::REAL, cs: 0x100, ss: 0x200, ds: 0x300, rip: 0x10, rsp: 0xfffe, ..VcpuInit::default() }
}

#[test]
fn real_mode_segments_are_selector_times_16() {
    let s = decide(&real(), &LIMITS).unwrap();
    assert!(!s.long_mode);
    assert_eq!(s.segments[1], Segment { selector: 0x100, base: 0x1000, limit: 0xffff, access: AR_CODE16 });
    assert_eq!(s.segments[2].base, 0x2000);
    assert_eq!(s.segments[3].base, 0x3000);
    assert_eq!(s.cr0 & (CR0_PE | CR0_PG), 0);
    assert_eq!(s.cr0 & CR0_NE, CR0_NE);
    assert_eq!((s.cr4, s.cr4_shadow), (0x2000, 0));
    assert_eq!((s.rip, s.rsp, s.rflags), (0x10, 0xfffe, 2));
    assert_eq!(s.idtr, (0, 0x3ff));
}

#[test]
fn real_mode_refusals() {
    let no_ug = Limits { unrestricted: false, ..LIMITS };
    assert_eq!(decide(&real(), &no_ug), Err(Error::NoUnrestrictedGuest));
    assert!(std::format!("{}", Error::NoUnrestrictedGuest).contains("unrestricted guest"));
    let far = VcpuInit { rip: 0x1_0000, ..real() };
    assert_eq!(decide(&far, &LIMITS), Err(Error::Above64K { what: "IP", value: 0x1_0000 }));
    // Virtual-8086 mode is another mode, not real mode.
    assert_eq!(decide(&VcpuInit { rflags: RFLAGS_VM, ..real() }, &LIMITS).map(|s| s.rflags), Ok(RFLAGS_VM | 2));
}
