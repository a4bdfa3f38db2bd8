//! The `vm` interface table (vmx-api's `VmTable`): the shell command's
//! operations for other plugins and the loader's tests.

use super::vm::{self, State};
use alloc::sync::Arc;
use core::sync::atomic::Ordering;
use plugins::StrRef;
use vmx_api::{apic_mode, code, vm_state, MmioFn, PortFn, VcpuInit, VmHooks, VmTable};

use super::probe::{probe_counts, probe_send, probe_wait};

pub static TABLE: VmTable = VmTable {
    create,
    load,
    start,
    kill,
    destroy,
    state,
    exits,
    read,
    vcpu_cpu,
    bench_request_mask,
    set_apic_emulation,
    apic_mode,
    write,
    create_vcpu,
    set_vcpu_state,
    register_port,
    set_port_policy,
    register_mmio,
    pause,
    resume,
    register_hooks,
    unregister_hooks,
    probe_send,
    probe_wait,
    probe_counts,
};

fn by_id(id: u32) -> Option<Arc<vm::Vm>> {
    vm::VMS.lock().iter().find(|v| v.id == id).cloned()
}

/// Logs a refusal and gives its code.
fn refused(e: vm::Error) -> i32 {
    plugins::warn!("vm: {e}");
    code::REFUSED
}

fn status(r: Result<(), vm::Error>) -> i32 {
    r.map_or_else(refused, |()| 0)
}

extern "C" fn create(name: StrRef, mem_mib: u64, vcpus: u32, cpus: *const u32, ncpus: u32) -> i64 {
    // SAFETY: the caller passes a `&str`.
    let name = unsafe { name.as_str() };
    let pool = if ncpus == 0 {
        super::command::vmx_cpus()
    } else {
        // SAFETY: the caller passes `ncpus` readable u32s.
        unsafe { core::slice::from_raw_parts(cpus, ncpus as usize) }.to_vec()
    };
    super::command::spread(&pool, vcpus as usize)
        .and_then(|cpus| vm::create(name, mem_mib, &cpus))
        .map_or_else(|e| refused(e) as i64, |v| v.id as i64)
}

extern "C" fn load(id: u32, path: StrRef) -> i32 {
    let Some(v) = by_id(id) else { return code::NO_SUCH_VM };
    // SAFETY: the caller passes a `&str`.
    status(vm::load(&v, unsafe { path.as_str() }))
}

extern "C" fn start(id: u32) -> i32 {
    let Some(v) = by_id(id) else { return code::NO_SUCH_VM };
    status(super::command::start(&v.name))
}

extern "C" fn kill(id: u32) -> i32 {
    let Some(v) = by_id(id) else { return code::NO_SUCH_VM };
    v.stop(None, Some("killed".into()));
    0
}

extern "C" fn destroy(id: u32) -> i32 {
    let Some(v) = by_id(id) else { return code::NO_SUCH_VM };
    let name = v.name.clone();
    drop(v);
    status(vm::destroy(&name))
}

extern "C" fn state(id: u32, out: *mut i64) -> i32 {
    let Some(v) = by_id(id) else { return code::NO_SUCH_VM };
    let s = v.ending.lock().status.map_or(-1, i64::from);
    // SAFETY: the caller passes a live i64.
    unsafe { out.write(s) };
    match v.state() {
        State::Created => vm_state::CREATED,
        State::Loaded => vm_state::LOADED,
        State::Running => vm_state::RUNNING,
        State::Paused => vm_state::PAUSED,
        State::Stopped => vm_state::STOPPED,
    }
}

extern "C" fn exits(id: u32) -> u64 {
    by_id(id).map_or(0, |v| v.vcpus.iter().map(|c| c.run.lock().exits.total()).sum())
}

extern "C" fn read(id: u32, gpa: u64, out: *mut u8, len: usize) -> i32 {
    let Some(v) = by_id(id) else { return code::NO_SUCH_VM };
    let outside = || vm::Error::OutsideRam { vm: v.name.clone(), gpa, len: len as u64 };
    let Some(from) = v.host(gpa, len as u64) else { return refused(outside()) };
    // SAFETY: `host` checked the range is this VM's RAM; the caller passes
    // `len` writable bytes.
    unsafe { core::ptr::copy_nonoverlapping(from, out, len) };
    0
}

extern "C" fn vcpu_cpu(id: u32, vcpu: u32) -> i32 {
    let Some(v) = by_id(id) else { return code::NO_SUCH_VM };
    v.vcpus.get(vcpu as usize).map_or(code::REFUSED, |c| c.cpu.load(Ordering::Acquire) as i32)
}

