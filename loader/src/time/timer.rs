//! Timer calibration and the periodic tick.
//!
//! The TSC and the local APIC timer run at rates the loader must measure:
//! CPUID's nominal TSC rate is wrong under emulators (Bochs advertises
//! 3.5 GHz but ticks once per emulated instruction). The reference is the
//! ACPI PM timer, a fixed 3.579545 MHz counter (ACPI 6.5, 4.8.3.3).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use x86_64::instructions::port::Port;

pub const PM_TIMER_HZ: u64 = 3_579_545;
/// Calibration window: long enough for 0.1% resolution of the PM timer.
const WINDOW_PM_TICKS: u64 = PM_TIMER_HZ / 50;

pub const TICK_HZ: u64 = 100;
pub const TICK_VECTOR: u8 = 0x30;

static LAPIC_HZ: AtomicU64 = AtomicU64::new(0);
static TICKS: AtomicU64 = AtomicU64::new(0);
/// Ticks each CPU has taken, for tests (indexed by logical id).
static CPU_TICKS: [AtomicU32; loader_core::acpi::madt::MAX_CPUS] =
    [const { AtomicU32::new(0) }; loader_core::acpi::madt::MAX_CPUS];

#[derive(Debug)]
pub enum Error {
    NoPmTimer,
    Vector(u8),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::NoPmTimer => write!(f, "the FADT names no ACPI PM timer, so the TSC cannot be calibrated"),
            Error::Vector(v) => write!(f, "timer vector {v:#x} is already taken"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Calibration {
    pub tsc_hz: u64,
    pub lapic_hz: u64,
}

/// Measures the TSC and the APIC timer (divided by 16) against the PM
/// timer, and starts `time::uptime`.
pub fn calibrate(acpi: &crate::acpi::Acpi) -> Result<Calibration, Error> {
    let (port, wide) = acpi.pm_timer.ok_or(Error::NoPmTimer)?;
    let mask: u32 = if wide { u32::MAX } else { 0x00ff_ffff };
    let mut pm = Port::<u32>::new(port);
    // SAFETY: reading the PM timer has no side effects.
    let mut read_pm = || unsafe { pm.read() } & mask;
    let (c, measured) = x86_64::instructions::interrupts::without_interrupts(|| {
        crate::interrupts::apic::timer_start_masked(u32::MAX);
        let pm0 = read_pm();
        let tsc0 = crate::time::rdtsc();
        let apic0 = crate::interrupts::apic::timer_current();
        loop {
            let elapsed = read_pm().wrapping_sub(pm0) & mask;
            if elapsed as u64 >= WINDOW_PM_TICKS {
                let tsc = crate::time::rdtsc() - tsc0;
                let apic = apic0 - crate::interrupts::apic::timer_current();
                crate::interrupts::apic::timer_stop();
                break (elapsed as u64, (tsc, apic as u64));
            }
        }
    });
    let cal = Calibration { tsc_hz: measured.0 * PM_TIMER_HZ / c, lapic_hz: measured.1 * PM_TIMER_HZ / c };
    crate::time::set_tsc_hz(cal.tsc_hz);
    LAPIC_HZ.store(cal.lapic_hz, Ordering::Relaxed);
    Ok(cal)
}

/// Installs the tick handler (once).
pub fn init() -> Result<(), Error> {
    crate::interrupts::idt::set_handler(TICK_VECTOR, tick).map_err(Error::Vector)
}

/// Starts the periodic tick on this CPU.
pub fn start_tick() {
    let count = LAPIC_HZ.load(Ordering::Relaxed) / TICK_HZ;
    crate::interrupts::apic::timer_periodic(TICK_VECTOR, count.clamp(1, u32::MAX as u64) as u32);
}

fn tick(_: &mut crate::interrupts::idt::TrapFrame) {
    let cpu = crate::cpu::percpu::current_id() as usize;
    CPU_TICKS[cpu].fetch_add(1, Ordering::Relaxed);
    if cpu == 0 {
        let now = TICKS.fetch_add(1, Ordering::Relaxed) + 1;
        crate::time::watchdog::check(now);
    }
}

/// Ticks seen by the boot CPU.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

#[cfg(feature = "ktest")]
pub fn cpu_ticks(cpu: usize) -> u32 {
    CPU_TICKS[cpu].load(Ordering::Relaxed)
}
