//! What the guest code needs of the enablement: whether and how VMX is on
//! on a CPU, VMCS pages, and VMCLEAR on the CPU that holds a VMCS.

use super::{ffi, CPUS, GLOBAL, MAX_CPUS, PAGE, PAGE_LAYOUT};
use crate::config::VmxConfig;
use core::sync::atomic::Ordering;

/// The VMCS revision id when `cpu` has VMX on.
pub fn vmcs_revision(cpu: u32) -> Option<u32> {
    vmx_config(cpu).map(|c| c.revision_id)
}

/// The configuration every CPU with VMX on shares, when `cpu` has it on.
pub fn vmx_config(cpu: u32) -> Option<&'static VmxConfig> {
    let on = CPUS.get(cpu as usize).is_some_and(|c| c.enabled.load(Ordering::Acquire));
    on.then(|| GLOBAL.get().map(|g| g.config())).flatten()
}

/// The configuration every CPU with VMX on shares, once VMX is set up.
pub fn global_config() -> Option<&'static VmxConfig> {
    GLOBAL.get().map(|g| g.config())
}

/// Records that the VMCS at `phys` is current on `cpu` (its teardown
/// VMCLEARs it before VMXOFF).
pub fn note_loaded(cpu: u32, phys: u64) {
    if let Some(c) = CPUS.get(cpu as usize) {
        c.loaded_vmcs.store(phys, Ordering::Release);
    }
}

/// Drops `cpu`'s record of the VMCS at `phys` once it was VMCLEARed there:
/// the VMCS may be made current on another CPU next, and the record must
/// not make `cpu`'s VMX teardown clear it there again (it would reset the
/// launch state of a VMCS that CPU runs).
pub fn forget_loaded(cpu: u32, phys: u64) {
    if let Some(c) = CPUS.get(cpu as usize) {
        let _ = c.loaded_vmcs.compare_exchange(phys, 0, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// A fresh VMCS page stamped with the revision id: (virtual, physical).
pub fn new_vmcs() -> Option<(u64, u64)> {
    let revision = GLOBAL.get()?.config().revision_id;
    // SAFETY: a non-zero size; freed by `free_vmcs`.
    let virt = unsafe { alloc::alloc::alloc_zeroed(PAGE_LAYOUT) } as u64;
    if virt == 0 {
        return None;
    }
    // SAFETY: the page was just allocated; bit 31 of the revision word
    // must be 0 (SDM Vol. 3C, 25.2).
    unsafe { (virt as *mut u32).write_volatile(revision & 0x7fff_ffff) };
    // SAFETY: a plain query of the loader.
    match unsafe { ffi::mv_virt_to_phys(virt as *const u8) } {
        u64::MAX => {
            free_vmcs(virt);
            None
        }
        phys => Some((virt, phys)),
    }
}

/// Frees a page from [`new_vmcs`] that no CPU has active.
pub fn free_vmcs(virt: u64) {
    // SAFETY: allocated in `new_vmcs` with this layout; VMCLEARed.
    unsafe { alloc::alloc::dealloc(virt as *mut u8, PAGE_LAYOUT) };
    let _ = PAGE;
}

extern "C" fn clear_here(phys: usize) -> i32 {
    let cpu = super::current_cpu();
    if !CPUS[cpu].enabled.load(Ordering::Acquire) {
        return 0;
    }
    forget_loaded(cpu as u32, phys as u64);
    // SAFETY: VMX root operation here (checked), and the VMCS is active on
    // this CPU (the caller's record says so).
    match unsafe { crate::insn::vmclear(phys as u64) } {
        Ok(()) => 0,
        Err(_) => vmx_api::code::VMX_INSTRUCTION,
    }
}

/// VMCLEARs the VMCS at `phys` on `cpu`, where it is active.
pub fn clear_vmcs_on(cpu: u32, phys: u64) {
    let mut result = 0;
    // SAFETY: `clear_here` is a function of ours that outlives the call.
    let r = unsafe { ffi::mv_run_on(cpu, clear_here, phys as usize, ffi::run_on::IRQS_OFF, &mut result) };
    if r != 0 || result != 0 {
        plugins::warn!("VMCLEAR of a VMCS on cpu {cpu} failed ({r}, {result}); VMX there may hold stale data");
    }
}

/// Another CPU with VMX on than `cpu`, for the vCPUs `cpu` gives up.
pub fn other_vmx_cpu(cpu: u32) -> Option<u32> {
    // The boot CPU last: it runs the shell.
    (1..MAX_CPUS as u32).chain([0]).find(|&c| c != cpu && vmx_config(c).is_some())
}

/// The EPT/VPID capabilities every CPU shares (IA32_VMX_EPT_VPID_CAP bits
/// the configuration relies on).
pub fn ept_caps() -> Option<u64> {
    GLOBAL.get().map(|g| g.config().ept_vpid_caps)
}
