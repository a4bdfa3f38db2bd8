//! `timer`: the x2APIC timer on vCPU 0 (others park) in its three modes,
//! each waited for with `sti; hlt`, timed with the TSC and the kHz of
//! CPUID 0x40000010 (exit 2 without that leaf): one-shot (10 ms, fires
//! once, counts down to 0), periodic (5 ms, 5 periods, stops when
//! stopped) and TSC-deadline (10 ms, not before its deadline, the MSR
//! reads 0 afterwards, a deadline written 0 never fires) when CPUID.1:ECX
//! bit 24 offers it. Exits 0 if all hold, 1 otherwise.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use test_guests::check::Checks;
use test_guests::hv::{self, Frequencies, LEAF1_ECX_TSC_DEADLINE};
use test_guests::idt::{self, Frame};
use test_guests::smp::{halt_until, spin_for};
use test_guests::x2apic::{self, TimerMode};
use test_guests::{cpu, println, status, Start};

test_guests::guest!(check_timer);

const VECTOR: u8 = 0x50;
const ONE_SHOT_US: u64 = 10_000;
const PERIOD_US: u64 = 5_000;
const PERIODS: u32 = 5;
const DEADLINE_US: u64 = 10_000;
/// How long nothing may fire after a timer is done.
const QUIET_US: u64 = 20_000;

static FIRES: AtomicU32 = AtomicU32::new(0);
/// The TSC when the last interrupt arrived.
static LAST: AtomicU64 = AtomicU64::new(0);

fn on_timer(_: &mut Frame) {
    LAST.store(cpu::rdtsc(), Ordering::Release);
    FIRES.fetch_add(1, Ordering::AcqRel);
    x2apic::eoi();
}

/// Whether `us` measured fits a wait of `expected_us`: not before half of
/// it (the TSC and APIC rates the VMM reports may differ a little), and
/// not later than 50 times it plus 200 ms (an emulated, loaded host is
/// slow, but a timer that never fires on time is not).
fn roughly(us: u64, expected_us: u64) -> bool {
    us >= expected_us / 2 && us <= expected_us * 50 + 200_000
}

/// Clears the counters and returns the TSC to measure from.
fn reset() -> u64 {
    FIRES.store(0, Ordering::Release);
    LAST.store(0, Ordering::Release);
    cpu::rdtsc()
}

fn fires() -> u32 {
    FIRES.load(Ordering::Acquire)
}

fn check_timer(start: &Start) -> u32 {
    if start.vcpu != 0 {
        test_guests::park();
    }
    let Some(f) = hv::frequencies().filter(|f| f.tsc_khz != 0 && f.apic_khz != 0) else {
        println!("timer: cpuid 0x40000010 gives no tsc and apic timer kHz; cannot time anything");
        return status::UNSUPPORTED;
    };
    idt::install();
    idt::set_handler(VECTOR, on_timer);
    x2apic::enable();
    x2apic::divide_by_1();
    let mut checks = Checks::new("timer");
    checks.note(format_args!("tsc {} kHz, apic timer {} kHz", f.tsc_khz, f.apic_khz));
    one_shot(&mut checks, &f);
    periodic(&mut checks, &f);
    if hv::leaf1_ecx() & LEAF1_ECX_TSC_DEADLINE != 0 {
        tsc_deadline(&mut checks, &f);
    } else {
        checks.note(format_args!("tsc-deadline: not offered (cpuid 1 ecx bit 24 clear), skipped"));
    }
    x2apic::set_timer(TimerMode::OneShot, VECTOR, true);
    checks.finish()
}

/// The initial count for `us` microseconds, or a failed check.
fn count_for(checks: &mut Checks, f: &Frequencies, us: u64) -> Option<u32> {
    let count = u32::try_from(f.apic_ticks(us)).ok();
    if count.is_none() {
        checks.check(false, format_args!("{us} us at {} kHz fits the 32-bit initial count", f.apic_khz));
    }
    count
}

