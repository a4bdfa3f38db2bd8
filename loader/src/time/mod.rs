//! Time: time since boot from the TSC once its frequency is known, the
//! calibration and the tick (`timer`), the CMOS clock, and the watchdog of
//! test images.

#[cfg(feature = "ktest")]
pub mod cmos;
pub mod timer;
pub mod watchdog;

use core::sync::atomic::{AtomicU64, Ordering};

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static BOOT_TSC: AtomicU64 = AtomicU64::new(0);

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects; CR4.TSD is never set.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Records the TSC at the first Rust instruction, the zero of `uptime`.
pub fn mark_boot() {
    BOOT_TSC.store(rdtsc(), Ordering::Relaxed);
}

pub fn boot_tsc() -> u64 {
    BOOT_TSC.load(Ordering::Relaxed)
}

pub fn set_tsc_hz(hz: u64) {
    TSC_HZ.store(hz, Ordering::Relaxed);
}

pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Microseconds since boot; 0 until the TSC is calibrated.
pub fn uptime_us() -> u64 {
    match tsc_hz() {
        0 => 0,
        hz => ((rdtsc().wrapping_sub(boot_tsc())) as u128 * 1_000_000 / hz as u128) as u64,
    }
}

/// Busy-waits for `us` microseconds (after calibration).
pub fn delay_us(us: u64) {
    let hz = tsc_hz();
    assert!(hz != 0, "delay_us before TSC calibration");
    let end = rdtsc() + (us as u128 * hz as u128 / 1_000_000) as u64;
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Spins until `done` or `us` microseconds pass; true if done.
pub fn wait_until(us: u64, done: impl Fn() -> bool) -> bool {
    let end = rdtsc() + us * tsc_hz() / 1_000_000;
    while !done() {
        if rdtsc() > end {
            return done();
        }
        core::hint::spin_loop();
    }
    true
}
