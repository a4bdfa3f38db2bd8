//! The APIC timer in its three modes, on the clock of `clock()`: one count
//! at divide-by-1 takes 3 host TSC ticks.

use super::*;

const VECTOR: u8 = 0xec;
const PERIODIC: u32 = 1 << 17;
const DEADLINE: u32 = 2 << 17;

/// An unmasked timer in `mode` dividing by 1 (configuration 0b1011).
fn timer(mode: u32) -> Timer {
    let mut timer = Timer::new(clock());
    timer.write_lvt(mode | u32::from(VECTOR)).unwrap();
    timer.write_divide(0b1011, T0).unwrap();
    timer
}

#[test]
fn divide_configurations_decode_to_powers_of_two() {
    let table =
        [(0b0000, 2), (0b0001, 4), (0b0010, 8), (0b0011, 16), (0b1000, 32), (0b1001, 64), (0b1010, 128), (0b1011, 1)];
    for (config, expected) in table {
        assert_eq!(divisor(config), expected, "{config:#06b}");
        let mut t = Timer::new(clock());
        t.write_divide(config, T0).unwrap();
        assert_eq!(t.divisor(), expected);
    }
    assert_eq!(Timer::new(clock()).divisor(), 2, "reset divides by 2");
}

#[test]
fn one_shot_counts_down_fires_once_and_stops() {
    let mut t = timer(0);
    t.write_initial(100, T0);
    assert_eq!(t.next_deadline(), Some(T0 + 300));
    assert_eq!(t.current_count(T0), 100);
    assert_eq!(t.current_count(T0 + 150), 50);
    assert_eq!(t.current_count(T0 + 299), 1);
    assert_eq!(t.current_count(T0 + 300), 0);
    assert_eq!(t.expire(T0 + 299), None, "not yet due");
    assert_eq!(t.expire(T0 + 301), Some(VECTOR));
    assert_eq!((t.next_deadline(), t.current_count(T0 + 400), t.expire(T0 + 900)), (None, 0, None));
    assert_eq!(t.initial_count(), 100, "the initial count stays readable");
}

#[test]
fn the_divisor_scales_the_period() {
    for (config, divisor) in [(0b0000, 2u64), (0b0011, 16), (0b1010, 128)] {
        let mut t = timer(0);
        t.write_divide(config, T0).unwrap();
        t.write_initial(10, T0);
        assert_eq!(t.next_deadline(), Some(T0 + 10 * 3 * divisor));
        assert_eq!(t.current_count(T0 + 3 * divisor * 4), 6);
    }
}

#[test]
fn periodic_reloads_and_keeps_its_phase_when_expired_late() {
    let mut t = timer(PERIODIC);
    t.write_initial(100, T0);
    assert_eq!(t.expire(T0 + 300), Some(VECTOR));
    assert_eq!(t.next_deadline(), Some(T0 + 600));
    assert_eq!(t.current_count(T0 + 330), 90);
    // Expired 2.5 periods late: one interrupt, the next on the old grid.
    assert_eq!(t.expire(T0 + 600 + 750), Some(VECTOR));
    assert_eq!(t.next_deadline(), Some(T0 + 1500));
    assert_eq!(t.current_count(T0 + 1500 - 3), 1);
    // Without expire() calls the count still wraps period by period.
    assert_eq!(t.current_count(T0 + 1500 + 300 * 7 + 30), 90);
}

#[test]
fn a_masked_timer_counts_but_delivers_nothing() {
    let mut t = timer(PERIODIC);
    t.write_lvt(LVT_MASKED | PERIODIC | u32::from(VECTOR)).unwrap();
    t.write_initial(100, T0);
    assert_eq!(t.next_deadline(), None, "nothing to wake for");
    assert_eq!(t.current_count(T0 + 150), 50);
    assert_eq!(t.expire(T0 + 450), None);
    // Unmasked, it fires on its grid again.
    t.write_lvt(PERIODIC | u32::from(VECTOR)).unwrap();
    assert_eq!(t.next_deadline(), Some(T0 + 600));
    assert_eq!(t.expire(T0 + 600), Some(VECTOR));
}

