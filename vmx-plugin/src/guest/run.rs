//! Running vCPUs: each online CPU's idle work picks a runnable vCPU bound
//! to it, makes its VMCS current there, and runs it until an exit that
//! needs the host (an external interrupt, a stop, the end of its slice);
//! the loader then takes pending interrupts before the next round.

use super::vm::{self, State, Vcpu, VcpuRun, Vm};
use super::vmcs;
use crate::exits::{reason, Event, ExitReason};
use crate::insn;
use crate::requests::Requests;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::Ordering;

/// Exits handled in one slice before the pCPU goes back to its idle loop
/// (which takes pending interrupts and lets other vCPUs run).
const EXITS_PER_SLICE: u32 = 256;

/// A slice's length in guest mode: 1 ms of TSC, counted by the VMX
/// preemption timer where the CPU has it. The timer is what ends the slice
/// of a guest that never exits: Bochs 2.7 does not exit on an external
/// interrupt while the guest runs with RFLAGS.IF clear.
const SLICE_US: u64 = 1000;

/// The preemption timer's start value for one slice: it counts down once
/// every 2^rate TSC ticks (IA32_VMX_MISC bits 4:0, SDM 25.5.1).
fn slice_timer() -> u64 {
    static VALUE: spin::Once<u64> = spin::Once::new();
    *VALUE.call_once(|| {
        // SAFETY: IA32_VMX_MISC exists wherever VMX does.
        let rate = unsafe { insn::rdmsr(crate::msr::IA32_VMX_MISC) } & 0x1f;
        // SAFETY: a plain query of the loader.
        let tsc_khz = unsafe { plugins::ffi::mv_tsc_khz() };
        ((tsc_khz * SLICE_US / 1000) >> rate).clamp(1, u32::MAX as u64)
    })
}

/// The loader's idle hook (`mv_idle_register`).
pub extern "C" fn idle(cpu: u32) -> i32 {
    let Some((vm, index)) = pick(cpu) else { return 0 };
    let Some(vcpu) = vm.vcpus.get(index) else { return 0 };
    let Some(mut run) = vcpu.run.try_lock() else { return 0 };
    if let Err(report) = run_slice(&vm, vcpu, &mut run, cpu) {
        drop(run);
        vm.stop(None, Some(report));
    }
    1
}

/// The next runnable vCPU bound to `cpu` (round robin over the VMs).
fn pick(cpu: u32) -> Option<(Arc<Vm>, usize)> {
    static NEXT: [core::sync::atomic::AtomicUsize; crate::plugin::MAX_CPUS] =
        [const { core::sync::atomic::AtomicUsize::new(0) }; crate::plugin::MAX_CPUS];
    let vms = vm::VMS.lock();
    // Walked twice (count, then pick) rather than collected: this runs on
    // every idle round of every CPU. A vCPU that halts in between only
    // makes this round pick nothing.
    let candidates = || {
        vms.iter().filter(|v| v.state() == State::Running).flat_map(|v| {
            v.vcpus
                .iter()
                .filter(|c| c.cpu.load(Ordering::Acquire) == cpu && runnable(v, c))
                .map(move |c| (v, c.index as usize))
        })
    };
    let count = candidates().count();
    if count == 0 {
        return None;
    }
    let skip = NEXT.get(cpu as usize)?.fetch_add(1, Ordering::Relaxed);
    let picked = candidates().nth(skip % count).map(|(v, i)| (v.clone(), i));
    drop(vms);
    picked
}

/// Whether `c` can run: not halted, or halted with an NMI or interrupt
/// posted to it or its timer due (then it is running again).
fn runnable(vm: &Vm, c: &Vcpu) -> bool {
    match c.halt.load(Ordering::Acquire) {
        vm::RUNNING => true,
        // An NMI ends any HLT, with interrupts off too.
        _ if c.nmi.load(Ordering::Acquire) => {
            c.halt.store(vm::RUNNING, Ordering::Release);
            true
        }
        vm::HALTED
            if super::apic::has_posted(vm, c.index as usize)
                || c.wake_at.load(Ordering::Acquire) <= crate::plugin::rdtsc() =>
        {
            c.halt.store(vm::RUNNING, Ordering::Release);
            true
        }
        _ => false,
    }
}

