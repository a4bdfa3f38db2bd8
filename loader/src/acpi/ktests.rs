//! The `acpi` suite: the FADT blocks the loader depends on are there and
//! answer, the SCI can be routed, power-off and reset have what they need,
//! and the CPU list agrees with the raw MADT.

use super::IdentityMapped;
use crate::interrupts::idt::TrapFrame;
use crate::interrupts::ioapic::{self, Polarity, Trigger};
use crate::ktest::{with_vector, Failure, Test};
use crate::{check, check_eq, failure, time};
use ::acpi::address::AddressSpace;
use ::acpi::fadt::Fadt;
use ::acpi::madt::Madt;
use ::acpi::{AcpiTable, AcpiTables};
use core::sync::atomic::{AtomicU32, Ordering};
use loader_core::acpi::madt::{CpuClass, MAX_CPUS};
use x86_64::instructions::interrupts::without_interrupts;
use x86_64::instructions::port::Port;

crate::suite!(SUITE_ACPI, "acpi", TESTS);
static TESTS: &[Test] = &[
    Test { name: "fadt-pm-blocks", run: fadt_pm_blocks },
    Test { name: "sci-routing", run: sci_routing },
    Test { name: "s5-sleep-type", run: s5_sleep_type },
    Test { name: "reset-register", run: reset_register },
    Test { name: "madt-cpus", run: madt_cpus },
];

fn tables() -> Result<&'static super::Acpi, Failure> {
    super::get().ok_or_else(|| failure!("ACPI tables were not read"))
}

fn fadt_pm_blocks() -> Result<(), Failure> {
    let a = tables()?;
    // PM1_EVT_LEN is at least 4: a status and an enable register of 2 bytes
    // each (ACPI 6.5, 5.2.9).
    let fadt = reread()?.find_table::<Fadt>().map_err(|e| failure!("finding the FADT: {e:?}"))?;
    let event = fadt.pm1a_event_block().map_err(|e| failure!("the FADT gives no PM1a event block: {e:?}"))?;
    check!(event.address != 0, "the FADT gives no PM1a event block");
    check!(event.bit_width >= 32, "PM1a event block length {} < 4", event.bit_width / 8);
    check!(a.pm1a_control != 0, "the FADT gives no PM1a control block");
    // SAFETY: reading PM1a_CNT has no side effects.
    let cnt = unsafe { Port::<u16>::new(a.pm1a_control).read() };
    check!(cnt & 1 != 0, "SCI_EN is clear in PM1a_CNT {cnt:#x}: the machine is not in ACPI mode");
    // GPE0 carries the CPU hotplug notification on QEMU; its status and
    // enable halves need at least one byte each.
    let gpe0 = a.gpe0.ok_or_else(|| failure!("the FADT gives no GPE0 block"))?;
    check!(gpe0.port != 0 && gpe0.len >= 2 && gpe0.len % 2 == 0, "GPE0 block {gpe0:?} is malformed");

    let (port, wide) = a.pm_timer.ok_or_else(|| failure!("the FADT gives no PM timer"))?;
    let mask = if wide { u32::MAX } else { 0x00ff_ffff };
    let mut pm = Port::<u32>::new(port);
    // SAFETY: reading the PM timer has no side effects.
    let mut read = || unsafe { pm.read() } & mask;
    // Each TSC read sits right next to its PM timer read, so an emulator
    // thread descheduled around the delay stretches both alike.
    let (t0, p0) = (time::rdtsc(), read());
    time::delay_us(10_000);
    let (p1, t1) = (read(), time::rdtsc());
    let ticks = (p1.wrapping_sub(p0) & mask) as u64;
    let us = (t1 - t0) * 1_000_000 / time::tsc_hz();
    let expected = loader_core::time::calibration::PM_TIMER_HZ * us / 1_000_000;
    log::debug!("fadt-pm-blocks: the PM timer advanced {ticks} in {us} us");
    // A 3.579545 MHz counter; a wrong port reads a constant.
    check!(
        (expected * 3 / 4..=expected * 5 / 4).contains(&ticks),
        "the PM timer at port {port:#x} advanced {ticks} in {us} us; expected about {expected}"
    );
    Ok(())
}

