//! Ends a run that stops making progress: the boot CPU's tick checks a
//! deadline that test code moves forward with `pet()`.

use core::sync::atomic::{AtomicU64, Ordering};
use loader_core::power::exit::Status;

use crate::time::timer::TICK_HZ;

/// Seconds allowed between two `pet()` calls; 0 disables the watchdog.
static PERIOD_SECS: AtomicU64 = AtomicU64::new(0);
/// Tick count after which the watchdog fires.
static DEADLINE: AtomicU64 = AtomicU64::new(u64::MAX);

pub fn arm(secs: u64) {
    PERIOD_SECS.store(secs, Ordering::Relaxed);
    pet();
}

pub fn pet() {
    let secs = PERIOD_SECS.load(Ordering::Relaxed);
    let deadline = if secs == 0 { u64::MAX } else { crate::time::timer::ticks() + secs * TICK_HZ };
    DEADLINE.store(deadline, Ordering::Relaxed);
}

/// Called from the boot CPU's tick with interrupts off.
pub fn check(now: u64) {
    if now > DEADLINE.load(Ordering::Relaxed) {
        crate::console::enter_panic();
        crate::println!(
            "watchdog: no progress for {} s (cpu {}); giving up",
            PERIOD_SECS.load(Ordering::Relaxed),
            crate::cpu::percpu::current_id()
        );
        crate::power::exit(Status::Watchdog);
    }
}