/// Makes `vcpu`'s VMCS current on `cpu`, moving it here if it was active
/// elsewhere (it was VMCLEARed there: `active_on` says where it is).
fn make_current(vcpu: &Vcpu, run: &mut VcpuRun, cpu: u32) -> Result<(), String> {
    if run.active_on != Some(cpu) {
        if run.active_on.is_some() {
            return Err(format!("vCPU {} is still active on cpu {:?}", vcpu.index, run.active_on));
        }
        // SAFETY: VMX root operation on this CPU (the caller checked); the
        // VMCS page holds the revision id and is active nowhere.
        unsafe { insn::vmclear(vcpu.vmcs_phys) }.map_err(|e| format!("VMCLEAR: {e}"))?;
        run.launched = false;
        run.active_on = Some(cpu);
    }
    // SAFETY: as above; the VMCS is clear or active on this CPU.
    unsafe { insn::vmptrld(vcpu.vmcs_phys) }.map_err(|e| format!("VMPTRLD: {e}"))?;
    crate::plugin::note_loaded(cpu, vcpu.vmcs_phys);
    if !run.launched {
        vmcs::write_host_state().map_err(|e| format!("host state: {e}"))?;
    }
    Ok(())
}

fn run_slice(vm: &Vm, vcpu: &Vcpu, run: &mut VcpuRun, cpu: u32) -> Result<(), String> {
    let Some(config) = crate::plugin::vmx_config(cpu) else { return Ok(()) };
    super::fpu::prepare_host();
    make_current(vcpu, run, cpu)?;
    if !run.initialised {
        use crate::vapic::virt::{decide, Offered, Policy};
        // `start` made sure every vCPU has its state.
        let state = run.init.ok_or_else(|| format!("vCPU {} has no initial state", vcpu.index))?;
        let policy = Policy { force_emulation: vm.emulate_apic.load(Ordering::Acquire) };
        let apic = decide(Offered::from_config(config), policy);
        run.apic.set_mode(apic);
        super::msr::fill_bitmap(run.msr_bitmap, apic);
        let pages = vmcs::Pages {
            eptp: vm.ept.eptp(),
            vpid: (vm.id * 16 + vcpu.index + 1) as u16,
            msr_bitmap: run.msr_bitmap,
            apic_page: run.apic.page(),
            apic,
        };
        vmcs::write_controls(config, &pages, &state).map_err(|e| format!("controls: {e}"))?;
        vmcs::write_guest_state(&state).map_err(|e| format!("guest state: {e}"))?;
        run.initialised = true;
    }
    let slot = &vm.slots[vcpu.index as usize];
    slot.set_pcpu(cpu);
    run.saved.load();
    run.fpu.load();
    let result = run_exits(vm, vcpu, run, config);
    run.fpu.save();
    run.saved.save();
    result
}

/// Up to [`EXITS_PER_SLICE`] entries and exits of `vcpu`, its VMCS current.
fn run_exits(vm: &Vm, vcpu: &Vcpu, run: &mut VcpuRun, config: &crate::config::VmxConfig) -> Result<(), String> {
    let slot = &vm.slots[vcpu.index as usize];
    let timed = config.has(crate::config::ACTIVATE_PREEMPTION_TIMER);
    for _ in 0..EXITS_PER_SLICE {
        if vm.state() != State::Running {
            return Ok(());
        }
        // Interrupts are off from here to the entry: a kick that comes
        // after the mode store below stays pending and forces an exit.
        if let Err(requests) = slot.enter_guest_prepare() {
            vcpu.probe.took(requests);
            if requests.contains(Requests::STOP) || requests.contains(Requests::MIGRATE) {
                return Ok(());
            }
            continue;
        }
        super::apic::before_entry(vm, vcpu, run)?;
        if timed {
            vmcs::write(vmcs::PREEMPTION_TIMER_VALUE, slice_timer()).map_err(|e| format!("{e}"))?;
        }
        vcpu.probe.entering();
        // SAFETY: VMX root operation, this vCPU's VMCS current with its
        // state written (above); interrupts are off (idle work runs so).
        let entered = unsafe { super::entry::run(&mut run.regs, run.launched) };
        slot.exit_guest();
        run.apic.guest_ran();
        entered.map_err(|e| format!("VM entry failed: {e}"))?;
        run.launched = true;
        let exit = ExitReason(vmcs::read(vmcs::EXIT_REASON) as u32);
        run.exits.record(exit);
        if exit.entry_failure() {
            return Err(format!("VM entry failed: {exit}{}", dump(run)));
        }
        reinject()?;
        match handle(vm, vcpu, run, exit)? {
            Next::Resume => {}
            Next::Host => return Ok(()),
        }
    }
    Ok(())
}

