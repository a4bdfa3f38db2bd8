//! vCPUs made one by one, KVM's shape: `create` adds one to a VM that has
//! RAM and EPT (under the VM's lock, after the hooks' `vcpu_precreate`
//! agreed), `set_state` gives it the state of its first entry.

use super::entry::Regs;
use super::vm::{self, Error, State, Vcpu, VcpuRun, Vm, MAX_VCPUS, RUNNING};
use crate::exits::ExitCounts;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8};

/// The host's EFER, which guests run with (it is not switched on entry).
pub fn host_efer() -> u64 {
    // SAFETY: IA32_EFER exists on every x86_64 CPU.
    unsafe { crate::insn::rdmsr(0xc000_0080) }
}

/// What the CPUs allow a first entry ([`crate::vcpu_init::decide`]).
fn limits() -> Result<crate::vcpu_init::Limits, Error> {
    let c = crate::plugin::global_config().ok_or(Error::NoVmx)?;
    Ok(crate::vcpu_init::Limits {
        cr0_fixed0: c.cr0_fixed0,
        cr0_fixed1: c.cr0_fixed1,
        cr4_fixed0: c.cr4_fixed0,
        cr4_fixed1: c.cr4_fixed1,
        unrestricted: c.has(crate::config::UNRESTRICTED_GUEST),
        host_efer: host_efer(),
    })
}

/// A VM that has not started takes new vCPUs and initial states.
fn not_started(vm: &Vm) -> Result<(), Error> {
    match vm.state() {
        State::Created | State::Loaded => Ok(()),
        s => Err(Error::WrongState { vm: vm.name.clone(), state: s.name() }),
    }
}

/// Adds vCPU `id` to `vm`, bound to `cpu`.
pub fn create(vm: &Vm, id: u32, cpu: u32) -> Result<(), Error> {
    if id as usize >= MAX_VCPUS {
        return Err(Error::BadVcpuId(id));
    }
    if crate::plugin::vmcs_revision(cpu).is_none() {
        return Err(Error::NoCpu(cpu));
    }
    {
        let _lock = vm.lock.lock();
        not_started(vm)?;
        if vm.vcpus.get(id as usize).is_some() {
            return Err(Error::VcpuExists { vm: vm.name.clone(), vcpu: id });
        }
        let code = super::hooks::vcpu_precreate(vm.id, id);
        if code != 0 {
            return Err(Error::HookRefused { vm: vm.name.clone(), vcpu: id, code });
        }
        let frames = vm::frames(pages(), 1, "virtual-APIC page, MSR bitmap and FPU state")?;
        vm::zero(frames, pages() * vm::PAGE);
        let Some((virt, phys)) = crate::plugin::new_vmcs() else {
            vm::free_frames(frames, pages());
            return Err(Error::NoMemory { what: "VMCS" });
        };
        vm.vcpus.add(id as usize, || new_vcpu(id, cpu, (virt, phys), frames));
    }
    super::hooks::vcpu_created(vm.id, id);
    Ok(())
}

/// Frames of a vCPU besides its VMCS: the virtual-APIC page, the MSR
/// bitmap, then the FPU save area.
pub fn pages() -> u64 {
    2 + super::fpu::area_size().div_ceil(vm::PAGE)
}

/// vCPU `id` bound to pCPU `cpu`, with its VMCS and its [`pages`] at
/// `frames`.
fn new_vcpu(id: u32, cpu: u32, (vmcs_virt, vmcs_phys): (u64, u64), frames: u64) -> Vcpu {
    Vcpu {
        index: id,
        halt: AtomicU8::new(RUNNING),
        wake_at: AtomicU64::new(u64::MAX),
        cpu: AtomicU32::new(cpu),
        nmi: AtomicBool::new(false),
        vmcs_virt,
        vmcs_phys,
        run: spin::Mutex::new(VcpuRun {
            regs: Regs::default(),
            launched: false,
            active_on: None,
            initialised: false,
            init: None,
            apic: super::apic::VirtualApic::new(id, frames),
            msr_bitmap: frames + vm::PAGE,
            saved: super::msr::SavedMsrs::default(),
            fpu: super::fpu::Fpu::new(frames + 2 * vm::PAGE),
            exits: ExitCounts::new(),
        }),
        probe: super::probe::Probe::new(),
    }
}

/// Sets vCPU `id`'s first-entry state from `init`, if it keeps the rules.
pub fn set_state(vm: &Vm, id: u32, init: &vmx_api::VcpuInit) -> Result<(), Error> {
    not_started(vm)?;
    let vcpu = vm.vcpus.get(id as usize).ok_or_else(|| Error::NoVcpu { vm: vm.name.clone(), vcpu: id })?;
    let state = crate::vcpu_init::decide(init, &limits()?).map_err(|why| Error::InitialState {
        vm: vm.name.clone(),
        vcpu: id,
        why,
    })?;
    let mut run = vcpu.run.lock();
    let g = &state.gprs;
    run.regs = Regs {
        rax: g[0],
        rbx: g[1],
        rcx: g[2],
        rdx: g[3],
        rsi: g[4],
        rdi: g[5],
        rbp: g[6],
        r8: g[7],
        r9: g[8],
        r10: g[9],
        r11: g[10],
        r12: g[11],
        r13: g[12],
        r14: g[13],
        r15: g[14],
    };
    run.init = Some(state);
    Ok(())
}

/// Whether `vm` can start: it has vCPUs and each has its state.
pub fn ready(vm: &Vm) -> Result<(), Error> {
    if vm.vcpus.is_empty() {
        return Err(Error::NotReady { vm: vm.name.clone(), why: "it has no vCPUs" });
    }
    if vm.vcpus.iter().any(|c| c.run.lock().init.is_none()) {
        return Err(Error::NotReady { vm: vm.name.clone(), why: "a vCPU has no initial state (set_vcpu_state)" });
    }
    Ok(())
}
