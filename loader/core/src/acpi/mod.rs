//! ACPI: which CPUs the MADT describes, the `\_S5_` sleep type, and the
//! bookkeeping behind the SCI (GPE owners, deferred work).

pub mod dsdt;
pub mod madt;
pub mod s5;
pub mod sci;