pub(super) enum Next {
    Resume,
    /// Back to the idle loop: the host has interrupts to take, or the
    /// vCPU cannot go on now.
    Host,
}

/// Completes the exiting instruction for the guest: past it, and out of
/// the STI or MOV SS shadow it may have sat in (the shadow covers only
/// that one instruction, SDM 24.4.2; a `sti; hlt` would otherwise never
/// take the interrupt that ends its halt).
fn skip_instruction() -> Result<(), String> {
    skip(vmcs::read(vmcs::EXIT_INSTRUCTION_LENGTH))
}

/// [`skip_instruction`] for an instruction of `len` bytes (an EPT
/// violation's length comes from its decoding, not the VMCS).
pub(super) fn skip(len: u64) -> Result<(), String> {
    let rip = vmcs::read(vmcs::GUEST_RIP) + len;
    vmcs::write(vmcs::GUEST_RIP, rip).map_err(|e| format!("{e}"))?;
    let blocking = vmcs::read(vmcs::GUEST_INTERRUPTIBILITY);
    if blocking & 0b11 != 0 {
        vmcs::write(vmcs::GUEST_INTERRUPTIBILITY, blocking & !0b11).map_err(|e| format!("{e}"))?;
    }
    Ok(())
}

/// An event whose delivery the exit interrupted (IDT-vectoring
/// information, SDM "Information for VM Exits During Event Delivery") is
/// injected again at the next entry, so that none is lost. An NMI's
/// delivery had set NMI blocking, which its injection requires clear.
fn reinject() -> Result<(), String> {
    let info = vmcs::read(vmcs::IDT_VECTORING_INFO) as u32;
    let error = vmcs::read(vmcs::IDT_VECTORING_ERROR) as u32;
    let Some(event) = Event::decode(info, error).map_err(|e| format!("IDT-vectoring information {info:#x}: {e}"))?
    else {
        return Ok(());
    };
    let w = |field, value| vmcs::write(field, value).map_err(|e| format!("{e}"));
    w(vmcs::ENTRY_INTERRUPTION_INFO, event.info() as u64)?;
    if let Some(code) = event.error_code {
        w(vmcs::ENTRY_EXCEPTION_ERROR, code as u64)?;
    }
    if event.needs_instruction_length() {
        w(vmcs::ENTRY_INSTRUCTION_LENGTH, vmcs::read(vmcs::EXIT_INSTRUCTION_LENGTH))?;
    }
    if event.kind == crate::exits::EventKind::Nmi {
        let blocking = vmcs::read(vmcs::GUEST_INTERRUPTIBILITY);
        w(vmcs::GUEST_INTERRUPTIBILITY, blocking & !(1 << 3))?;
    }
    Ok(())
}

/// Injects #GP(0) at the next entry (the instruction is not skipped).
fn inject_gp() -> Result<Next, String> {
    let gp = Event::gp(0);
    vmcs::write(vmcs::ENTRY_INTERRUPTION_INFO, gp.info() as u64).map_err(|e| format!("{e}"))?;
    vmcs::write(vmcs::ENTRY_EXCEPTION_ERROR, 0).map_err(|e| format!("{e}"))?;
    Ok(Next::Resume)
}

fn msr(vm: &Vm, vcpu: &Vcpu, run: &mut VcpuRun, write: bool) -> Result<Next, String> {
    let outcome = if write { super::msr::wrmsr(vm, vcpu, run)? } else { super::msr::rdmsr(vcpu, run) };
    match outcome {
        super::msr::Outcome::Done => {
            skip_instruction()?;
            Ok(Next::Resume)
        }
        super::msr::Outcome::Fault => inject_gp(),
    }
}

