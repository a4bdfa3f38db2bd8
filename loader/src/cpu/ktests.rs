//! The `cpu` suite: exceptions are caught and reported as the SDM says,
//! interrupt stacks are in place, the local APIC, its timer and the TSC
//! agree with the firmware and the clock, and the IOAPIC delivers a device
//! interrupt.

use super::gdt::{self, IST_DOUBLE_FAULT, IST_MACHINE_CHECK, IST_NMI};
use super::IST_PAGES;
use crate::cpu::percpu::Fault;
use crate::interrupts::apic::{self, Mode};
use crate::interrupts::idt::{self, TrapFrame};
use crate::interrupts::ioapic;
use crate::interrupts::probe;
use crate::ktest::{with_vector, Failure, Test};
use crate::time::{self, cmos, timer};
use crate::{check, check_eq, failure};
use core::sync::atomic::{AtomicU32, Ordering};
use loader_core::acpi::madt::CpuClass;
use loader_core::boot::cmdline::ApicMode;
use raw_cpuid::{CpuId, Hypervisor};
use x86_64::instructions::port::Port;

crate::suite!(SUITE_CPU, "cpu", TESTS);
static TESTS: &[Test] = &[
    Test { name: "page-fault", run: page_fault },
    Test { name: "invalid-opcode", run: invalid_opcode },
    Test { name: "gp-non-canonical", run: gp_non_canonical },
    Test { name: "gp-rdmsr", run: gp_rdmsr },
    Test { name: "ist-stacks", run: ist_stacks },
    Test { name: "local-apic", run: local_apic },
    Test { name: "timer-ticks", run: timer_ticks },
    Test { name: "tsc-against-rtc", run: tsc_against_rtc },
    Test { name: "ioapic-rtc-interrupt", run: ioapic_rtc_interrupt },
];

/// PML4 slot 255: neither the boot page tables (0..4 GiB) nor the loader's
/// own map anything there.
const UNMAPPED: u64 = 0x7fff_dead_b000;
/// Bits 63:48 are not copies of bit 47, so any access is a #GP(0) before
/// paging is even consulted (SDM Vol. 3A, 4.5 and 6.15 "#GP").
const NON_CANONICAL: u64 = 0x8000_0000_0000_0000;

/// Encodings of the probes' faulting instructions (`cpu/probe.rs`).
const MOV_RDI_TO_RAX: &[u8] = &[0x48, 0x8b, 0x07];
const UD2: &[u8] = &[0x0f, 0x0b];
const RDMSR: &[u8] = &[0x0f, 0x32];

/// Whether the bytes at `rip` are `code`: the CPU reports a fault at the
/// faulting instruction itself, so this pins the recorded rip down exactly.
fn instruction_at(rip: u64, code: &[u8]) -> bool {
    probe::read_u64(rip).is_ok_and(|v| v.to_le_bytes().starts_with(code))
}

fn expect_fault<T: core::fmt::Debug>(what: &str, r: Result<T, Fault>) -> Result<Fault, Failure> {
    match r {
        Ok(v) => Err(failure!("{what} completed (giving {v:x?}) instead of faulting")),
        Err(f) => Ok(f),
    }
}

fn page_fault() -> Result<(), Failure> {
    let f = expect_fault("a read of an unmapped address", probe::read_u64(UNMAPPED))?;
    check_eq!(f.vector, 14, "vector");
    check!(f.cr2 == UNMAPPED, "cr2 {:#x}, expected {UNMAPPED:#x}", f.cr2);
    // P=0 (not present), W/R=0 (read), U/S=0 (supervisor), RSVD=0, I/D=0
    // (data access): SDM Vol. 3A, 4.7.
    check_eq!(f.error_code & 0x1f, 0, "error code bits P, W/R, U/S, RSVD, I/D");
    check!(instruction_at(f.rip, MOV_RDI_TO_RAX), "rip {:#x} is not the probe's load", f.rip);
    Ok(())
}

fn invalid_opcode() -> Result<(), Failure> {
    let f = expect_fault("ud2", probe::ud2())?;
    check_eq!(f.vector, 6, "vector");
    check_eq!(f.error_code, 0, "error code (#UD pushes none; the stub pushes 0)");
    check!(instruction_at(f.rip, UD2), "rip {:#x} is not the probe's ud2", f.rip);
    Ok(())
}