/// SCIs taken while the test listened, and the GSI to mask on the first one.
static SCIS: AtomicU32 = AtomicU32::new(0);
static SCI_GSI: AtomicU32 = AtomicU32::new(0);

fn sci_interrupt(_: &mut TrapFrame) {
    SCIS.fetch_add(1, Ordering::Relaxed);
    // Masking at once turns an SCI that stays asserted (wrong polarity, an
    // event left enabled), which would interrupt without end, into one
    // counted interrupt.
    if let Some(a) = super::get() {
        let _ = ioapic::mask(a, SCI_GSI.load(Ordering::Relaxed));
    }
}

const LEVEL: u64 = 1 << 15;
const ACTIVE_LOW: u64 = 1 << 13;
const MASKED: u64 = 1 << 16;

fn sci_routing() -> Result<(), Failure> {
    let a = tables()?;
    let (gsi, trigger, polarity) = ioapic::sci(a);
    check_eq!(trigger, Trigger::Level, "trigger mode of the SCI (GSI {gsi})");
    let dest = crate::interrupts::apic::id();
    SCIS.store(0, Ordering::Relaxed);
    SCI_GSI.store(gsi, Ordering::Relaxed);
    let r = with_vector(sci_interrupt, |vector| {
        // Interrupts off while the IOAPIC lock is held: the handler takes
        // it too.
        let routed = without_interrupts(|| {
            ioapic::route(a, gsi, vector, dest, trigger, polarity).and_then(|()| ioapic::entry(a, gsi))
        });
        // No ACPI event is enabled yet, so a routed SCI must stay quiet. On
        // hardware a wrong polarity shows here too (the idle line reads as
        // asserted); QEMU's IOAPIC ignores the polarity bit, so there only
        // the read-back entry below checks it.
        time::delay_us(20_000);
        let masked = without_interrupts(|| ioapic::mask(a, gsi).and_then(|()| ioapic::entry(a, gsi)));
        (vector, routed, masked)
    })?;
    let (vector, routed, masked) = r;
    let e = routed.map_err(|e| failure!("routing the SCI: {e}"))?;
    check_eq!(e & 0xff, vector as u64, "vector of the SCI's redirection entry {e:#x}");
    check!(e & LEVEL != 0, "the SCI's redirection entry {e:#x} is not level-triggered");
    check_eq!(e & ACTIVE_LOW != 0, polarity == Polarity::Low, "active-low bit of the SCI's redirection entry {e:#x}");
    check_eq!((e >> 56) as u32, dest, "destination of the SCI's redirection entry {e:#x}");
    check!(e & MASKED == 0, "routing left the SCI masked: {e:#x}");
    let n = SCIS.load(Ordering::Relaxed);
    check_eq!(n, 0, "SCIs in 20 ms with no ACPI event enabled (GSI {gsi}, active {polarity:?})");
    let m = masked.map_err(|e| failure!("masking the SCI: {e}"))?;
    check!(m & MASKED != 0, "the SCI's redirection entry {m:#x} is not masked after ioapic::mask");
    Ok(())
}

fn s5_sleep_type() -> Result<(), Failure> {
    let a = tables()?;
    let s5 = a.s5.ok_or_else(|| failure!("no \\_S5 package in the DSDT: ACPI power-off cannot work"))?;
    // SLP_TYP is a 3-bit field of PM1x_CNT (ACPI 6.5, 4.8.3.2.1).
    check!(s5.a < 8 && s5.b < 8, "\\_S5 sleep types {s5:?} do not fit SLP_TYP");
    Ok(())
}