fn handle(vm: &Vm, vcpu: &Vcpu, run: &mut VcpuRun, exit: ExitReason) -> Result<Next, String> {
    match exit.basic() {
        reason::EXTERNAL_INTERRUPT | reason::PREEMPTION_TIMER => Ok(Next::Host),
        // The injection is made at the top of the loop.
        reason::INTERRUPT_WINDOW | reason::NMI_WINDOW => Ok(Next::Resume),
        reason::EXCEPTION_OR_NMI => {
            let info = vmcs::read(vmcs::EXIT_INTERRUPTION_INFO);
            if (info >> 8) & 7 == 2 {
                // An NMI meant for the host (NMI exiting): hand it to the
                // host's handler, as if it had arrived outside the guest.
                // SAFETY: the host IDT has an NMI handler.
                unsafe { core::arch::asm!("int 2") };
                return Ok(Next::Resume);
            }
            Err(format!("unexpected exception exit {info:#x}{}", dump(run)))
        }
        reason::CPUID => {
            cpuid(vm, vcpu, run);
            skip_instruction()?;
            Ok(Next::Resume)
        }
        reason::IO_INSTRUCTION => super::io::port(vm, vcpu, run),
        reason::HLT => {
            skip_instruction()?;
            let for_good = vmcs::read(vmcs::GUEST_RFLAGS) & (1 << 9) == 0;
            if for_good && vcpu.nmi.load(Ordering::Acquire) {
                return Ok(Next::Resume);
            }
            if !for_good {
                match super::apic::may_halt(vcpu, run) {
                    // An interrupt it can take is pending: the HLT ends at once.
                    None => return Ok(Next::Resume),
                    Some(wake_at) => vcpu.wake_at.store(wake_at, Ordering::Release),
                }
            }
            vcpu.halt.store(if for_good { vm::HALTED_FOR_GOOD } else { vm::HALTED }, Ordering::Release);
            if vm.vcpus.iter().all(|c| c.halt.load(Ordering::Acquire) == vm::HALTED_FOR_GOOD) {
                return Err(format!("every vCPU halted with interrupts off: the guest can never go on{}", dump(run)));
            }
            Ok(Next::Host)
        }
        reason::XSETBV => {
            let value = run.regs.rdx << 32 | run.regs.rax & 0xffff_ffff;
            match run.fpu.xsetbv(run.regs.rcx as u32, value) {
                Ok(()) => {
                    skip_instruction()?;
                    Ok(Next::Resume)
                }
                Err(_) => inject_gp(),
            }
        }
        reason::RDMSR => msr(vm, vcpu, run, false),
        reason::WRMSR => msr(vm, vcpu, run, true),
        reason::EPT_VIOLATION => super::io::ept_violation(vm, vcpu, run),
        reason::TRIPLE_FAULT => Err(format!("vCPU {} triple faulted{}", vcpu.index, dump(run))),
        _ => Err(format!("vCPU {}: unhandled exit: {exit}{}", vcpu.index, dump(run))),
    }
}

/// The guest's CPUID (`crate::cpuid` decides it from the host's).
fn cpuid(vm: &Vm, vcpu: &Vcpu, run: &mut VcpuRun) {
    use crate::cpuid::{guest_cpuid, GuestCpuidContext, GuestFeatures};
    let ctx = GuestCpuidContext {
        x2apic_id: vcpu.index,
        vcpu_count: vm.vcpus.len() as u32,
        // SAFETY: a plain query of the loader.
        tsc_khz: unsafe { plugins::ffi::mv_tsc_khz() } as u32,
        apic_timer_khz: super::APIC_TIMER_KHZ,
        xcr0: run.fpu.xcr0(),
        cr4_osxsave: vmcs::read(vmcs::GUEST_CR4) & (1 << 18) != 0,
        features: GuestFeatures::DEFAULT,
    };
    let host = |leaf, sub| {
        let r = core::arch::x86_64::__cpuid_count(leaf, sub);
        [r.eax, r.ebx, r.ecx, r.edx]
    };
    let [a, b, c, d] = guest_cpuid(host, run.regs.rax as u32, run.regs.rcx as u32, &ctx);
    run.regs.rax = a as u64;
    run.regs.rbx = b as u64;
    run.regs.rcx = c as u64;
    run.regs.rdx = d as u64;
}

/// The registers of a vCPU that stopped, for its report.
pub(super) fn dump(run: &VcpuRun) -> String {
    let r = &run.regs;
    format!(
        "\n  rip {:#x} rsp {:#x} rflags {:#x} cr0 {:#x} cr3 {:#x} cr4 {:#x}\n  rax {:#x} rbx {:#x} rcx {:#x} rdx \
         {:#x} rsi {:#x} rdi {:#x}",
        vmcs::read(vmcs::GUEST_RIP),
        vmcs::read(vmcs::GUEST_RSP),
        vmcs::read(vmcs::GUEST_RFLAGS),
        vmcs::read(vmcs::GUEST_CR0),
        vmcs::read(vmcs::GUEST_CR3),
        vmcs::read(vmcs::GUEST_CR4),
        r.rax,
        r.rbx,
        r.rcx,
        r.rdx,
        r.rsi,
        r.rdi
    )
}