fn gp_non_canonical() -> Result<(), Failure> {
    let f = expect_fault("a read of a non-canonical address", probe::read_u64(NON_CANONICAL))?;
    check_eq!(f.vector, 13, "vector");
    check_eq!(f.error_code, 0, "error code");
    check!(instruction_at(f.rip, MOV_RDI_TO_RAX), "rip {:#x} is not the probe's load", f.rip);
    Ok(())
}

/// x2APIC register 0x801 is reserved: RDMSR of it raises #GP in x2APIC mode
/// (reserved register) and in xAPIC mode (no x2APIC MSR is readable then),
/// SDM Vol. 3A, 11.12.1.2. That holds on hardware, under KVM and in Bochs,
/// which otherwise reads unknown MSRs as 0 (its default `ignore_bad_msrs`).
const RESERVED_MSR: u32 = 0x801;

fn gp_rdmsr() -> Result<(), Failure> {
    let r = probe::rdmsr(RESERVED_MSR);
    // QEMU's TCG (7.2) raises #GP on no RDMSR at all: its helper reads every
    // MSR it does not know as 0. Its CPUID hypervisor leaf says "TCGTCGTCGTCG".
    let tcg = CpuId::new().get_hypervisor_info().is_some_and(|h| h.identify() == Hypervisor::QEMU);
    if tcg && r.is_ok() {
        check_eq!(r.ok(), Some(0), "RDMSR {RESERVED_MSR:#x} under QEMU TCG");
        log::info!(
            "gp-rdmsr: QEMU TCG read MSR {RESERVED_MSR:#x} as 0 without #GP, as its RDMSR does for every \
             unknown MSR; #GP delivery is covered by gp-non-canonical"
        );
        return Ok(());
    }
    let f = expect_fault("RDMSR of a reserved MSR", r)?;
    check_eq!(f.vector, 13, "vector");
    check_eq!(f.error_code, 0, "error code");
    check!(instruction_at(f.rip, RDMSR), "rip {:#x} is not the probe's rdmsr", f.rip);
    Ok(())
}

fn ist_stacks() -> Result<(), Failure> {
    let tops = gdt::loaded_ist_tops();
    let size = IST_PAGES * 4096;
    let here = 0u8;
    let rsp = &raw const here as u64;
    for (i, &top) in tops.iter().enumerate() {
        let n = i + 1;
        check!(top != 0, "IST{n} of the loaded TSS is 0");
        check_eq!(top % 16, 0, "IST{n} top {top:#x} modulo 16");
        check!(probe::read_u64(top - 8).is_ok(), "IST{n}: the top of its stack at {top:#x} is not mapped");
        check!(!(top.saturating_sub(size)..top).contains(&rsp), "the test runs on IST{n}'s stack");
        for (j, &other) in tops.iter().enumerate().skip(i + 1) {
            check!(top.abs_diff(other) >= size, "IST{n} {top:#x} and IST{} {other:#x} overlap", j + 1);
        }
    }
    for (vector, slot) in [(2, IST_NMI), (8, IST_DOUBLE_FAULT), (18, IST_MACHINE_CHECK)] {
        check_eq!(idt::loaded_gate_ist(vector), Some(slot), "IST slot of the gate of vector {vector}");
    }
    Ok(())
}

const IA32_APIC_BASE: u32 = 0x1b;

