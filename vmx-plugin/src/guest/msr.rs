//! MSRs of a vCPU: `crate::msrs` decides how each is handled; this fills
//! the MSR bitmap from that, carries the MSRs the CPU does not switch, and
//! handles the RDMSR and WRMSR exits the bitmap leaves.

use super::vm::{Vcpu, VcpuRun, Vm};
use super::vmcs;
use crate::cpuid::GuestFeatures;
use crate::msrs::{self, Emulated, Handling};
use alloc::string::String;

/// Fills the MSR bitmap frame at `phys`: the policy's intercepts, then the
/// APIC mode's for the x2APIC range.
pub fn fill_bitmap(phys: u64, apic: crate::vapic::virt::Mode) {
    // The policy's part is the same for every vCPU: decided once (32 K
    // decisions), copied after.
    static POLICY: spin::Once<msrs::MsrBitmap> = spin::Once::new();
    let policy = POLICY.call_once(|| msrs::policy_bitmap(GuestFeatures::DEFAULT));
    // SAFETY: the vCPU's bitmap frame, identity-mapped, which the CPU reads
    // only once a VMCS points at it (after this).
    let bitmap = unsafe { &mut *(phys as *mut msrs::MsrBitmap) };
    bitmap.copy_from_slice(policy);
    apic.intercepts().apply(bitmap);
}

/// The guest's values of the MSRs it uses without exits and the CPU does
/// not switch ([`msrs::Saved`], but TSC_AUX: RDTSCP is not offered). The
/// host never uses them (no SYSCALL, no SWAPGS), so they are loaded when
/// a slice starts and saved when it ends, not at every exit.
#[derive(Clone, Copy, Debug, Default)]
pub struct SavedMsrs([u64; 5]);

const SAVED: [msrs::Saved; 5] =
    [msrs::Saved::Star, msrs::Saved::Lstar, msrs::Saved::Cstar, msrs::Saved::Fmask, msrs::Saved::KernelGsBase];

impl SavedMsrs {
    pub fn load(&self) {
        for (msr, value) in SAVED.iter().zip(self.0) {
            // SAFETY: each exists on every x86_64 CPU; the value is 0 or
            // one the guest wrote to the same MSR, which took it.
            unsafe { crate::insn::wrmsr(msr.index(), value) };
        }
    }

    pub fn save(&mut self) {
        for (msr, value) in SAVED.iter().zip(self.0.iter_mut()) {
            *value = host_msr(msr.index());
        }
    }
}

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
    // SAFETY: called for EFER, PAT and the saved MSRs, which exist on
    // every CPU with VMX.
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
        // Live in the CPU during the slice; the bitmap lets them through,
        // so this is only reached if a VMM change made them exit.
        Handling::Saved(saved) => host_msr(saved.index()),
        Handling::Unknown => return Outcome::Fault,
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