fn one_shot(checks: &mut Checks, f: &Frequencies) {
    let Some(count) = count_for(checks, f, ONE_SHOT_US) else { return };
    x2apic::set_timer(TimerMode::OneShot, VECTOR, false);
    let t0 = reset();
    x2apic::start_count(count);
    halt_until(|| fires() >= 1);
    let us = f.tsc_us(LAST.load(Ordering::Acquire).wrapping_sub(t0));
    checks.check(
        roughly(us, ONE_SHOT_US),
        format_args!("one-shot: {ONE_SHOT_US} us (count {count}) fired after {us} us"),
    );
    let left = x2apic::current_count();
    checks.check(left == 0, format_args!("one-shot: the current count is {left} after it fired"));
    spin_for(f.tsc_ticks(QUIET_US));
    let n = fires();
    checks.check(n == 1, format_args!("one-shot: fired {n} time(s) in {QUIET_US} us more"));
}

fn periodic(checks: &mut Checks, f: &Frequencies) {
    let Some(count) = count_for(checks, f, PERIOD_US) else { return };
    x2apic::set_timer(TimerMode::Periodic, VECTOR, false);
    let t0 = reset();
    x2apic::start_count(count);
    halt_until(|| fires() >= PERIODS);
    let running = x2apic::current_count();
    let us = f.tsc_us(LAST.load(Ordering::Acquire).wrapping_sub(t0));
    // Stop it: masked, and a zero initial count (SDM Vol. 3A, 11.5.4).
    x2apic::set_timer(TimerMode::Periodic, VECTOR, true);
    x2apic::start_count(0);
    let at_stop = fires();
    let expected = PERIOD_US * u64::from(PERIODS);
    checks.check(
        roughly(us, expected),
        format_args!("periodic: {PERIODS} periods of {PERIOD_US} us (count {count}) took {us} us"),
    );
    checks.check(
        running <= count,
        format_args!("periodic: the current count {running} is at most the initial {count} while it runs"),
    );
    spin_for(f.tsc_ticks(QUIET_US));
    let n = fires();
    checks.check(n == at_stop, format_args!("periodic: stopped after {at_stop} fires, {n} after {QUIET_US} us more"));
}

fn tsc_deadline(checks: &mut Checks, f: &Frequencies) {
    x2apic::set_timer(TimerMode::TscDeadline, VECTOR, false);
    // The LVT write must be seen before the deadline write (SDM Vol. 3A,
    // 11.5.4.1).
    cpu::mfence();
    let t0 = reset();
    let deadline = t0 + f.tsc_ticks(DEADLINE_US);
    x2apic::set_tsc_deadline(deadline);
    halt_until(|| fires() >= 1);
    let at = LAST.load(Ordering::Acquire);
    checks.check(
        at >= deadline,
        format_args!("tsc-deadline: fired at tsc {at:#x}, not before the deadline {deadline:#x}"),
    );
    let us = f.tsc_us(at.wrapping_sub(t0));
    checks.check(roughly(us, DEADLINE_US), format_args!("tsc-deadline: {DEADLINE_US} us deadline fired after {us} us"));
    let after = x2apic::tsc_deadline();
    checks.check(after == 0, format_args!("tsc-deadline: ia32_tsc_deadline reads {after:#x} after it fired"));

    reset();
    x2apic::set_tsc_deadline(cpu::rdtsc() + f.tsc_ticks(DEADLINE_US));
    x2apic::set_tsc_deadline(0);
    spin_for(f.tsc_ticks(DEADLINE_US + QUIET_US));
    let n = fires();
    checks.check(n == 0, format_args!("tsc-deadline: a deadline disarmed with 0 fired {n} time(s)"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rough_timing() {
        assert!(roughly(10_000, 10_000));
        assert!(roughly(5_000, 10_000));
        assert!(!roughly(4_999, 10_000), "early");
        assert!(roughly(700_000, 10_000));
        assert!(!roughly(700_001, 10_000), "far too late");
        assert!(!roughly(0, 10_000), "at once");
    }
}