fn local_apic() -> Result<(), Failure> {
    let (_, cl) = crate::boot_info();
    let acpi = crate::acpi::get().ok_or_else(|| failure!("ACPI tables were not read"))?;
    let cpu = crate::cpu::percpu::current_id() as usize;
    let id = apic::id();
    let entry = acpi.cpus.get(cpu).ok_or_else(|| failure!("logical cpu {cpu} has no MADT entry"))?;
    check_eq!(entry.apic_id, id, "APIC id of the MADT entry of cpu {cpu} against the APIC's own");
    check_eq!(entry.class, CpuClass::Boot, "MADT class of the boot CPU");

    let x2apic = CpuId::new().get_feature_info().is_some_and(|f| f.has_x2apic());
    let want = match cl.apic {
        ApicMode::XApic => Mode::XApic,
        ApicMode::X2Apic => Mode::X2Apic,
        ApicMode::Auto if x2apic => Mode::X2Apic,
        ApicMode::Auto => Mode::XApic,
    };
    check_eq!(apic::mode(), want, "mode for apic={:?} with CPUID x2APIC {x2apic}", cl.apic);
    // What the hardware is in, not what the loader believes: EN (bit 11)
    // and EXTD (bit 10) of IA32_APIC_BASE (SDM Vol. 3A, 11.12.1).
    let base = probe::rdmsr(IA32_APIC_BASE).map_err(|f| failure!("RDMSR IA32_APIC_BASE faulted: {f:x?}"))?;
    check!(base & (1 << 11) != 0, "IA32_APIC_BASE {base:#x}: the APIC is disabled");
    check_eq!(base & (1 << 10) != 0, want == Mode::X2Apic, "IA32_APIC_BASE {base:#x} EXTD (x2APIC) bit");
    if want == Mode::XApic {
        check_eq!(base & 0x000f_ffff_ffff_f000, acpi.lapic_address, "xAPIC MMIO base against the MADT");
    }
    Ok(())
}

fn timer_ticks() -> Result<(), Failure> {
    check!(x86_64::instructions::interrupts::are_enabled(), "interrupts are off, so no tick can arrive");
    let expected = timer::TICK_HZ / 10;
    let t0 = timer::ticks();
    time::delay_us(100_000);
    let n = timer::ticks() - t0;
    log::debug!("timer-ticks: {n} in 100 ms");
    // Wide margins: an emulator thread that the host descheduled delivers
    // late ticks as one.
    check!((expected / 2..=expected * 2).contains(&n), "{n} ticks in 100 ms; expected about {expected}");
    Ok(())
}

/// QEMU's firmware configuration device answers its signature key (0) with
/// "QEMU" through I/O ports 0x510 (selector) and 0x511 (data) on pc and q35
/// (QEMU docs/specs/fw_cfg.rst). Elsewhere nothing decodes those ports and
/// reads return 0xff.
fn qemu_fw_cfg_present() -> bool {
    let mut signature = [0u8; 4];
    // SAFETY: selecting the signature key has no side effects on QEMU; on
    // other machines the port is unclaimed. Only this test uses fw_cfg, on
    // the boot CPU.
    unsafe { Port::<u16>::new(0x510).write(0) };
    for b in &mut signature {
        // SAFETY: reading the selected item's next byte, as above.
        *b = unsafe { Port::<u8>::new(0x511).read() };
    }
    &signature == b"QEMU"
}

/// The TSC rate calibrated against the ACPI PM timer must match a second of
/// the CMOS clock within 5%. That is promised only where the RTC and the PM
/// timer run on the same time: QEMU, whose RTC follows the host clock by
/// default, as its PM timer does without `-icount`. Bochs runs its clocks as
/// its `clock:` option says (with the runner's `sync=none` both run on
/// emulated time, and agreed within 0.01% when this was written), so
/// elsewhere only the rate's plausibility is checked. QEMU is recognised by
/// its fw_cfg device rather than by CPUID, because the RTC belongs to the
/// machine model, whatever CPU (TCG or KVM) runs it.
fn tsc_against_rtc() -> Result<(), Failure> {
    let hz = time::tsc_hz();
    // Bochs' TSC runs at its `ips` (5-50 MHz in our configurations); no
    // real CPU's TSC runs faster than 10 GHz.
    check!((1_000_000..=10_000_000_000).contains(&hz), "calibrated TSC rate {hz} Hz is implausible");
    if !qemu_fw_cfg_present() {
        log::info!(
            "tsc-against-rtc: not QEMU (no fw_cfg), so nothing promises that the RTC keeps the PM \
             timer's time; checked only that the TSC rate {hz} Hz is plausible"
        );
        return Ok(());
    }
    // A second the host stole time from at an edge is measured wrong; a
    // wrong calibration is wrong in every second. So up to four seconds get
    // a chance before the test fails (on a loaded two-core host, two late
    // edges in a row were seen).
    let mut edge = next_second_edge(hz)?;
    let mut permille = 0;
    for _ in 0..4 {
        let next = next_second_edge(hz)?;
        let measured = next - edge;
        edge = next;
        permille = measured.abs_diff(hz) * 1000 / hz;
        log::debug!("tsc-against-rtc: one RTC second took {measured} TSC ticks; calibrated {hz} Hz");
        if permille <= 50 {
            return Ok(());
        }
    }
    Err(failure!(
        "four RTC seconds in a row were more than 5% off the calibrated TSC rate {hz} Hz (the last by {}.{}%)",
        permille / 10,
        permille % 10
    ))
}

