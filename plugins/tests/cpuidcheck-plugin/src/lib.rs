//! `cpuidcheck`: registers the ONLINE state `cpuidcheck:online`, which
//! refuses a CPU whose CPUID feature bits (leaf 1 ECX/EDX, leaf 7 EBX)
//! differ from the boot CPU's, as a hypervisor must (a vCPU may move to any
//! CPU). The error code names the first differing feature (see
//! [`features::Difference::refusal_code`]); the failure's reason, given to
//! cpuhp, names it in words.
//!
//! Built without `v1` the crate is the pure comparison only, tested on the
//! host.
#![cfg_attr(target_os = "none", no_std)]

pub mod features;

#[cfg(feature = "v1")]
mod plugin;