#[test]
fn an_initial_count_of_0_stops_the_timer() {
    let mut t = timer(PERIODIC);
    t.write_initial(100, T0);
    t.write_initial(0, T0 + 30);
    assert_eq!((t.next_deadline(), t.current_count(T0 + 60), t.expire(T0 + 1000)), (None, 0, None));
}

#[test]
fn a_new_initial_count_restarts_from_now() {
    let mut t = timer(0);
    t.write_initial(100, T0);
    t.write_initial(10, T0 + 200);
    assert_eq!(t.next_deadline(), Some(T0 + 230));
}

#[test]
fn a_divide_change_keeps_the_count_and_changes_the_rate() {
    let mut t = timer(PERIODIC);
    t.write_initial(100, T0);
    t.write_divide(0b0000, T0 + 120).unwrap(); // 40 counts done, now by 2
    assert_eq!(t.current_count(T0 + 120), 60);
    assert_eq!(t.next_deadline(), Some(T0 + 120 + 60 * 6));
    assert_eq!(t.expire(T0 + 480), Some(VECTOR));
    assert_eq!(t.next_deadline(), Some(T0 + 480 + 100 * 6), "reloads the full initial count");
}

#[test]
fn rounding_puts_the_deadline_where_the_count_is_0() {
    // APIC clock 3x the TSC: 10 counts take 3 1/3 ticks, rounded up to 4.
    let mut t = Timer::new(clock_of(3_000_000, 1_000_000));
    t.write_lvt(u32::from(VECTOR)).unwrap();
    t.write_divide(0b1011, T0).unwrap();
    t.write_initial(10, T0);
    assert_eq!(t.next_deadline(), Some(T0 + 4));
    assert_eq!(t.current_count(T0 + 3), 1);
    assert_eq!(t.current_count(T0 + 4), 0);
}

#[test]
fn large_counts_and_rates_do_not_overflow() {
    // 25 MHz crystal, 3.5 GHz TSC, the longest count at divide-by-128.
    let mut t = Timer::new(clock_of(25_000_000, 3_500_000_000));
    t.write_lvt(u32::from(VECTOR)).unwrap();
    t.write_divide(0b1010, T0).unwrap();
    t.write_initial(u32::MAX, T0);
    let ticks = (u128::from(u32::MAX) * 128 * 3_500_000_000).div_ceil(25_000_000) as u64;
    assert_eq!(t.next_deadline(), Some(T0 + ticks));
    assert_eq!(t.current_count(T0 + ticks / 2), u32::MAX / 2 + 1);
    assert_eq!(t.current_count(u64::MAX), 0);
}

#[test]
fn tsc_deadline_fires_at_its_deadline_and_disarms() {
    let mut t = timer(DEADLINE);
    assert_eq!(t.mode(), TimerMode::TscDeadline);
    assert_eq!(t.next_deadline(), None);
    t.write_deadline(T0 + 5000, T0);
    assert_eq!((t.next_deadline(), t.read_deadline()), (Some(T0 + 5000), T0 + 5000));
    assert_eq!(t.current_count(T0), 0, "no count in TSC-deadline mode");
    assert_eq!(t.expire(T0 + 4999), None);
    assert_eq!(t.expire(T0 + 5000), Some(VECTOR));
    assert_eq!((t.next_deadline(), t.read_deadline(), t.expire(T0 + 9000)), (None, 0, None));
}

#[test]
fn tsc_deadline_rearms_disarms_and_fires_at_once_when_past() {
    let mut t = timer(DEADLINE);
    t.write_deadline(T0 + 5000, T0);
    t.write_deadline(T0 + 8000, T0 + 10);
    assert_eq!(t.next_deadline(), Some(T0 + 8000), "a new deadline replaces the old");
    t.write_deadline(0, T0 + 20);
    assert_eq!((t.next_deadline(), t.read_deadline(), t.expire(T0 + 9000)), (None, 0, None));
    t.write_deadline(T0 - 50, T0);
    assert_eq!(t.next_deadline(), Some(T0), "already passed: due now");
    assert_eq!(t.expire(T0), Some(VECTOR));
}

