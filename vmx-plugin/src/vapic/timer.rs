//! The APIC timer (SDM vol. 3A "APIC Timer", "TSC-Deadline Mode"), kept in
//! host TSC ticks: the VMM passes the host TSC as `now`, arms a host timer
//! or the VMX preemption timer for [`Timer::next_deadline`], and calls
//! [`Timer::expire`] when it fires. Between those calls nothing runs: the
//! current count is computed from the time its count was loaded.
//!
//! Callers call `expire(now)` before any other change at `now`, so that an
//! expiry already due is delivered under the old settings
//! ([`crate::vapic::Lapic`] does).

use core::num::NonZeroU64;

use super::regs::{LVT_MASKED, LVT_VECTOR, MSR_LVT_TIMER, MSR_TIMER_DIVIDE};
use super::Fault;

/// LVT timer bits 18:17.
const MODE_SHIFT: u32 = 17;
const MODE_BITS: u32 = 0b11 << MODE_SHIFT;
/// LVT timer bits software may set: vector, mask, mode. Bit 12 (delivery
/// status) is read-only and ignored on write.
const LVT_WRITABLE: u32 = LVT_VECTOR | LVT_MASKED | MODE_BITS;
const LVT_STATUS: u32 = 1 << 12;
/// Divide configuration bits 0, 1 and 3; the rest are reserved.
const DIVIDE_WRITABLE: u32 = 0b1011;

/// The rates that relate APIC timer counts to host TSC ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// The APIC timer's input clock before the divider (the core crystal
    /// or bus clock the guest is told about, e.g. through CPUID 0x15).
    pub apic_hz: NonZeroU64,
    /// The host TSC rate.
    pub tsc_hz: NonZeroU64,
}

impl Clock {
    /// Host TSC ticks `counts` timer counts at divisor `divide` take,
    /// rounded up so that the count has reached 0 at the deadline.
    fn tsc_for(&self, counts: u64, divide: u32) -> u64 {
        let num = u128::from(counts) * u128::from(divide);
        let num = num.saturating_mul(u128::from(self.tsc_hz.get()));
        let apic = u128::from(self.apic_hz.get());
        u64::try_from(num.div_ceil(apic)).unwrap_or(u64::MAX)
    }

    /// Whole timer counts elapsed in `tsc` host ticks at divisor `divide`.
    fn counts_in(&self, tsc: u64, divide: u32) -> u64 {
        let num = u128::from(tsc).saturating_mul(u128::from(self.apic_hz.get()));
        let den = u128::from(self.tsc_hz.get()) * u128::from(divide);
        u64::try_from(num / den).unwrap_or(u64::MAX)
    }
}

/// LVT timer bits 18:17 (SDM table "Local Vector Table").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerMode {
    OneShot,
    Periodic,
    /// Counts nothing; fires when the TSC reaches IA32_TSC_DEADLINE.
    TscDeadline,
}

/// The divisor a divide configuration value selects: bits 3,1,0 = 000
/// divide by 2, 001 by 4, ..., 110 by 128, 111 by 1 (SDM figure "Divide
/// Configuration Register").
pub fn divisor(divide_config: u32) -> u32 {
    let code = (divide_config >> 1 & 0b100) | (divide_config & 0b11);
    if code == 0b111 {
        1
    } else {
        2 << code
    }
}

/// One vCPU's APIC timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    clock: Clock,
    /// Guest TSC = host TSC + `tsc_offset` (wrapping), as the VMCS TSC
    /// offset makes it; IA32_TSC_DEADLINE holds guest TSC values.
    tsc_offset: u64,
    lvt: u32,
    divide_config: u32,
    initial: u32,
    /// One-shot and periodic: the count `loaded_count` was current at host
    /// TSC `loaded_at`; 0 means the timer is not counting. Periodic mode
    /// reloads `initial` each time the count reaches 0.
    loaded_at: u64,
    loaded_count: u32,
    /// TSC-deadline: the host TSC at which it fires and the guest value the
    /// MSR reads back; `None` is disarmed.
    deadline: Option<(u64, u64)>,
}

impl Timer {
    /// The reset state: masked one-shot, count 0, divide by 2 (SDM "Local
    /// APIC State After Power-Up or Reset").
    pub fn new(clock: Clock) -> Timer {
        Timer {
            clock,
            tsc_offset: 0,
            lvt: LVT_MASKED,
            divide_config: 0,
            initial: 0,
            loaded_at: 0,
            loaded_count: 0,
            deadline: None,
        }
    }

    /// Back to the reset state, keeping the clock and TSC offset (INIT).
    pub fn reset(&mut self) {
        *self = Timer { tsc_offset: self.tsc_offset, ..Timer::new(self.clock) };
    }

