//! `vmx`: VMX on every online CPU, through a cpuhp ONLINE state whose
//! startup checks the CPU against the boot CPU and enters VMX operation,
//! and guests on it: VMs, vCPUs, EPT, exits, a virtual x2APIC, requests
//! and kicks.
//!
//! Each subsystem is a pure part, built without a version feature and
//! tested on the host (against capability MSRs recorded in Bochs,
//! `testdata/`, and models), and a part that applies it to the hardware,
//! built only into the plugin:
//!
//! | subsystem | decides (pure) | applies (plugin) |
//! |---|---|---|
//! | enablement | [`msr`] (capability MSRs), [`config`] (the controls), [`compat`] (may a CPU enable VMX) | `plugin/` (VMXON/VMXOFF through cpuhp, reboot and panic), `insn` |
//! | VM | [`ranges`] (port and MMIO ranges) | `guest/vm.rs`, `table.rs` (the `vm` table), `command.rs` (`vm`), `hooks.rs`, `io.rs`, `elf.rs` |
//! | vCPU | [`vcpu_init`] (first-entry state), [`cpuid`], [`msrs`] | `guest/vcpu.rs`, `run.rs` (the run loop), `entry.rs`, `vmcs.rs`, `msr.rs`, `fpu.rs` |
//! | EPT | [`ept`], [`gva`] (guest page walks) | `guest/vm.rs` (the VM's tables) |
//! | exits | [`exits`] (reasons, qualifications, events), [`portio`], [`mmio`] (the MOV decoder) | `guest/run.rs`, `io.rs` |
//! | virtual APIC | [`vapic`] (the x2APIC model, the virtualization decision) | `guest/apic.rs` |
//! | requests | [`requests`] (KVM's request/kick protocol) | `guest/run.rs`, `apic.rs`, `vm.rs` |
//!
//! The `vmx` and `vm` interface tables are in the `vmx-api` crate.
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
