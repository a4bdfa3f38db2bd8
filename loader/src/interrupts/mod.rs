//! Interrupts and exceptions: the IDT and trap stubs, the local APIC and
//! the IOAPIC, and probes (accesses that may fault and return the fault).

pub mod apic;
pub mod idt;
pub mod ioapic;
pub mod probe;