    /// Sets the guest's TSC offset; set it before the guest arms a
    /// deadline, as an armed deadline keeps its host time.
    pub fn set_tsc_offset(&mut self, offset: u64) {
        self.tsc_offset = offset;
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    pub fn lvt(&self) -> u32 {
        self.lvt
    }

    pub fn mode(&self) -> TimerMode {
        match (self.lvt & MODE_BITS) >> MODE_SHIFT {
            0 => TimerMode::OneShot,
            1 => TimerMode::Periodic,
            _ => TimerMode::TscDeadline,
        }
    }

    pub fn masked(&self) -> bool {
        self.lvt & LVT_MASKED != 0
    }

    pub fn vector(&self) -> u8 {
        self.lvt as u8
    }

    pub fn initial_count(&self) -> u32 {
        self.initial
    }

    pub fn divide_config(&self) -> u32 {
        self.divide_config
    }

    pub fn divisor(&self) -> u32 {
        divisor(self.divide_config)
    }

    /// Writes the LVT timer register. Mode 0b11 is reserved and faults.
    /// Switching into or out of TSC-deadline mode disarms the timer (SDM
    /// "TSC-Deadline Mode"); one-shot and periodic switch without a
    /// restart, the new mode applying when the count reaches 0.
    pub fn write_lvt(&mut self, value: u32) -> Result<(), Fault> {
        if value & !(LVT_WRITABLE | LVT_STATUS) != 0 || value & MODE_BITS == MODE_BITS {
            return Err(Fault::Reserved { msr: MSR_LVT_TIMER, value: value.into() });
        }
        let was_deadline = self.mode() == TimerMode::TscDeadline;
        self.lvt = value & LVT_WRITABLE;
        if was_deadline != (self.mode() == TimerMode::TscDeadline) {
            self.initial = 0;
            self.loaded_count = 0;
            self.deadline = None;
        }
        Ok(())
    }

    /// Sets the mask bit without a write's checks: a software-disabled
    /// APIC masks every LVT (SDM "Software Enabling/Disabling").
    pub fn mask(&mut self) {
        self.lvt |= LVT_MASKED;
    }

    /// Writes the initial count: counting restarts from it at `now`, and 0
    /// stops the timer. Ignored in TSC-deadline mode.
    pub fn write_initial(&mut self, count: u32, now: u64) {
        if self.mode() == TimerMode::TscDeadline {
            return;
        }
        self.initial = count;
        self.loaded_at = now;
        self.loaded_count = count;
    }

    /// Writes the divide configuration. A running count keeps its value
    /// and continues at the new rate (the SDM does not say; this is what a
    /// guest changing the rate mid-count can least be surprised by).
    pub fn write_divide(&mut self, value: u32, now: u64) -> Result<(), Fault> {
        if value & !DIVIDE_WRITABLE != 0 {
            return Err(Fault::Reserved { msr: MSR_TIMER_DIVIDE, value: value.into() });
        }
        let remaining = self.current_count(now);
        self.divide_config = value;
        if self.loaded_count != 0 && remaining != 0 {
            self.loaded_at = now;
            self.loaded_count = remaining;
        }
        Ok(())
    }

    /// Writes IA32_TSC_DEADLINE (a guest TSC value): 0 disarms, a value
    /// already reached fires at the next [`Timer::expire`]. Ignored unless
    /// in TSC-deadline mode (SDM "TSC-Deadline Mode").
    pub fn write_deadline(&mut self, guest_tsc: u64, now: u64) {
        if self.mode() != TimerMode::TscDeadline {
            return;
        }
        if guest_tsc == 0 {
            self.deadline = None;
            return;
        }
        // Compared in guest time, so a deadline before the guest's TSC
        // origin cannot wrap into the far future in host time.
        let guest_now = now.wrapping_add(self.tsc_offset);
        let host = now.saturating_add(guest_tsc.saturating_sub(guest_now));
        self.deadline = Some((host, guest_tsc));
    }

    /// What IA32_TSC_DEADLINE reads: the armed guest deadline, else 0 (also
    /// after it fired, and in the other modes).
    pub fn read_deadline(&self) -> u64 {
        match (self.mode(), self.deadline) {
            (TimerMode::TscDeadline, Some((_, guest))) => guest,
            _ => 0,
        }
    }

    /// The current count at `now`; always 0 in TSC-deadline mode.
    pub fn current_count(&self, now: u64) -> u32 {
        if self.loaded_count == 0 || self.mode() == TimerMode::TscDeadline {
            return 0;
        }
        let elapsed = self.clock.counts_in(now.saturating_sub(self.loaded_at), self.divisor());
        let loaded = u64::from(self.loaded_count);
        if elapsed < loaded {
            return (loaded - elapsed) as u32;
        }
        match self.mode() {
            // Each time the count reaches 0 it reloads the initial count.
            TimerMode::Periodic if self.initial != 0 => {
                self.initial - ((elapsed - loaded) % u64::from(self.initial)) as u32
            }
            _ => 0,
        }
    }

    /// The host TSC at which the timer next fires, if armed and unmasked:
    /// a masked timer delivers nothing, so there is nothing to wake for
    /// (its count is computed on demand all the same).
    pub fn next_deadline(&self) -> Option<u64> {
        if self.masked() {
            return None;
        }
        self.due()
    }

    /// The next expiry, masked or not.
    fn due(&self) -> Option<u64> {
        match self.mode() {
            TimerMode::TscDeadline => self.deadline.map(|(host, _)| host),
            _ if self.loaded_count == 0 => None,
            _ => Some(self.loaded_at.saturating_add(self.period(self.loaded_count))),
        }
    }

    fn period(&self, counts: u32) -> u64 {
        self.clock.tsc_for(counts.into(), self.divisor()).max(1)
    }

    /// Handles an expiry due at or before `now`: one-shot stops, periodic
    /// reloads (periods missed while the VMM was late coalesce into one
    /// interrupt, as a second one would only find the IRR bit set), and
    /// TSC-deadline disarms. Returns the vector to deliver unless masked.
    pub fn expire(&mut self, now: u64) -> Option<u8> {
        let due = self.due().filter(|&due| due <= now)?;
        match self.mode() {
            TimerMode::TscDeadline => self.deadline = None,
            TimerMode::OneShot => self.loaded_count = 0,
            TimerMode::Periodic => {
                // Keep the phase: the next period starts at the expiry it
                // replaces, not at the (late) time the VMM noticed it.
                let period = self.period(self.initial);
                self.loaded_at = due + (now - due) / period * period;
                self.loaded_count = self.initial;
            }
        }
        (!self.masked()).then_some(self.vector())
    }
}
