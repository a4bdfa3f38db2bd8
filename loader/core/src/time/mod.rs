//! Time decisions: where the TSC and APIC-timer rates come from.

pub mod calibration;