fn reset_register() -> Result<(), Failure> {
    let a = tables()?;
    let t = reread()?;
    let fadt = t.find_table::<Fadt>().map_err(|e| failure!("finding the FADT: {e:?}"))?;
    let revision = fadt.header().revision;
    let Some((reg, value)) = a.reset else {
        // An ACPI 1.0 FADT (revision 1, as on QEMU's `pc`) ends before the
        // reset register, so `power::reboot` can only use its 8042 fallback.
        check!(revision < 2, "FADT revision {revision} does not offer its reset register (RESET_REG_SUP)");
        // SAFETY: reading the 8042 status register has no side effects.
        let status = unsafe { Port::<u8>::new(0x64).read() };
        // All ones is what a port nobody decodes reads as.
        check!(status != 0xff, "FADT revision {revision} has no reset register, and no 8042 answers at port 0x64");
        log::info!("reset-register: FADT revision {revision} predates the reset register; reboot relies on the 8042");
        return Ok(());
    };
    let space = reg.address_space;
    // `acpi::reset` drives only I/O space; the ACPI spec allows memory and
    // PCI configuration space as well, which it would silently skip.
    check_eq!(space, AddressSpace::SystemIo, "address space of the reset register");
    let (address, width) = (reg.address, reg.bit_width);
    check!(address != 0, "the reset register's address is 0");
    // ACPI 6.5, 4.8.3.6: an 8-bit register at bit offset 0.
    check_eq!(width, 8, "bit width of the reset register (value {value:#x})");
    Ok(())
}

/// The tables again, for what `Acpi` does not keep.
fn reread() -> Result<AcpiTables<IdentityMapped>, Failure> {
    let rsdp = crate::boot_info().0.rsdp.ok_or_else(|| failure!("no RSDP was recorded"))?;
    // SAFETY: `acpi::init` validated the RSDP at this address; the tables
    // are identity-mapped firmware memory.
    unsafe { AcpiTables::from_rsdp(IdentityMapped, rsdp as usize) }
        .map_err(|e| failure!("reading the tables again: {e:?}"))
}

/// The MADT's bytes, to read its CPU entries without the parser under test.
fn raw_madt() -> Result<&'static [u8], Failure> {
    let madt = reread()?.find_table::<Madt>().map_err(|e| failure!("finding the MADT: {e:?}"))?;
    let len = { madt.get().header.length } as usize;
    // SAFETY: the MADT occupies `length` bytes at its physical address,
    // identity-mapped firmware memory that lives as long as the machine.
    Ok(unsafe { core::slice::from_raw_parts(madt.physical_start() as *const u8, len) })
}

fn madt_cpus() -> Result<(), Failure> {
    let a = tables()?;
    check!(a.cpus.count(CpuClass::Boot) >= 1, "the MADT lists no CPU enabled at boot");
    let cpu = crate::cpu::percpu::current_id() as usize;
    let me = a.cpus.get(cpu).ok_or_else(|| failure!("the running CPU {cpu} has no MADT entry"))?;
    check_eq!(me.class, CpuClass::Boot, "class of the boot CPU (APIC id {})", me.apic_id);
    check_eq!(me.apic_id, crate::interrupts::apic::id(), "APIC id of cpu {cpu}'s entry against the APIC's own");

    // Walk the raw entries (ACPI 6.5, 5.2.12): processor local APIC (type
    // 0: id byte 3, flags at 4) and local x2APIC (type 9: id at 4, flags at
    // 8), after the 44-byte header.
    let madt = raw_madt()?;
    let revision = madt[8];
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let mut ids = [0u32; MAX_CPUS];
    let mut n = 0;
    let mut at = 44;
    while at + 2 <= madt.len() {
        let (kind, len) = (madt[at], madt[at + 1] as usize);
        check!(len >= 2 && at + len <= madt.len(), "MADT entry at offset {at} has length {len}");
        let e = &madt[at..at + len];
        let cpu = match (kind, len) {
            (0, 8..) => Some((e[3] as u32, u32_at(e, 4))),
            (9, 16..) => Some((u32_at(e, 4), u32_at(e, 8))),
            _ => None,
        };
        if let Some((id, flags)) = cpu {
            if let Some(class) = CpuClass::from_flags(flags, revision) {
                check!(!ids[..n].contains(&id), "the MADT lists APIC id {id} twice");
                check!(n < MAX_CPUS, "the MADT lists more than {MAX_CPUS} CPUs");
                ids[n] = id;
                n += 1;
                let listed = a.cpus.id_of(id).and_then(|i| a.cpus.get(i));
                check_eq!(listed.map(|c| c.class), Some(class), "class of APIC id {id} (flags {flags:#x})");
            }
        }
        at += len;
    }
    check_eq!(n, a.cpus.len(), "CPUs in the raw MADT against the loader's list");
    Ok(())
}
