//! Host tests of the virtual x2APIC, one file per part, with explicit
//! clocks: every time is a host TSC value the test chooses.

mod icr;
mod irq;
mod regs;
mod timer;
mod virt;

use super::*;
use core::num::NonZeroU64;

/// A 1 MHz APIC timer input and a 3 MHz TSC: one count at divide-by-1 is
/// three TSC ticks, so deadlines are easy to work out by hand.
fn clock() -> Clock {
    clock_of(1_000_000, 3_000_000)
}

fn clock_of(apic_hz: u64, tsc_hz: u64) -> Clock {
    Clock { apic_hz: NonZeroU64::new(apic_hz).unwrap(), tsc_hz: NonZeroU64::new(tsc_hz).unwrap() }
}

/// An arbitrary host time the tests start at, far from 0 so that nothing
/// depends on saturating at the origin.
const T0: u64 = 1_000_000;

/// A reset APIC with ID `id`, software-enabled through the SVR.
fn enabled(id: u32) -> Lapic {
    let mut apic = Lapic::new(id, clock());
    assert_eq!(apic.write_msr(MSR_SVR, u64::from(SVR_ENABLE | 0xff), T0), Ok(Effect::None));
    apic
}

fn read(apic: &mut Lapic, msr: u32) -> u64 {
    apic.read_msr(msr, T0).unwrap_or_else(|f| panic!("{f}"))
}

fn write(apic: &mut Lapic, msr: u32, value: u64) -> Effect {
    apic.write_msr(msr, value, T0).unwrap_or_else(|f| panic!("{f}"))
}
