//! The virtual x2APIC of each vCPU (`crate::vapic` decides; this applies
//! it), in full emulation: every x2APIC MSR access exits. Interrupts from
//! other vCPUs are posted into the target's `posted` bits, then an EVENT
//! request and a kick (or a wake of its halted pCPU) make it look before
//! its next entry; the target moves them into its APIC and injects the
//! highest one the guest can take, opening an interrupt window when it
//! cannot take one now.

use super::vm::{self, Vcpu, VcpuRun, Vm};
use super::vmcs;
use crate::requests::Requests;
use crate::vapic::{destinations, DeliveryMode, Effect, Fault, Lapic};
use alloc::format;
use alloc::string::String;
use core::sync::atomic::Ordering;
use plugins::ffi;

/// The APIC of vCPU `id` at reset, its timer counted from the host TSC.
pub fn new_lapic(id: u32) -> Lapic {
    use core::num::NonZeroU64;
    // SAFETY: a plain query of the loader.
    let tsc_hz = unsafe { ffi::mv_tsc_khz() } * 1000;
    let clock = crate::vapic::Clock {
        apic_hz: NonZeroU64::new(super::APIC_TIMER_KHZ as u64 * 1000).expect("a non-zero constant"),
        tsc_hz: NonZeroU64::new(tsc_hz).unwrap_or(NonZeroU64::MIN),
    };
    Lapic::new(id, clock)
}

/// Posts `vector` to vCPU `to` of `vm` from another vCPU and makes it look.
fn post(vm: &Vm, to: usize, vector: u8) {
    vm.posted[to][vector as usize / 64].fetch_or(1 << (vector % 64), Ordering::SeqCst);
    let slot = &vm.slots[to];
    slot.make_request(Requests::EVENT);
    // SAFETY: plain calls of the loader.
    let me = unsafe { ffi::mv_current_cpu() };
    let target = slot.kick(me).or_else(|| {
        // Not in guest mode: a halted vCPU's pCPU may be halting too.
        let v = vm.vcpus.get(to)?;
        (v.halt.load(Ordering::Acquire) == vm::HALTED).then(|| v.cpu.load(Ordering::Acquire))
    });
    if let Some(cpu) = target {
        // SAFETY: as above (a CPU that left refuses it: nothing to wake).
        let _ = unsafe { ffi::mv_kick(cpu) };
    }
}

/// Whether vCPU `index` has interrupts posted it has not taken.
pub fn has_posted(vm: &Vm, index: usize) -> bool {
    vm.posted[index].iter().any(|w| w.load(Ordering::Acquire) != 0)
}

/// Sends what an ICR write asked for.
fn send(vm: &Vm, vcpu: &Vcpu, run: &mut VcpuRun, ipi: crate::vapic::Ipi) -> Result<(), String> {
    match ipi.mode {
        DeliveryMode::Fixed | DeliveryMode::LowestPriority => {}
        mode => {
            return Err(format!(
                "vCPU {} sent an IPI of delivery mode {mode:?}, which modvisor does not emulate",
                vcpu.index
            ))
        }
    }
    let ids = vm.vcpus.iter().map(|c| c.index);
    for to in destinations(ipi, vcpu.index, ids) {
        if to == vcpu.index {
            run.lapic.accept(ipi.vector);
        } else {
            post(vm, to as usize, ipi.vector);
        }
    }
    Ok(())
}

/// RDMSR of an x2APIC register or IA32_TSC_DEADLINE.
pub fn read(run: &mut VcpuRun, msr: u32) -> Result<u64, Fault> {
    run.lapic.read_msr(msr, crate::plugin::rdtsc())
}

/// WRMSR of an x2APIC register or IA32_TSC_DEADLINE; `Err` with a report
/// when the write asks for something modvisor cannot do.
pub fn write(vm: &Vm, vcpu: &Vcpu, run: &mut VcpuRun, msr: u32, value: u64) -> Result<Result<(), Fault>, String> {
    match run.lapic.write_msr(msr, value, crate::plugin::rdtsc()) {
        // Another plugin's hook may deliver it (IPI virtualization's, say).
        Ok(Effect::SendIpi(_)) if super::hooks::icr_write(vm.id, vcpu.index, value) => Ok(Ok(())),
        Ok(Effect::SendIpi(ipi)) => send(vm, vcpu, run, ipi).map(Ok),
        Ok(_) => Ok(Ok(())),
        Err(f) => Ok(Err(f)),
    }
}

/// Interruptibility-state bits that block an external interrupt: STI and
/// MOV SS blocking (SDM 24.4.2).
const BLOCKED: u64 = 0b11;
const RFLAGS_IF: u64 = 1 << 9;
const VALID: u64 = 1 << 31;

/// Before an entry: takes posted interrupts and timer expiries into the
/// APIC, then injects the highest pending interrupt if the guest can take
/// it, else asks for an exit when it can (interrupt-window exiting).
pub fn before_entry(vm: &Vm, vcpu: &Vcpu, run: &mut VcpuRun) -> Result<(), String> {
    for (word, bits) in vm.posted[vcpu.index as usize].iter().enumerate() {
        let mut pending = bits.swap(0, Ordering::AcqRel);
        while pending != 0 {
            let bit = pending.trailing_zeros();
            pending &= pending - 1;
            run.lapic.accept((word * 64) as u8 + bit as u8);
        }
    }
    run.lapic.expire_timer(crate::plugin::rdtsc());
    let Some(vector) = run.lapic.pending() else { return window(false) };
    let injecting = vmcs::read(vmcs::ENTRY_INTERRUPTION_INFO) & VALID != 0;
    let open =
        vmcs::read(vmcs::GUEST_RFLAGS) & RFLAGS_IF != 0 && vmcs::read(vmcs::GUEST_INTERRUPTIBILITY) & BLOCKED == 0;
    if injecting || !open {
        return window(true);
    }
    run.lapic.ack(vector);
    vmcs::write(vmcs::ENTRY_INTERRUPTION_INFO, VALID | vector as u64).map_err(|e| format!("{e}"))?;
    window(false)
}

/// Sets or clears interrupt-window exiting.
fn window(on: bool) -> Result<(), String> {
    let bit = 1 << crate::config::INTERRUPT_WINDOW_EXITING.bit;
    let primary = vmcs::read(vmcs::PRIMARY_CONTROLS);
    let wanted = if on { primary | bit } else { primary & !bit };
    if wanted != primary {
        vmcs::write(vmcs::PRIMARY_CONTROLS, wanted).map_err(|e| format!("{e}"))?;
    }
    Ok(())
}

/// At a HLT exit: whether the vCPU may halt (nothing it could take is
/// pending), and when its timer would wake it.
pub fn may_halt(run: &mut VcpuRun) -> Option<u64> {
    run.lapic.expire_timer(crate::plugin::rdtsc());
    run.lapic.pending().is_none().then(|| run.lapic.next_timer_deadline().unwrap_or(u64::MAX))
}