#[test]
fn tsc_deadline_is_in_guest_time() {
    let mut t = timer(DEADLINE);
    t.set_tsc_offset(1_000_000_000);
    t.write_deadline(1_000_000_000 + T0 + 700, T0);
    assert_eq!(t.next_deadline(), Some(T0 + 700));
    assert_eq!(t.read_deadline(), 1_000_000_000 + T0 + 700);
    // A negative offset: the guest's TSC is behind the host's.
    t.set_tsc_offset(0u64.wrapping_sub(T0 / 2));
    t.write_deadline(T0 / 2 + 10, T0);
    assert_eq!(t.next_deadline(), Some(T0 + 10));
}

#[test]
fn mode_rules_for_the_other_registers() {
    // TSC-deadline mode ignores the initial count ...
    let mut t = timer(DEADLINE);
    t.write_initial(100, T0);
    assert_eq!((t.initial_count(), t.next_deadline()), (0, None));
    // ... and the other modes ignore IA32_TSC_DEADLINE, which reads 0.
    let mut t = timer(0);
    t.write_deadline(T0 + 10, T0);
    assert_eq!((t.read_deadline(), t.next_deadline()), (0, None));
}

#[test]
fn switching_into_or_out_of_tsc_deadline_mode_disarms() {
    let mut t = timer(0);
    t.write_initial(100, T0);
    t.write_lvt(DEADLINE | u32::from(VECTOR)).unwrap();
    assert_eq!((t.initial_count(), t.next_deadline()), (0, None));
    t.write_deadline(T0 + 50, T0);
    t.write_lvt(PERIODIC | u32::from(VECTOR)).unwrap();
    assert_eq!((t.read_deadline(), t.next_deadline()), (0, None));
    // One-shot to periodic keeps counting; the reload follows the new mode.
    t.write_lvt(u32::from(VECTOR)).unwrap();
    t.write_initial(100, T0);
    t.write_lvt(PERIODIC | u32::from(VECTOR)).unwrap();
    assert_eq!(t.expire(T0 + 300), Some(VECTOR));
    assert_eq!(t.next_deadline(), Some(T0 + 600));
}

#[test]
fn the_lapic_delivers_expiries_into_the_irr() {
    let mut apic = enabled(0);
    assert_eq!(write(&mut apic, MSR_TIMER_DIVIDE, 0b1011), Effect::TimerChanged);
    assert_eq!(write(&mut apic, MSR_LVT_TIMER, u64::from(VECTOR)), Effect::TimerChanged);
    assert_eq!(write(&mut apic, MSR_TIMER_INITIAL, 100), Effect::TimerChanged);
    assert_eq!(apic.next_timer_deadline(), Some(T0 + 300));
    assert_eq!(apic.read_msr(MSR_TIMER_CURRENT, T0 + 30), Ok(90));
    assert!(!apic.expire_timer(T0 + 299));
    assert!(apic.expire_timer(T0 + 300));
    assert_eq!(apic.pending(), Some(VECTOR));
    assert_eq!(apic.next_timer_deadline(), None);
}

#[test]
fn any_access_after_the_deadline_delivers_the_expiry_first() {
    let mut apic = enabled(0);
    write(&mut apic, MSR_LVT_TIMER, u64::from(DEADLINE | u32::from(VECTOR)));
    assert_eq!(write(&mut apic, MSR_TSC_DEADLINE, T0 + 100), Effect::TimerChanged);
    assert_eq!(apic.read_msr(MSR_TSC_DEADLINE, T0 + 99), Ok(T0 + 100));
    // The guest polls its IRR past the deadline before the VMM's host
    // timer fired: the interrupt is already there.
    assert_eq!(apic.read_msr(MSR_IRR0 + 7, T0 + 100), Ok(1 << 12));
    assert_eq!(apic.read_msr(MSR_TSC_DEADLINE, T0 + 100), Ok(0));
    // Rearming after it fired works through the MSR as well.
    write(&mut apic, MSR_TSC_DEADLINE, T0 + 500);
    assert_eq!(apic.next_timer_deadline(), Some(T0 + 500));
    write(&mut apic, MSR_TSC_DEADLINE, 0);
    assert_eq!(apic.next_timer_deadline(), None);
}
