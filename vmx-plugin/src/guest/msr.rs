//! RDMSR and WRMSR exits: `crate::msrs` decides how each MSR is handled;
//! this applies it to the vCPU. Every MSR access exits (no bitmap yet).

use super::vm::{Vcpu, VcpuRun, Vm};
use super::vmcs;
use crate::cpuid::GuestFeatures;
use crate::msrs::{self, Emulated, Handling};
use alloc::string::String;

/// What became of the access.
pub enum Outcome {
    /// Done: the instruction is skipped.
    Done,
    /// Refused: #GP into the guest, the instruction not skipped.
    Fault,
}

/// IA32_EFER and IA32_PAT are not switched on entry and exit (the
/// configuration has no load/save controls for them), so the guest runs
/// with the host's: it reads them, and may write only what they hold.
fn host_switched(field: msrs::VmcsField) -> Option<u32> {
    [(msrs::GUEST_IA32_EFER, msrs::IA32_EFER), (msrs::GUEST_IA32_PAT, msrs::IA32_PAT)]
        .into_iter()
        .find(|(f, _)| f.encoding == field.encoding)
        .map(|(_, msr)| msr)
}

fn host_msr(msr: u32) -> u64 {
    // SAFETY: EFER and PAT exist on every CPU with VMX.
    unsafe { crate::insn::rdmsr(msr) }
}

pub fn rdmsr(vcpu: &Vcpu, run: &mut VcpuRun) -> Outcome {
    let bsp = vcpu.index == 0;
    let index = run.regs.rcx as u32;
    let value = match msrs::handling(index, GuestFeatures::DEFAULT) {
        Handling::Vmcs(field) => match host_switched(field) {
            Some(msr) => host_msr(msr),
            None => vmcs::read(field.encoding as u64),
        },
        Handling::Emulated(Emulated::Fixed(f)) => f.read(bsp),
        Handling::PassThrough => crate::plugin::rdtsc(),
        Handling::Emulated(Emulated::X2Apic { .. } | Emulated::TscDeadline) => match super::apic::read(run, index) {
            Ok(v) => v,
            Err(_) => return Outcome::Fault,
        },
        // The guest-owned syscall MSRs are not switched yet.
        Handling::Saved(_) | Handling::Unknown => return Outcome::Fault,
    };
    (run.regs.rax, run.regs.rdx) = (value & 0xffff_ffff, value >> 32);
    Outcome::Done
}

/// `Err` with a report when the write asks for what modvisor cannot do.
pub fn wrmsr(vm: &Vm, vcpu: &Vcpu, run: &mut VcpuRun) -> Result<Outcome, String> {
    let bsp = vcpu.index == 0;
    let index = run.regs.rcx as u32;
    let value = (run.regs.rdx << 32) | (run.regs.rax & 0xffff_ffff);
    let ok = match msrs::handling(index, GuestFeatures::DEFAULT) {
        Handling::Vmcs(field) => match host_switched(field) {
            Some(msr) => host_msr(msr) == value,
            None => field.write_value(index, value).is_ok_and(|v| vmcs::write(field.encoding as u64, v).is_ok()),
        },
        Handling::Emulated(Emulated::Fixed(f)) => f.write(index, value, bsp).is_ok(),
        Handling::Emulated(Emulated::X2Apic { .. } | Emulated::TscDeadline) => {
            super::apic::write(vm, vcpu, run, index, value)?.is_ok()
        }
        _ => false,
    };
    Ok(if ok { Outcome::Done } else { Outcome::Fault })
}