extern "C" fn write(id: u32, gpa: u64, from: *const u8, len: usize) -> i32 {
    let Some(v) = by_id(id) else { return code::NO_SUCH_VM };
    if from.is_null() || len == 0 {
        return status(vm::write(&v, gpa, &[]));
    }
    // SAFETY: the caller passes `len` readable bytes.
    let bytes = unsafe { core::slice::from_raw_parts(from, len) };
    status(vm::write(&v, gpa, bytes))
}

extern "C" fn create_vcpu(id: u32, vcpu_id: u32, cpu: u32) -> i32 {
    let Some(v) = by_id(id) else { return code::NO_SUCH_VM };
    match super::vcpu::create(&v, vcpu_id, cpu) {
        Err(e @ vm::Error::HookRefused { code, .. }) => {
            plugins::warn!("vm: {e}");
            code
        }
        r => status(r),
    }
}

extern "C" fn set_vcpu_state(id: u32, vcpu: u32, init: *const VcpuInit) -> i32 {
    let Some(v) = by_id(id) else { return code::NO_SUCH_VM };
    // SAFETY: the caller passes a live `VcpuInit` (or null, refused).
    let Some(init) = (unsafe { init.as_ref() }) else { return code::REFUSED };
    status(super::vcpu::set_state(&v, vcpu, init))
}

extern "C" fn register_port(id: u32, first: u16, count: u16, handler: PortFn, ctx: usize) -> i32 {
    let Some(v) = by_id(id) else { return code::NO_SUCH_VM };
    status(super::io::register_port(&v, first, count, handler, ctx))
}

extern "C" fn set_port_policy(id: u32, policy: u32) -> i32 {
    let Some(v) = by_id(id) else { return code::NO_SUCH_VM };
    status(super::io::set_policy(&v, policy))
}

extern "C" fn register_mmio(id: u32, gpa: u64, len: u64, handler: MmioFn, ctx: usize) -> i32 {
    let Some(v) = by_id(id) else { return code::NO_SUCH_VM };
    status(super::io::register_mmio(&v, gpa, len, handler, ctx))
}

extern "C" fn pause(id: u32) -> i32 {
    let Some(v) = by_id(id) else { return code::NO_SUCH_VM };
    status(super::command::pause(&v))
}

extern "C" fn resume(id: u32) -> i32 {
    let Some(v) = by_id(id) else { return code::NO_SUCH_VM };
    status(super::command::resume(&v))
}

extern "C" fn register_hooks(hooks: *const VmHooks) -> i32 {
    if hooks.is_null() {
        return refused(vm::Error::NotTheHooks);
    }
    status(super::hooks::register(hooks))
}

extern "C" fn unregister_hooks(hooks: *const VmHooks) -> i32 {
    status(super::hooks::unregister(hooks))
}

extern "C" fn bench_request_mask(mask: *mut u64, scan: *mut u64) {
    use crate::requests::{make_request_full_scan, make_request_mask, Requests, VcpuSlot};
    const SLOTS: usize = 4096;
    let slots: alloc::vec::Vec<VcpuSlot> = (0..SLOTS).map(|_| VcpuSlot::new()).collect();
    let mut bitmap = [0u64; SLOTS / 64];
    for id in [3, 700, 2049, 4095] {
        bitmap[id / 64] |= 1 << (id % 64);
    }
    let tsc = crate::plugin::rdtsc;
    let t0 = tsc();
    let _ = make_request_mask(&slots, Requests::EVENT, &bitmap, 0, |_| {});
    let t1 = tsc();
    let _ = make_request_full_scan(&slots, Requests::EVENT, &bitmap, 0, |_| {});
    let t2 = tsc();
    // SAFETY: the caller passes two live u64s.
    unsafe { mask.write(t1 - t0) };
    // SAFETY: as above.
    unsafe { scan.write(t2 - t1) };
}

extern "C" fn set_apic_emulation(id: u32, emulate: u32) -> i32 {
    let Some(v) = by_id(id) else { return code::NO_SUCH_VM };
    if !matches!(v.state(), State::Created | State::Loaded) {
        return refused(vm::Error::WrongState { vm: v.name.clone(), state: v.state().name() });
    }
    v.emulate_apic.store(emulate != 0, Ordering::Release);
    0
}

extern "C" fn apic_mode(id: u32, vcpu: u32) -> i32 {
    let Some(v) = by_id(id) else { return code::NO_SUCH_VM };
    let Some(c) = v.vcpus.get(vcpu as usize) else { return code::REFUSED };
    let mode = c.run.lock().apic.mode();
    match mode {
        None => apic_mode::UNDECIDED,
        Some(crate::vapic::virt::Mode::Virtualized) => apic_mode::VIRTUALIZED,
        Some(crate::vapic::virt::Mode::Emulated(_)) => apic_mode::EMULATED,
    }
}
