//! The hooks another plugin installs through the `vm` table (vmx-api's
//! `VmHooks`): called at VM and vCPU creation and destruction, and on
//! x2APIC ICR writes, which a hook may deliver itself. One set at a time.
//! A call holds the read side of the lock for its whole length, so that
//! removing the hooks (the write side) waits until no CPU is inside one:
//! the installer's code and its `VmHooks` may go right after.

use super::vm::Error;
use vmx_api::VmHooks;

/// The installed `VmHooks`' address, 0 for none.
static HOOKS: spin::RwLock<usize> = spin::RwLock::new(0);

/// Runs `f` on the installed hooks, if any.
fn with<R>(f: impl FnOnce(&VmHooks) -> R) -> Option<R> {
    let installed = HOOKS.read();
    if *installed == 0 {
        return None;
    }
    // SAFETY: the installer keeps its `VmHooks` valid until it removes
    // them, and removal waits for this read lock to go.
    let hooks = unsafe { &*(*installed as *const VmHooks) };
    Some(f(hooks))
}

pub fn register(hooks: *const VmHooks) -> Result<(), Error> {
    let mut installed = HOOKS.write();
    if *installed != 0 {
        return Err(Error::HooksTaken);
    }
    *installed = hooks as usize;
    Ok(())
}

pub fn unregister(hooks: *const VmHooks) -> Result<(), Error> {
    let mut installed = HOOKS.write();
    if *installed != hooks as usize || hooks.is_null() {
        return Err(Error::NotTheHooks);
    }
    *installed = 0;
    Ok(())
}

/// vmx-plugin ends: nothing calls the hooks any more.
pub fn drop_all() {
    *HOOKS.write() = 0;
}

pub fn vm_created(vm: u32) {
    with(|h| h.vm_created.map(|f| f(h.ctx, vm)));
}

/// 0, or the code with which the hooks refuse vCPU `id`.
pub fn vcpu_precreate(vm: u32, id: u32) -> i32 {
    with(|h| h.vcpu_precreate.map_or(0, |f| f(h.ctx, vm, id))).unwrap_or(0)
}

pub fn vcpu_created(vm: u32, id: u32) {
    with(|h| h.vcpu_created.map(|f| f(h.ctx, vm, id)));
}

pub fn vcpu_destroyed(vm: u32, id: u32) {
    with(|h| h.vcpu_destroyed.map(|f| f(h.ctx, vm, id)));
}

pub fn vm_destroyed(vm: u32) {
    with(|h| h.vm_destroyed.map(|f| f(h.ctx, vm)));
}

/// Whether a hook delivered the IPI that `icr`, written by `vcpu`, asks
/// for (else vmx-plugin delivers it).
pub fn icr_write(vm: u32, vcpu: u32, icr: u64) -> bool {
    with(|h| h.icr_write.is_some_and(|f| f(h.ctx, vm, vcpu, icr) == 1)).unwrap_or(false)
}
