//! Choosing the TSC and APIC-timer rates.
//!
//! The kernel measures both against the ACPI PM timer over a short window
//! (about 1 ms instead of a long spin) and reads what CPUID enumerates:
//! leaf 0x15 (TSC/crystal ratio and the crystal rate, which also clocks the
//! APIC timer, SDM Vol. 3A 11.5.4), leaf 0x16 (nominal base MHz) and the
//! hypervisor timing leaf 0x40000010 (TSC and APIC bus kHz). An enumerated
//! rate is exact where it is true, but emulators enumerate rates their
//! clocks do not keep (Bochs' Skylake model says 3.5 GHz and ticks once per
//! emulated instruction), so a CPUID rate is taken only when the window
//! measurement agrees with it; otherwise the measurement stands.

/// The ACPI PM timer's fixed rate (ACPI 6.5, 4.8.3.3).
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// The measurement window: 1 ms of PM-timer ticks. Its resolution (one PM
/// tick, 0.03%) is far inside the 5% the timers promise, so no longer
/// refinement is needed.
pub const WINDOW_PM_TICKS: u64 = PM_TIMER_HZ / 1000;
/// A reading of the TSC and APIC timer is taken between two PM-timer
/// reads at most this far apart (18 ticks, 5 us), so each end of the window
/// is placed within 0.5% of it; an emulator that stalls between the reads
/// is read again, up to `SAMPLE_TRIES` times (then the closest pair wins).
pub const MAX_SAMPLE_SPREAD: u32 = 18;
pub const SAMPLE_TRIES: u32 = 16;
/// How far (in parts per thousand) an enumerated rate may be from the
/// measurement and still be taken.
pub const AGREE_PERMILLE: u64 = 20;
/// The loader runs the APIC timer divided by 16.
pub const APIC_DIVIDE: u64 = 16;
/// The hypervisor timing leaf (VMware's convention, also KVM's and QEMU's).
pub const HV_TIMING_LEAF: u32 = 0x4000_0010;

/// What CPUID enumerates about the clocks; `None` where a leaf is absent
/// or reports zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Enumerated {
    /// Leaf 0x15: EAX (denominator), EBX (numerator), ECX (crystal Hz).
    pub leaf15: Option<(u32, u32, u32)>,
    /// Leaf 0x16 EAX: processor base frequency in MHz.
    pub base_mhz: Option<u32>,
    /// Leaf 0x40000010 EAX, EBX: TSC and APIC bus frequency in kHz.
    pub hv_khz: Option<(u32, u32)>,
}

/// One window: PM-timer ticks elapsed and the TSC and APIC-timer ticks
/// (divided by 16) counted meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub pm_ticks: u64,
    pub tsc: u64,
    pub apic: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Measured,
    Leaf15,
    Leaf16,
    Hypervisor,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Measured => "PM-timer window",
            Source::Leaf15 => "CPUID 0x15",
            Source::Leaf16 => "CPUID 0x16",
            Source::Hypervisor => "CPUID 0x40000010",
        }
    }
}

/// The rates chosen and where each came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rates {
    pub tsc_hz: u64,
    pub tsc_source: Source,
    /// The APIC timer's rate after the divide-by-16.
    pub lapic_hz: u64,
    pub lapic_source: Source,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The window saw no PM-timer ticks (or no TSC ticks): nothing to scale.
    EmptyWindow,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::EmptyWindow => write!(f, "the calibration window counted no PM-timer or TSC ticks"),
        }
    }
}

/// Scales a window to rates per second.
pub fn measured(w: Window) -> Result<(u64, u64), Error> {
    if w.pm_ticks == 0 || w.tsc == 0 {
        return Err(Error::EmptyWindow);
    }
    let scale = |n: u64| (n as u128 * PM_TIMER_HZ as u128 / w.pm_ticks as u128) as u64;
    Ok((scale(w.tsc), scale(w.apic)))
}

/// TSC rates CPUID enumerates, most exact first.
fn tsc_candidates(e: &Enumerated) -> [Option<(u64, Source)>; 3] {
    let hv = e.hv_khz.map(|(tsc, _)| (tsc as u64 * 1000, Source::Hypervisor));
    let l15 = e.leaf15.and_then(|(den, num, crystal)| {
        (den != 0 && num != 0 && crystal != 0).then(|| (crystal as u64 * num as u64 / den as u64, Source::Leaf15))
    });
    let l16 = e.base_mhz.map(|mhz| (mhz as u64 * 1_000_000, Source::Leaf16));
    [hv, l15, l16]
}

/// APIC-timer rates (after the divide) CPUID enumerates, most exact first.
fn lapic_candidates(e: &Enumerated) -> [Option<(u64, Source)>; 2] {
    let hv = e.hv_khz.and_then(|(_, bus)| (bus != 0).then(|| (bus as u64 * 1000 / APIC_DIVIDE, Source::Hypervisor)));
    let l15 =
        e.leaf15.and_then(|(_, _, crystal)| (crystal != 0).then_some((crystal as u64 / APIC_DIVIDE, Source::Leaf15)));
    [hv, l15]
}

