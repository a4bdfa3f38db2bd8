//! `msr`: MSR accesses on vCPU 0 (the others park). The guest's own IDT
//! catches a `ud2` (#UD), a read and a write of an MSR that does not exist
//! (#GP(0), the handler skipping the 2-byte instruction); IA32_APIC_BASE
//! says the APIC is enabled in x2APIC mode; EFER reads LME|LMA and takes
//! its own value back; the x2APIC id MSR reads the vcpu id. Exits 0 if
//! all hold, 1 otherwise.
#![cfg_attr(target_os = "none", no_std, no_main)]

use test_guests::check::Checks;
use test_guests::cpu::{self, rdmsr, wrmsr};
use test_guests::idt::{self, Caught, GP, UD};
use test_guests::x2apic::{self, APIC_BASE_BSP, APIC_BASE_ENABLE, APIC_BASE_EXTD, APIC_BASE_MSR};
use test_guests::Start;

test_guests::guest!(check_msrs);

/// No processor has an MSR here.
const UNKNOWN_MSR: u32 = 0x1234_5678;
const EFER: u32 = 0xc000_0080;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// How a caught fault reads in the check lines.
fn faulted(c: Option<Caught>) -> impl core::fmt::Display {
    struct F(Option<Caught>);
    impl core::fmt::Display for F {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self.0 {
                Some(c) => {
                    write!(
                        f,
                        "vector {} error code {:#x} at rip {:#x} ({})",
                        c.vector, c.error_code, c.rip, c.instruction
                    )
                }
                None => f.write_str("no fault"),
            }
        }
    }
    F(c)
}

/// Reads `msr`, catching a #GP.
fn read(msr: u32) -> (u64, Option<Caught>) {
    let mut value = 0;
    // SAFETY: a #GP is caught and skipped, and reading these MSRs changes nothing.
    let caught = idt::catch(GP, || value = unsafe { rdmsr(msr) });
    (value, caught)
}

fn check_msrs(start: &Start) -> u32 {
    if start.vcpu != 0 {
        test_guests::park();
    }
    idt::install();
    let mut checks = Checks::new("msr");

    let ud = idt::catch(UD, cpu::ud2);
    checks.check(
        ud.is_some_and(|c| c.instruction == "ud2"),
        format_args!("ud2 raised #UD through the guest's IDT: {}", faulted(ud)),
    );

    let (_, gp) = read(UNKNOWN_MSR);
    checks.check(
        gp.is_some_and(|c| c.error_code == 0 && c.instruction == "rdmsr"),
        format_args!("rdmsr {UNKNOWN_MSR:#x} (no such msr) raised #GP(0): {}", faulted(gp)),
    );
    // SAFETY: the MSR does not exist, so the write changes nothing; the #GP is caught.
    let gp = idt::catch(GP, || unsafe { wrmsr(UNKNOWN_MSR, 0x5a5a) });
    checks.check(
        gp.is_some_and(|c| c.error_code == 0 && c.instruction == "wrmsr"),
        format_args!("wrmsr {UNKNOWN_MSR:#x} (no such msr) raised #GP(0): {}", faulted(gp)),
    );

    let (base, gp) = read(APIC_BASE_MSR);
    checks.check(gp.is_none(), format_args!("rdmsr ia32_apic_base (0x1b) = {base:#x}: {}", faulted(gp)));
    checks.check(base & APIC_BASE_ENABLE != 0, format_args!("ia32_apic_base bit 11 (apic enabled) set"));
    checks.check(base & APIC_BASE_EXTD != 0, format_args!("ia32_apic_base bit 10 (x2apic mode) set"));
    checks.note(format_args!(
        "ia32_apic_base: base {:#x}, bit 8 (bsp) {}",
        base & !0xfff & ((1 << 52) - 1),
        if base & APIC_BASE_BSP != 0 { "set" } else { "clear" }
    ));

    let (efer, gp) = read(EFER);
    checks.check(gp.is_none(), format_args!("rdmsr efer = {efer:#x}: {}", faulted(gp)));
    let long_mode = EFER_LME | EFER_LMA;
    checks.check(efer & long_mode == long_mode, format_args!("efer has lme and lma"));
    if gp.is_none() && efer & long_mode == long_mode {
        // SAFETY: EFER gets the value it holds; a #GP is caught.
        let gp = idt::catch(GP, || unsafe { wrmsr(EFER, efer) });
        checks.check(gp.is_none(), format_args!("wrmsr efer with its own value {efer:#x}: {}", faulted(gp)));
        let (again, gp) = read(EFER);
        checks.check(gp.is_none() && again == efer, format_args!("efer reads {again:#x} after that"));
    }

    let (id, gp) = read(x2apic::ID);
    checks.check(gp.is_none() && id == u64::from(start.vcpu), format_args!("x2apic id msr (0x802) reads {id}"));
    let (version, gp) = read(x2apic::VERSION);
    checks.check(gp.is_none(), format_args!("x2apic version msr (0x803) reads {version:#x}: {}", faulted(gp)));
    checks.finish()
}
