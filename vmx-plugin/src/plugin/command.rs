//! The `vmx` shell command: each CPU's VMX state and the optional
//! features in use.

use core::sync::atomic::Ordering;
use plugins::ffi;
use vmx_api::code;

use super::{off, CPUS, GLOBAL, MAX_CPUS};
use crate::compat::Reference;

fn describe_off(reason: u32) -> &'static str {
    match reason {
        off::OFFLINE => "offline",
        off::SHUTDOWN => "system shutdown",
        off::EMERGENCY => "emergency disable",
        r if r == off::refused(code::NOT_SUPPORTED) => "VMX not supported",
        r if r == off::refused(code::FIRMWARE_DISABLED) => "VMX disabled by firmware",
        r if r == off::refused(code::INCONSISTENT) => "inconsistent VMX configuration",
        r if r == off::refused(code::VMX_INSTRUCTION) => "VMXON failed",
        r if r == off::refused(code::NO_MEMORY) => "no memory for the VMXON region",
        r if r == off::refused(code::WRONG_CPU) => "callback on the wrong CPU",
        r if r == off::refused(code::FIXED_BITS) => "CR0 or CR4 outside VMX's fixed bits",
        _ => "refused",
    }
}

pub(super) fn vmx_command(args: &str) -> Result<(), i32> {
    if !args.trim().is_empty() {
        plugins::println!("error: usage: vmx (see `help vmx`)");
        return Err(1);
    }
    let Some(global) = GLOBAL.get().map(Reference::config) else { return Err(1) };
    // SAFETY: a plain query of the loader.
    let count = unsafe { ffi::mv_cpu_count() } as usize;
    for (cpu, c) in CPUS.iter().enumerate().take(count.min(MAX_CPUS)) {
        if c.enabled.load(Ordering::Acquire) {
            plugins::println!("cpu {cpu}: enabled, VMCS revision {:#x}", global.revision_id);
        } else {
            plugins::println!("cpu {cpu}: disabled ({})", describe_off(c.off_reason.load(Ordering::Acquire)));
        }
    }
    // One row per optional feature: printed lines are cut at 256 bytes.
    plugins::println!("optional features:");
    for (name, on) in global.features() {
        plugins::println!("  {name}: {}", if on { "on" } else { "off" });
    }
    Ok(())
}
