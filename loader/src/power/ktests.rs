//! The `reboot` and `poweroff` suites: leaving the machine through ACPI.
//! Both end the run, so `test=all` leaves them out.

use crate::ktest::{Failure, Test};
use crate::time::cmos;
use crate::{check, check_eq, failure};
use loader_core::power::exit::Status;

crate::suite!(SUITE_REBOOT, "reboot", REBOOT, crate::ktest::InAll::OnlyWhenNamed);
static REBOOT: &[Test] = &[Test { name: "reset-and-come-back", run: reset_and_come_back }];
crate::suite!(SUITE_POWEROFF, "poweroff", POWEROFF, crate::ktest::InAll::OnlyWhenNamed);
static POWEROFF: &[Test] = &[Test { name: "acpi-s5", run: acpi_s5 }];

/// What the first boot leaves in CMOS RAM for the second; any other value
/// (0 on a fresh emulator) means this is the first boot.
const RESET_REQUESTED: u8 = 0xb7;

/// First boot: record the stage and reset. Second boot (the runner boots
/// this image without `-no-reboot`): find the stage, clear it, pass.
fn reset_and_come_back() -> Result<(), Failure> {
    let stage = cmos::read(cmos::SCRATCH);
    if stage == RESET_REQUESTED {
        cmos::write(cmos::SCRATCH, 0);
        check_eq!(cmos::read(cmos::SCRATCH), 0, "CMOS scratch byte after clearing it");
        log::info!("reboot: second boot; the reset came back through the firmware");
        return Ok(());
    }
    cmos::write(cmos::SCRATCH, RESET_REQUESTED);
    check_eq!(cmos::read(cmos::SCRATCH), RESET_REQUESTED, "CMOS scratch byte after writing the stage");
    match crate::acpi::get().and_then(|a| a.reset) {
        Some((reg, value)) => {
            let (space, address) = (reg.address_space, reg.address);
            log::info!("reboot: first boot; ACPI reset register: {space:?} {address:#x} <- {value:#x}");
        }
        None => log::info!("reboot: first boot; no ACPI reset register, so the 8042 fallback must reset"),
    }
    crate::power::reboot()
}

fn acpi_s5() -> Result<(), Failure> {
    let a = crate::acpi::get().ok_or_else(|| failure!("ACPI tables were not read"))?;
    let s5 = a.s5.ok_or_else(|| failure!("no \\_S5 sleep type: ACPI power-off cannot work"))?;
    check!(a.pm1a_control != 0, "no PM1a control block to write SLP_TYP to");
    log::info!("poweroff: entering S5 (SLP_TYPa {}, SLP_TYPb {}) through PM1a_CNT {:#x}", s5.a, s5.b, a.pm1a_control);
    // The exit marker comes first; the host then expects QEMU to end with
    // status 0, which only the power-off (not isa-debug-exit) produces.
    crate::power::exit(Status::PowerOff)
}
