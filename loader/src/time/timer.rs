//! Timer calibration and the periodic tick.
//!
//! The TSC and the local APIC timer run at rates the loader must know. A
//! 1 ms window against the ACPI PM timer (ACPI 6.5, 4.8.3.3) measures both;
//! `loader_core::time::calibration` decides whether a rate CPUID enumerates
//! (exact on real CPUs and under hypervisors that say so) may replace the
//! measurement: emulators enumerate rates they do not keep.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use loader_core::time::calibration::{
    self, Enumerated, Rates, Window, MAX_SAMPLE_SPREAD, SAMPLE_TRIES, WINDOW_PM_TICKS,
};
use raw_cpuid::CpuId;
use x86_64::instructions::port::Port;

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
    Window(calibration::Error),
    Vector(u8),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::NoPmTimer => write!(f, "the FADT names no ACPI PM timer, so the TSC cannot be calibrated"),
            Error::Window(e) => write!(f, "{e}"),
            Error::Vector(v) => write!(f, "timer vector {v:#x} is already taken"),
        }
    }
}

/// What CPUID says about the clocks of this CPU.
fn enumerated() -> Enumerated {
    let cpuid = CpuId::new();
    let leaf15 = cpuid.get_tsc_info().map(|t| (t.denominator(), t.numerator(), t.nominal_frequency()));
    let base_mhz =
        cpuid.get_processor_frequency_info().map(|f| f.processor_base_frequency() as u32).filter(|&mhz| mhz != 0);
    let hv_khz = cpuid
        .get_hypervisor_info()
        .and_then(|h| Some((h.tsc_frequency()?, h.apic_frequency()?)))
        .filter(|&(tsc, _)| tsc != 0);
    Enumerated { leaf15, base_mhz, hv_khz }
}

/// One reading of the three clocks: PM timer, TSC, APIC timer count.
#[derive(Clone, Copy)]
struct Sample {
    pm: u32,
    tsc: u64,
    apic: u32,
}

/// Reads the clocks between two PM-timer reads and keeps the reading whose
/// PM reads lie closest together: an emulator thread held up between the
/// reads (QEMU's PM timer takes its big lock) would otherwise book the
/// delay to one clock only, and in a 1 ms window that is a large error.
fn sample(read_pm: &mut impl FnMut() -> u32, mask: u32) -> Sample {
    let mut best: Option<(u32, Sample)> = None;
    for _ in 0..SAMPLE_TRIES {
        let pm = read_pm();
        let tsc = crate::time::rdtsc();
        let apic = crate::interrupts::apic::timer_current();
        let spread = read_pm().wrapping_sub(pm) & mask;
        if best.is_none_or(|(s, _)| spread < s) {
            best = Some((spread, Sample { pm, tsc, apic }));
        }
        if spread <= MAX_SAMPLE_SPREAD {
            break;
        }
    }
    best.map(|(_, s)| s).expect("SAMPLE_TRIES is at least 1")
}

/// Counts TSC and APIC-timer ticks over one window of PM-timer ticks.
fn measure(port: u16, wide: bool) -> Window {
    let mask: u32 = if wide { u32::MAX } else { 0x00ff_ffff };
    let mut pm = Port::<u32>::new(port);
    // SAFETY: reading the PM timer has no side effects.
    let mut read_pm = || unsafe { pm.read() } & mask;
    x86_64::instructions::interrupts::without_interrupts(|| {
        crate::interrupts::apic::timer_start_masked(u32::MAX);
        let first = sample(&mut read_pm, mask);
        while ((read_pm().wrapping_sub(first.pm) & mask) as u64) < WINDOW_PM_TICKS {
            core::hint::spin_loop();
        }
        let last = sample(&mut read_pm, mask);
        crate::interrupts::apic::timer_stop();
        Window {
            pm_ticks: (last.pm.wrapping_sub(first.pm) & mask) as u64,
            tsc: last.tsc - first.tsc,
            apic: first.apic.wrapping_sub(last.apic) as u64,
        }
    })
}

/// Sets the TSC and APIC-timer (divided by 16) rates and starts
/// `time::uptime`.
pub fn calibrate(acpi: &crate::acpi::Acpi) -> Result<Rates, Error> {
    let (port, wide) = acpi.pm_timer.ok_or(Error::NoPmTimer)?;
    let rates = calibration::choose(&enumerated(), measure(port, wide)).map_err(Error::Window)?;
    crate::time::set_tsc_hz(rates.tsc_hz);
    LAPIC_HZ.store(rates.lapic_hz, Ordering::Relaxed);
    Ok(rates)
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
