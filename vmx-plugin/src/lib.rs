//! `vmx`: VMX on every online CPU, through a cpuhp ONLINE state whose
//! startup checks the CPU against the boot CPU and enters VMX operation.
//!
//! Built without a version feature the crate is the pure parts only, tested
//! on the host against capability MSRs recorded in Bochs (`testdata/`):
//! [`msr`] (the MSRs and one CPU's raw values), [`config`] (the controls
//! modvisor uses, decided from them) and [`compat`] (whether a CPU may
//! enable VMX). The `vmx` interface table is in the `vmx-api` crate.
#![cfg_attr(target_os = "none", no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

// The pure parts use `alloc` too (std has it on the host).
extern crate alloc;
// Links the SDK's panic handler and allocator into the staticlib when a
// plugin build turns them on (see counter-plugin).
extern crate plugins;

pub mod compat;
pub mod config;
pub mod cpuid;
pub mod ept;
pub mod exits;
pub mod gva;
pub mod mmio;
pub mod msr;
pub mod msrs;
pub mod portio;
pub mod ranges;
pub mod requests;
pub mod vapic;
pub mod vcpu_init;

#[cfg(any(feature = "v1", feature = "v2"))]
mod guest;
#[cfg(any(feature = "v1", feature = "v2"))]
mod insn;
#[cfg(any(feature = "v1", feature = "v2"))]
mod plugin;

#[cfg(test)]
mod tests;
