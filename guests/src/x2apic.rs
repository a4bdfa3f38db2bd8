//! The local APIC in x2APIC mode, through its MSRs (SDM Vol. 3A, 11.12),
//! and the encodings of the ICR and the LVT timer entry.

use crate::cpu;

/// IA32_APIC_BASE and its bits: BSP (8), x2APIC mode (10), enabled (11).
pub const APIC_BASE_MSR: u32 = 0x1b;
pub const APIC_BASE_BSP: u64 = 1 << 8;
pub const APIC_BASE_EXTD: u64 = 1 << 10;
pub const APIC_BASE_ENABLE: u64 = 1 << 11;

pub const ID: u32 = 0x802;
pub const VERSION: u32 = 0x803;
pub const TPR: u32 = 0x808;
pub const EOI: u32 = 0x80b;
pub const LDR: u32 = 0x80d;
pub const SVR: u32 = 0x80f;
pub const ICR: u32 = 0x830;
pub const LVT_TIMER: u32 = 0x832;
pub const INITIAL_COUNT: u32 = 0x838;
pub const CURRENT_COUNT: u32 = 0x839;
pub const DIVIDE: u32 = 0x83e;
pub const TSC_DEADLINE: u32 = 0x6e0;

/// The vector [`enable`] gives spurious interrupts.
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// Reads x2APIC register `msr`.
pub fn read(msr: u32) -> u64 {
    // SAFETY: the ABI gives every vCPU an x2APIC, so its readable MSRs
    // exist; reading one has no side effect the guests rely on.
    unsafe { cpu::rdmsr(msr) }
}

/// Writes x2APIC register `msr` (or IA32_TSC_DEADLINE).
pub fn write(msr: u32, value: u64) {
    // SAFETY: APIC registers steer interrupts and timers, not memory or
    // paging; a vector without a handler ends the VM cleanly (idt.rs).
    unsafe { cpu::wrmsr(msr, value) };
}

/// Software-enables the APIC (spurious vector [`SPURIOUS_VECTOR`]) and
/// accepts every priority.
pub fn enable() {
    write(SVR, 0x100 | u64::from(SPURIOUS_VECTOR));
    write(TPR, 0);
}

/// This vCPU's x2APIC id.
pub fn id() -> u32 {
    read(ID) as u32
}

/// This vCPU's logical destination register.
pub fn ldr() -> u32 {
    read(LDR) as u32
}

/// Ends the interrupt being handled.
pub fn eoi() {
    write(EOI, 0);
}

/// The LDR of x2APIC id `id`: cluster `id >> 4` in bits 31:16, bit
/// `id & 15` in 15:0 (SDM Vol. 3A, 11.12.10.2).
pub fn logical_id(id: u32) -> u32 {
    ((id >> 4) << 16) | (1 << (id & 0xf))
}

/// Where an IPI goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// The vCPU with this x2APIC id.
    Physical(u32),
    /// The vCPUs this logical destination (cluster and bit mask) names.
    Logical(u32),
    /// This vCPU (destination shorthand "self").
    SelfOnly,
    /// Every vCPU but this one (shorthand "all excluding self").
    AllExcludingSelf,
}

/// The ICR value of a fixed, edge-triggered IPI (SDM Vol. 3A, 11.12.9).
pub fn icr(to: Destination, vector: u8) -> u64 {
    const LOGICAL: u64 = 1 << 11;
    const ASSERT: u64 = 1 << 14;
    const SHORTHAND_SELF: u64 = 0b01 << 18;
    const SHORTHAND_ALL_BUT_SELF: u64 = 0b11 << 18;
    let fixed = ASSERT | u64::from(vector);
    match to {
        Destination::Physical(id) => (u64::from(id) << 32) | fixed,
        Destination::Logical(ldr) => (u64::from(ldr) << 32) | LOGICAL | fixed,
        Destination::SelfOnly => SHORTHAND_SELF | fixed,
        Destination::AllExcludingSelf => SHORTHAND_ALL_BUT_SELF | fixed,
    }
}

/// The ICR value of an NMI: delivery mode 100b, the vector ignored.
pub fn icr_nmi(to: Destination) -> u64 {
    const NMI: u64 = 0b100 << 8;
    icr(to, 0) | NMI
}

/// Sends a fixed IPI.
pub fn send_ipi(to: Destination, vector: u8) {
    write(ICR, icr(to, vector));
}

/// Sends an NMI.
pub fn send_nmi(to: Destination) {
    write(ICR, icr_nmi(to));
}

/// The APIC timer's modes (LVT timer bits 18:17).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerMode {
    OneShot,
    Periodic,
    TscDeadline,
}

/// The LVT timer entry for `mode` and `vector`, masked or not.
pub fn lvt_timer(mode: TimerMode, vector: u8, masked: bool) -> u32 {
    let mode_bits = match mode {
        TimerMode::OneShot => 0b00,
        TimerMode::Periodic => 0b01,
        TimerMode::TscDeadline => 0b10,
    };
    (mode_bits << 17) | (u32::from(masked) << 16) | u32::from(vector)
}

/// Programs the LVT timer entry.
pub fn set_timer(mode: TimerMode, vector: u8, masked: bool) {
    write(LVT_TIMER, u64::from(lvt_timer(mode, vector, masked)));
}

/// The timer counts at the rate CPUID 0x40000010 EBX gives.
pub fn divide_by_1() {
    write(DIVIDE, 0b1011);
}

/// Starts (or with 0 stops) the one-shot or periodic count.
pub fn start_count(count: u32) {
    write(INITIAL_COUNT, u64::from(count));
}

pub fn current_count() -> u32 {
    read(CURRENT_COUNT) as u32
}

/// Arms the TSC-deadline timer for TSC `deadline` (0 disarms it).
pub fn set_tsc_deadline(deadline: u64) {
    write(TSC_DEADLINE, deadline);
}

pub fn tsc_deadline() -> u64 {
    read(TSC_DEADLINE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icr_encodings() {
        assert_eq!(icr(Destination::Physical(1), 0x40), 0x0000_0001_0000_4040);
        assert_eq!(icr(Destination::Logical(0x0001_0004), 0x43), 0x0001_0004_0000_4843);
        assert_eq!(icr(Destination::SelfOnly, 0x42), 0x0004_4042);
        assert_eq!(icr(Destination::AllExcludingSelf, 0x44), 0x000c_4044);
        assert_eq!(icr_nmi(Destination::Physical(1)), 0x0000_0001_0000_4400);
    }

    #[test]
    fn logical_ids_are_cluster_and_bit() {
        assert_eq!(logical_id(0), 0x1);
        assert_eq!(logical_id(1), 0x2);
        assert_eq!(logical_id(15), 0x8000);
        assert_eq!(logical_id(16), 0x1_0001);
        assert_eq!(logical_id(0x23), 0x2_0008);
    }

    #[test]
    fn lvt_timer_entries() {
        assert_eq!(lvt_timer(TimerMode::OneShot, 0x50, false), 0x50);
        assert_eq!(lvt_timer(TimerMode::Periodic, 0x50, false), 0x2_0050);
        assert_eq!(lvt_timer(TimerMode::TscDeadline, 0x50, false), 0x4_0050);
        assert_eq!(lvt_timer(TimerMode::OneShot, 0x50, true), 0x1_0050);
    }
}