fn agrees(enumerated: u64, measured: u64) -> bool {
    enumerated != 0 && enumerated.abs_diff(measured) as u128 * 1000 <= measured as u128 * AGREE_PERMILLE as u128
}

fn pick(candidates: &[Option<(u64, Source)>], measured: u64) -> (u64, Source) {
    candidates.iter().flatten().copied().find(|&(hz, _)| agrees(hz, measured)).unwrap_or((measured, Source::Measured))
}

/// The rates to use: an enumerated one where it agrees with the window,
/// else the window's.
pub fn choose(e: &Enumerated, w: Window) -> Result<Rates, Error> {
    let (tsc, lapic) = measured(w)?;
    let (tsc_hz, tsc_source) = pick(&tsc_candidates(e), tsc);
    let (lapic_hz, lapic_source) = pick(&lapic_candidates(e), lapic);
    Ok(Rates { tsc_hz, tsc_source, lapic_hz, lapic_source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1 ms window of a CPU whose TSC runs at `tsc_hz` and APIC bus at
    /// `bus_hz`.
    fn window(tsc_hz: u64, bus_hz: u64) -> Window {
        let pm = WINDOW_PM_TICKS;
        Window { pm_ticks: pm, tsc: tsc_hz * pm / PM_TIMER_HZ, apic: bus_hz / APIC_DIVIDE * pm / PM_TIMER_HZ }
    }

    #[test]
    fn without_cpuid_the_window_is_scaled() {
        let r = choose(&Enumerated::default(), window(1_000_000_000, 1_000_000_000)).unwrap();
        assert_eq!(r.tsc_source, Source::Measured);
        assert_eq!(r.lapic_source, Source::Measured);
        assert!(r.tsc_hz.abs_diff(1_000_000_000) < 1_000_000, "{r:?}");
        assert!(r.lapic_hz.abs_diff(62_500_000) < 100_000, "{r:?}");
    }

    #[test]
    fn leaf15_gives_tsc_and_apic_rates() {
        // 24 MHz crystal, TSC = crystal * 125 / 2 = 1.5 GHz.
        let e = Enumerated { leaf15: Some((2, 125, 24_000_000)), ..Default::default() };
        let r = choose(&e, window(1_500_300_000, 24_001_000)).unwrap();
        assert_eq!((r.tsc_hz, r.tsc_source), (1_500_000_000, Source::Leaf15));
        assert_eq!((r.lapic_hz, r.lapic_source), (1_500_000, Source::Leaf15));
    }

    #[test]
    fn leaf15_without_crystal_falls_to_leaf16_for_the_tsc() {
        let e = Enumerated { leaf15: Some((2, 125, 0)), base_mhz: Some(2_000), hv_khz: None };
        let r = choose(&e, window(2_001_000_000, 100_000_000)).unwrap();
        assert_eq!((r.tsc_hz, r.tsc_source), (2_000_000_000, Source::Leaf16));
        assert_eq!(r.lapic_source, Source::Measured);
    }

    #[test]
    fn hypervisor_leaf_comes_first() {
        let e = Enumerated {
            leaf15: Some((2, 125, 24_000_000)),
            base_mhz: Some(1_500),
            hv_khz: Some((1_499_900, 1_000_000)),
        };
        let r = choose(&e, window(1_500_000_000, 1_000_000_000)).unwrap();
        assert_eq!((r.tsc_hz, r.tsc_source), (1_499_900_000, Source::Hypervisor));
        assert_eq!((r.lapic_hz, r.lapic_source), (62_500_000, Source::Hypervisor));
    }

    #[test]
    fn an_emulator_enumerating_a_rate_it_does_not_keep_is_measured() {
        // Bochs: 3.5 GHz enumerated, 50 M ticks a second kept.
        let e = Enumerated { base_mhz: Some(3_500), leaf15: Some((2, 292, 24_000_000)), hv_khz: None };
        let r = choose(&e, window(50_000_000, 50_000_000)).unwrap();
        assert_eq!(r.tsc_source, Source::Measured);
        assert_eq!(r.lapic_source, Source::Measured);
        assert!(r.tsc_hz.abs_diff(50_000_000) < 50_000, "{r:?}");
    }

    #[test]
    fn agreement_is_two_percent_either_way() {
        assert!(agrees(1_020, 1_000));
        assert!(agrees(980, 1_000));
        assert!(!agrees(1_021, 1_000));
        assert!(!agrees(979, 1_000));
        assert!(!agrees(0, 0));
    }

    #[test]
    fn an_empty_window_is_an_error() {
        assert_eq!(measured(Window { pm_ticks: 0, tsc: 5, apic: 5 }), Err(Error::EmptyWindow));
        assert_eq!(measured(Window { pm_ticks: 5, tsc: 0, apic: 5 }), Err(Error::EmptyWindow));
    }
}
