//! Guests: VMs and their vCPUs under VMX, the guest ABI (README "Guests"),
//! exits, and the `vm` shell command.

mod apic;
mod command;
mod elf;
mod entry;
mod error;
mod fpu;
mod hooks;
mod io;
mod msr;
mod probe;
mod run;
mod table;
mod vcpu;
pub mod vm;
mod vmcs;

pub use command::vm_command;
pub use hooks::drop_all as drop_hooks;

/// The virtual APIC timer's input clock the guest is told of (CPUID
/// 0x40000010 EBX and 0x15): 100 MHz, counted from the host TSC.
pub const APIC_TIMER_KHZ: u32 = 100_000;
pub use run::idle;
pub use table::TABLE;

/// How many vCPUs are bound to `cpu`.
pub fn bound_to(cpu: u32) -> usize {
    let vms = vm::VMS.lock();
    vms.iter()
        .flat_map(|vm| vm.vcpus.iter())
        .filter(|v| v.cpu.load(core::sync::atomic::Ordering::Acquire) == cpu)
        .count()
}

/// VMCLEARs, on `cpu` (which is going offline, so VMX goes off there),
/// every vCPU whose VMCS is active there, and binds those bound to it to
/// `to` (another CPU with VMX on), where they go on at their next run.
/// Runs on `cpu` outside any vCPU's slice (the idle work has returned).
pub fn evacuate(cpu: u32, to: Option<u32>) -> usize {
    let vms = vm::VMS.lock();
    let mut moved = 0;
    for v in vms.iter().flat_map(|vm| vm.vcpus.iter()) {
        let mut run = v.run.lock();
        if run.active_on == Some(cpu) {
            // SAFETY: VMX root operation on this CPU, where the VMCS is
            // active; no slice runs it now (see above).
            if let Err(e) = unsafe { crate::insn::vmclear(v.vmcs_phys) } {
                plugins::warn!("VMCLEAR of vCPU {} on cpu {cpu}: {e}", v.index);
            }
            crate::plugin::forget_loaded(cpu, v.vmcs_phys);
            run.active_on = None;
            run.launched = false;
        }
        if v.cpu.load(core::sync::atomic::Ordering::Acquire) == cpu {
            if let Some(to) = to {
                v.cpu.store(to, core::sync::atomic::Ordering::Release);
                moved += 1;
            }
        }
    }
    moved
}
