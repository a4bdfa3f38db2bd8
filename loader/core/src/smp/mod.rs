//! SMP decisions: the INIT-SIPI timing of an AP start, and the wake of a
//! parked CPU.

pub mod start;