/// The TSC right after the RTC's seconds register next changes.
fn next_second_edge(tsc_hz: u64) -> Result<u64, Failure> {
    // A second plus a generous margin.
    cmos::wait_second_edge(3 * tsc_hz).ok_or_else(|| failure!("the RTC seconds did not change in 3 s"))
}

/// RTC interrupts whose status C showed the periodic flag.
static RTC_PERIODIC: AtomicU32 = AtomicU32::new(0);

/// Status B: periodic interrupt enable. Status C: interrupt request and
/// periodic flags (MC146818A datasheet).
const PIE: u8 = 1 << 6;
const IRQF: u8 = 1 << 7;
const PF: u8 = 1 << 6;
/// Rate select 10: 32768 Hz >> (10 - 1) = 64 Hz.
const RATE_64_HZ: u8 = 10;
const WANT_INTERRUPTS: u32 = 8;

fn rtc_interrupt(_: &mut TrapFrame) {
    // Reading status C acknowledges the interrupt: the RTC raises IRQ 8
    // again only after it was read.
    let c = cmos::read(cmos::STATUS_C);
    if c & (IRQF | PF) == IRQF | PF {
        RTC_PERIODIC.fetch_add(1, Ordering::Relaxed);
    }
}

fn ioapic_rtc_interrupt() -> Result<(), Failure> {
    let acpi = crate::acpi::get().ok_or_else(|| failure!("ACPI tables were not read"))?;
    let (gsi, trigger, polarity) = ioapic::isa_irq(acpi, 8);
    let dest = apic::id();
    RTC_PERIODIC.store(0, Ordering::Relaxed);
    let (a, b) = (cmos::read(cmos::STATUS_A), cmos::read(cmos::STATUS_B));
    let (vector, seen, elapsed_us) = with_vector(rtc_interrupt, |vector| {
        ioapic::route(acpi, gsi, vector, dest, trigger, polarity)
            .map_err(|e| failure!("routing RTC IRQ 8 (GSI {gsi}): {e}"))?;
        // A flag left from before would hold IRQ 8 high and hide our edges.
        cmos::read(cmos::STATUS_C);
        // Keep the divider bits (6:4) that run the clock; only the rate changes.
        cmos::write(cmos::STATUS_A, (a & 0xf0) | RATE_64_HZ);
        cmos::write(cmos::STATUS_B, b | PIE);
        let start = time::uptime_us();
        let mut elapsed = 0;
        while RTC_PERIODIC.load(Ordering::Relaxed) < WANT_INTERRUPTS && elapsed < 500_000 {
            core::hint::spin_loop();
            elapsed = time::uptime_us() - start;
        }
        cmos::write(cmos::STATUS_B, b);
        cmos::write(cmos::STATUS_A, a);
        let masked = ioapic::mask(acpi, gsi);
        cmos::read(cmos::STATUS_C);
        masked.map_err(|e| failure!("masking GSI {gsi}: {e}"))?;
        Ok::<_, Failure>((vector, RTC_PERIODIC.load(Ordering::Relaxed), elapsed))
    })??;
    log::debug!("ioapic-rtc-interrupt: {seen} on vector {vector:#x} in {elapsed_us} us");
    check!(
        seen >= WANT_INTERRUPTS,
        "{seen} periodic RTC interrupts on vector {vector:#x} (GSI {gsi}, {trigger:?}, active {polarity:?}) \
         in 500 ms; expected {WANT_INTERRUPTS} at 64 Hz"
    );
    // Eight at 64 Hz take at least 7/64 s; far less means they came from
    // something else, or the rate setting did not take.
    check!(elapsed_us >= 50_000, "{seen} RTC interrupts came in {elapsed_us} us; at 64 Hz that takes over 100 ms");
    Ok(())
}
