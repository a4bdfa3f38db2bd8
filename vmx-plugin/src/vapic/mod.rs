//! The virtual local APIC of one vCPU in x2APIC mode, as pure logic: the
//! VMM hands it every intercepted x2APIC MSR access and acts on the
//! [`Effect`] it returns; nothing here touches hardware, so all of it is
//! tested on the host.
//!
//! - [`Lapic`]: the registers (SDM vol. 3A, "Extended xAPIC (x2APIC)",
//!   table "Local APIC Register Address Map Supported by x2APIC"), MSR
//!   reads and writes, interrupt acceptance, priority and EOI
//!   ("Interrupt, Task, and Processor Priority", "Interrupt Acceptance
//!   for Fixed Interrupts").
//! - [`Ipi`]: a decoded ICR write and the vCPUs it targets ("Interrupt
//!   Command Register (ICR)", "Logical Destination Mode in x2APIC Mode").
//! - [`Timer`]: the APIC timer in one-shot, periodic and TSC-deadline mode,
//!   kept in host TSC ticks so the VMM can arm a host timer or the VMX
//!   preemption timer at [`Timer::next_deadline`] ("APIC Timer").
//! - [`virt`]: whether the CPU's APIC virtualization carries the fast paths
//!   or every access exits, and the MSR-bitmap intercepts for each (SDM
//!   vol. 3C, "APIC Virtualization and Virtual Interrupts").
//!
//! Not covered: xAPIC (MMIO) mode and IA32_APIC_BASE mode switches, posted
//! interrupts and IPI virtualization (Bochs 2.7 has neither), directed EOI.

mod icr;
mod irq;
mod lapic;
mod regs;
mod timer;
pub mod virt;

#[cfg(test)]
mod tests;

pub use icr::{destinations, DeliveryMode, DestMode, Ipi, Shorthand, Trigger};
pub use lapic::{Effect, Lapic};
pub use regs::*;
pub use timer::{divisor, Clock, Timer, TimerMode};

/// Why an x2APIC MSR access must fail with #GP(0) in the guest; the one
/// error of this module. SDM vol. 3A "x2APIC Register Address Space" and
/// "Reserved Bit Checking": in x2APIC mode the APIC checks reserved bits
/// and access direction instead of ignoring them as xAPIC MMIO does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// No x2APIC register at this MSR (e.g. 0x80E DFR, 0x831 ICR high,
    /// which exist only in xAPIC mode).
    Unknown { msr: u32 },
    /// RDMSR of a write-only register (EOI, SELF IPI).
    WriteOnly { msr: u32 },
    /// WRMSR of a read-only register (ID, version, PPR, LDR, ISR, TMR,
    /// IRR, current count).
    ReadOnly { msr: u32 },
    /// WRMSR with reserved bits set, or a reserved encoding (a timer mode
    /// or ICR delivery mode the SDM leaves undefined).
    Reserved { msr: u32, value: u64 },
}

impl Fault {
    /// The MSR the faulting access named.
    pub fn msr(&self) -> u32 {
        match *self {
            Fault::Unknown { msr }
            | Fault::WriteOnly { msr }
            | Fault::ReadOnly { msr }
            | Fault::Reserved { msr, .. } => msr,
        }
    }
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Fault::Unknown { msr } => write!(f, "#GP: MSR {msr:#x} is no x2APIC register"),
            Fault::WriteOnly { msr } => write!(f, "#GP: x2APIC MSR {msr:#x} is write-only"),
            Fault::ReadOnly { msr } => write!(f, "#GP: x2APIC MSR {msr:#x} is read-only"),
            Fault::Reserved { msr, value } => {
                write!(f, "#GP: value {value:#x} sets reserved bits of x2APIC MSR {msr:#x}")
            }
        }
    }
}
