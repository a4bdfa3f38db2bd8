//! The swap state: what a new version needs to take VMX over on every CPU
//! without turning it off.

use core::sync::atomic::Ordering;
use plugins::ffi;
use vmx_api::code;

use super::{cpuhp, offline, online, CPUS, HOOKS, MAX_CPUS, STATE_ID, TAKING_OVER};

/// The state blob: the cpuhp state id, then per CPU the enabled flag, the
/// VMXON region, the VMCS page, the loaded VMCS, the off reason and the
/// VMXON count.
pub(super) const STATE_LAYOUT: u32 = 1;
const PER_CPU: usize = 1 + 8 + 8 + 8 + 4 + 8;

pub(super) fn export(buf: &mut [u8]) -> Result<usize, i32> {
    // VMs do not cross a swap yet: refused, the old version goes on.
    if !crate::guest::vm::VMS.lock().is_empty() {
        plugins::warn!("swap refused: VMs exist (destroy them first; their state does not cross a swap yet)");
        return Err(code::BAD_STATE);
    }
    let len = 4 + MAX_CPUS * PER_CPU;
    let out = buf.get_mut(..len).ok_or(code::BAD_STATE)?;
    out[..4].copy_from_slice(&STATE_ID.load(Ordering::Acquire).to_le_bytes());
    for (c, chunk) in CPUS.iter().zip(out[4..].chunks_exact_mut(PER_CPU)) {
        chunk[0] = c.enabled.load(Ordering::Acquire) as u8;
        chunk[1..9].copy_from_slice(&c.region.load(Ordering::Acquire).to_le_bytes());
        chunk[9..17].copy_from_slice(&c.vmcs.load(Ordering::Acquire).to_le_bytes());
        chunk[17..25].copy_from_slice(&c.loaded_vmcs.load(Ordering::Acquire).to_le_bytes());
        chunk[25..29].copy_from_slice(&c.off_reason.load(Ordering::Acquire).to_le_bytes());
        chunk[29..37].copy_from_slice(&c.enables.load(Ordering::Acquire).to_le_bytes());
    }
    Ok(len)
}

/// With the world stopped: adopt the pages, take the cpuhp state and the
/// system hooks (our predecessor's hooks go with it), then the per-CPU
/// state.
pub(super) fn import(version: u32, buf: &[u8]) -> Result<(), i32> {
    if version != STATE_LAYOUT || buf.len() != 4 + MAX_CPUS * PER_CPU {
        return Err(code::BAD_STATE);
    }
    let u64_at = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let id = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes"));
    // The pages come by address: they become ours before anything else
    // (if the swap is called off, the loader gives them back).
    for chunk in buf[4..].chunks_exact(PER_CPU) {
        for page in [u64_at(&chunk[1..9]), u64_at(&chunk[9..17])].into_iter().filter(|&p| p != 0) {
            plugins::runtime::adopt(page as *mut u8).map_err(|_| code::BAD_STATE)?;
        }
    }
    let cpuhp = cpuhp().ok_or(code::CPUHP)?;
    if cpuhp.call(|t| (t.rebind)(id, Some(online), Some(offline), 0)) != 0 {
        return Err(code::CPUHP);
    }
    // SAFETY: HOOKS is a static of ours.
    if unsafe { ffi::mv_system_register(&HOOKS) } != 0 {
        return Err(code::HOOKS);
    }
    STATE_ID.store(id, Ordering::Release);
    for (c, chunk) in CPUS.iter().zip(buf[4..].chunks_exact(PER_CPU)) {
        c.enabled.store(chunk[0] != 0, Ordering::Release);
        c.region.store(u64_at(&chunk[1..9]), Ordering::Release);
        c.vmcs.store(u64_at(&chunk[9..17]), Ordering::Release);
        c.loaded_vmcs.store(u64_at(&chunk[17..25]), Ordering::Release);
        c.off_reason.store(u32::from_le_bytes(chunk[25..29].try_into().expect("4 bytes")), Ordering::Release);
        c.enables.store(u64_at(&chunk[29..37]), Ordering::Release);
    }
    TAKING_OVER.store(false, Ordering::Release);
    Ok(())
}
