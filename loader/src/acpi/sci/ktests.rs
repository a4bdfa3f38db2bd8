//! The `acpihp` suite, driven by the host runner over QMP (`runner test`'s
//! `acpihp-q35` and `acpihp-pc` runs): the image waits for a `device_add`,
//! sees the insert event through the SCI, GPE 2 and the register block,
//! starts the CPU and reports _OST success; then waits for the
//! `device_del`, parks the CPU and ejects it. The runner checks QEMU's side
//! (ACPI_DEVICE_OST events, query-cpus-fast). Lines starting `acpihp:` are
//! the handshake with the runner.

use super::Call;
use crate::ktest::{Failure, Test};
use crate::{check, check_eq, failure};
use core::sync::atomic::{AtomicU32, Ordering};
use plugins::acpihp::{ost_status, CpuHotplug, Event, EventKind, HwPorts, Ost, GPE_BIT};
use x86_64::instructions::port::Port;

crate::suite!(SUITE_ACPIHP, "acpihp", TESTS, crate::ktest::InAll::OnlyWhenNamed);
static TESTS: &[Test] = &[
    Test { name: "block-matches-the-chipset", run: block_matches_the_chipset },
    Test { name: "hot-add-start-then-eject", run: hot_add_then_eject },
];

/// How long the runner may take to act on a handshake line.
const WAIT_US: u64 = 60_000_000;

fn base() -> Result<u16, Failure> {
    crate::acpi::get().and_then(|a| a.cpu_hotplug).ok_or_else(|| failure!("the DSDT declares no CPU hotplug block"))
}

/// The host bridge's vendor and device id (PCI 0:0.0, configuration
/// mechanism #1).
fn host_bridge() -> u32 {
    // SAFETY: CONFIG_ADDRESS selects bus 0, device 0, function 0, register
    // 0; only this test uses the configuration ports, on the boot CPU.
    unsafe { Port::<u32>::new(0xcf8).write(0x8000_0000) };
    // SAFETY: CONFIG_DATA then reads the selected register: the vendor and
    // device id, without side effects.
    unsafe { Port::<u32>::new(0xcfc).read() }
}

/// The DSDT's block is where the spec puts it for the chipset the host
/// bridge names: Q35 MCH (8086:29c0) with ICH9-LPC, or i440FX (8086:1237)
/// with PIIX4 PM.
fn block_matches_the_chipset() -> Result<(), Failure> {
    let base = base()?;
    let expected = match host_bridge() {
        0x29c0_8086 => 0x0cd8,
        0x1237_8086 => 0xaf00,
        other => return Err(failure!("unknown host bridge {other:#010x}")),
    };
    check_eq!(base, expected, "hotplug block base");
    let mut hp = CpuHotplug::modern(HwPorts, base).map_err(|e| failure!("{e}"))?;
    let cpus = &crate::acpi::get().expect("parsed at boot").cpus;
    check_eq!(hp.slots() as usize, cpus.len(), "slots in the block vs CPUs in the MADT");
    for s in 0..cpus.len() as u32 {
        let id = hp.arch_id(s);
        check!(cpus.id_of(id as u32).is_some(), "selector {s}: APIC id {id} is not in the MADT");
    }
    Ok(())
}

/// GPE 2 handler calls so far (thread context, through `run_pending`).
static FIRED: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_gpe(_: usize) {
    FIRED.fetch_add(1, Ordering::AcqRel);
}

/// Waits for the next event of `kind` that the GPE announced.
fn wait_event(hp: &mut CpuHotplug<HwPorts>, kind: EventKind) -> Result<Event, Failure> {
    let start = crate::time::uptime_us();
    let seen = FIRED.load(Ordering::Acquire);
    while crate::time::uptime_us() - start < WAIT_US {
        crate::time::watchdog::pet();
        super::run_pending();
        if FIRED.load(Ordering::Acquire) != seen {
            return match hp.next_event() {
                Some(e) if e.kind == kind => Ok(e),
                other => Err(failure!("GPE {GPE_BIT} fired; expected a {kind:?} event, the block has {other:?}")),
            };
        }
        crate::time::delay_us(1000);
    }
    Err(failure!("no GPE {GPE_BIT} within {} s", WAIT_US / 1_000_000))
}

fn hot_add_then_eject() -> Result<(), Failure> {
    let mut hp = CpuHotplug::modern(HwPorts, base()?).map_err(|e| failure!("{e}"))?;
    check!(hp.next_event().is_none(), "an event is pending before any device_add");
    super::register(0, GPE_BIT, Call { f: on_gpe, ctx: 0 }).map_err(|e| failure!("{e}"))?;
    let r = cycle(&mut hp);
    super::unregister(0, GPE_BIT).map_err(|e| failure!("{e}"))?;
    r
}

fn cycle(hp: &mut CpuHotplug<HwPorts>) -> Result<(), Failure> {
    crate::println!("acpihp: ready for device_add");
    let e = wait_event(hp, EventKind::Insert)?;
    let cpus = &crate::acpi::get().expect("parsed at boot").cpus;
    let cpu =
        cpus.id_of(e.apic_id as u32).ok_or_else(|| failure!("inserted APIC id {} is not in the MADT", e.apic_id))?;
    let started = crate::smp::start(cpu);
    hp.ost(
        e.selector,
        Ost::insert(if started.is_ok() { ost_status::SUCCESS } else { ost_status::DRIVER_LOAD_FAILURE }),
    );
    hp.ack(&e);
    started.map_err(|err| failure!("starting inserted cpu {cpu}: {err}"))?;
    check_eq!(crate::smp::seen_apic_id(cpu), e.apic_id as u32, "APIC id the new CPU read");
    crate::println!(
        "acpihp: inserted cpu {cpu} (APIC id {}, selector {}), started, _OST success",
        e.apic_id,
        e.selector
    );
    crate::println!("acpihp: ready for device_del");
    let r = wait_event(hp, EventKind::Remove)?;
    check_eq!(r.selector, e.selector, "selector of the removal");
    crate::smp::park(cpu).map_err(|err| failure!("parking cpu {cpu}: {err}"))?;
    hp.ack(&r);
    hp.eject(r.selector);
    check!(!hp.is_enabled(r.selector), "cpu {cpu} is still plugged in after the eject");
    hp.ost(r.selector, Ost::EJECTED);
    check!(hp.next_event().is_none(), "events are left after the eject");
    crate::println!("acpihp: ejected cpu {cpu}");
    Ok(())
}
