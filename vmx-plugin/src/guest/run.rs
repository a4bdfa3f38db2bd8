//! Running vCPUs: each online CPU's idle work picks a runnable vCPU bound
//! to it, makes its VMCS current there, and runs it until an exit that
//! needs the host (an external interrupt, a stop, the end of its slice);
//! the loader then takes pending interrupts before the next round.

use super::exits;
use super::vm::{self, State, Vcpu, VcpuRun, Vm};
use super::vmcs;
use crate::insn;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::Ordering;

/// Exits handled in one slice before the pCPU goes back to its idle loop
/// (which takes pending interrupts and lets other vCPUs run).
const EXITS_PER_SLICE: u32 = 256;

/// The loader's idle hook (`mv_idle_register`).
pub extern "C" fn idle(cpu: u32) -> i32 {
    let Some((vm, index)) = pick(cpu) else { return 0 };
    let vcpu = &vm.vcpus[index];
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
    let mut candidates = vms.iter().filter(|v| v.state() == State::Running).flat_map(|v| {
        v.vcpus
            .iter()
            .filter(|c| c.cpu.load(Ordering::Acquire) == cpu && !c.run.try_lock().is_some_and(|r| r.halted))
            .map(move |c| (v.clone(), c.index as usize))
    });
    let skip = NEXT.get(cpu as usize)?.fetch_add(1, Ordering::Relaxed);
    let all: alloc::vec::Vec<_> = candidates.by_ref().collect();
    (!all.is_empty()).then(|| all[skip % all.len()].clone())
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
    make_current(vcpu, run, cpu)?;
    if !run.initialised {
        let pages = vmcs::Pages { eptp: vm.ept[0] | 6 | (3 << 3), vpid: (vm.id * 16 + vcpu.index + 1) as u16 };
        vmcs::write_controls(config, &pages).map_err(|e| format!("controls: {e}"))?;
        let rsp = vm::stack_top(vm, vcpu.index);
        vmcs::write_guest_state(config, vm.entry.load(Ordering::Acquire), rsp)
            .map_err(|e| format!("guest state: {e}"))?;
        run.initialised = true;
    }
    for _ in 0..EXITS_PER_SLICE {
        if vm.state() != State::Running {
            return Ok(());
        }
        // SAFETY: VMX root operation, this vCPU's VMCS current with its
        // state written (above); interrupts are off (idle work runs so).
        unsafe { super::entry::run(&mut run.regs, run.launched) }.map_err(|e| format!("VM entry failed: {e}"))?;
        run.launched = true;
        let reason = vmcs::read(vmcs::EXIT_REASON);
        let basic = (reason & 0xffff) as u32;
        run.exits.count(basic);
        if reason & (1 << 31) != 0 {
            return Err(format!("VM entry failed, exit reason {basic}{}", dump(run)));
        }
        match handle(vm, vcpu, run, basic)? {
            Next::Resume => {}
            Next::Host => return Ok(()),
        }
    }
    Ok(())
}

const IA32_APIC_BASE: u32 = 0x1b;

enum Next {
    Resume,
    /// Back to the idle loop: the host has interrupts to take, or the
    /// vCPU cannot go on now.
    Host,
}

fn skip_instruction() -> Result<(), String> {
    let rip = vmcs::read(vmcs::GUEST_RIP) + vmcs::read(vmcs::EXIT_INSTRUCTION_LENGTH);
    vmcs::set(vmcs::GUEST_RIP, rip).map_err(|e| format!("{e}"))
}

fn handle(vm: &Vm, vcpu: &Vcpu, run: &mut VcpuRun, reason: u32) -> Result<Next, String> {
    match reason {
        exits::EXTERNAL_INTERRUPT => Ok(Next::Host),
        exits::EXCEPTION_OR_NMI => {
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
        exits::CPUID => {
            cpuid(vcpu, run);
            skip_instruction()?;
            Ok(Next::Resume)
        }
        exits::IO => io(vm, run),
        exits::HLT => {
            skip_instruction()?;
            if vmcs::read(vmcs::GUEST_RFLAGS) & (1 << 9) == 0 {
                return Err(format!("vCPU {} halted with interrupts off: it can never wake{}", vcpu.index, dump(run)));
            }
            run.halted = true;
            Ok(Next::Host)
        }
        exits::RDMSR if run.regs.rcx as u32 == IA32_APIC_BASE => {
            // The local APIC at its usual base, enabled, in x2APIC mode;
            // vCPU 0 is the bootstrap processor.
            let value = 0xfee0_0000 | 1 << 11 | 1 << 10 | ((vcpu.index == 0) as u64) << 8;
            (run.regs.rax, run.regs.rdx) = (value & 0xffff_ffff, value >> 32);
            skip_instruction()?;
            Ok(Next::Resume)
        }
        exits::RDMSR | exits::WRMSR => {
            // An MSR this VMM does not give the guest: #GP, as a CPU
            // without it does (the instruction is not skipped).
            let gp = (1 << 31) | (3 << 8) | (1 << 11) | 13;
            vmcs::set(vmcs::ENTRY_INTERRUPTION_INFO, gp).map_err(|e| format!("{e}"))?;
            vmcs::set(vmcs::ENTRY_EXCEPTION_ERROR, 0).map_err(|e| format!("{e}"))?;
            Ok(Next::Resume)
        }
        exits::EPT_VIOLATION => Err(format!(
            "vCPU {} touched guest-physical {:#x}, which is not RAM (qualification {:#x}){}",
            vcpu.index,
            vmcs::read(vmcs::GUEST_PHYSICAL_ADDRESS),
            vmcs::read(vmcs::EXIT_QUALIFICATION),
            dump(run)
        )),
        exits::TRIPLE_FAULT => Err(format!("vCPU {} triple faulted{}", vcpu.index, dump(run))),
        exits::INVALID_GUEST_STATE => Err(format!("invalid guest state{}", dump(run))),
        other => Err(format!("vCPU {}: unhandled exit reason {other}{}", vcpu.index, dump(run))),
    }
}

/// The guest's CPUID: the host's, with VMX and SMX hidden, the
/// hypervisor bit set, and modvisor's leaves at 0x40000000.
fn cpuid(vcpu: &Vcpu, run: &mut VcpuRun) {
    let (leaf, sub) = (run.regs.rax as u32, run.regs.rcx as u32);
    let [a, b, c, d] = match leaf {
        0x4000_0000 => [0x4000_0010, u32::from_le_bytes(*b"modv"), u32::from_le_bytes(*b"isor"), 0],
        0x4000_0001..=0x4000_00ff => [0; 4],
        _ => {
            let r = core::arch::x86_64::__cpuid_count(leaf, sub);
            let mut v = [r.eax, r.ebx, r.ecx, r.edx];
            if leaf == 1 {
                v[2] = (v[2] & !(1 << 5 | 1 << 6)) | 1 << 31;
                v[1] = (v[1] & 0x00ff_ffff) | vcpu.index << 24;
            }
            v
        }
    };
    run.regs.rax = a as u64;
    run.regs.rbx = b as u64;
    run.regs.rcx = c as u64;
    run.regs.rdx = d as u64;
}

/// Port I/O: the guest ABI's console (0xE9) and exit (0xF4) ports.
fn io(vm: &Vm, run: &mut VcpuRun) -> Result<Next, String> {
    let q = vmcs::read(vmcs::EXIT_QUALIFICATION);
    let (size, input, string, port) = ((q & 7) + 1, q & (1 << 3) != 0, q & (1 << 4) != 0, (q >> 16) as u16);
    if string || input {
        return Err(format!(
            "unhandled port access: {} of port {port:#x}{}",
            if input { "in" } else { "outs" },
            dump(run)
        ));
    }
    skip_instruction()?;
    match port {
        0xe9 => {
            console(vm, run.regs.rax as u8);
            Ok(Next::Resume)
        }
        0xf4 if size == 4 => {
            vm.stop(Some(run.regs.rax as u32), None);
            Ok(Next::Host)
        }
        _ => Err(format!("unhandled port access: out of {size} bytes to port {port:#x}")),
    }
}

/// One byte of the guest's console: whole lines go to the host console,
/// prefixed with the VM's name.
fn console(vm: &Vm, byte: u8) {
    let mut line = vm.line.lock();
    if byte == b'\n' || line.len() >= 200 {
        plugins::println!("[{}] {}", vm.name, line.as_str());
        line.clear();
    }
    if byte != b'\n' && byte != b'\r' {
        line.push(if byte.is_ascii_graphic() || byte == b' ' { byte as char } else { '.' });
    }
}

/// The registers of a vCPU that stopped, for its report.
fn dump(run: &VcpuRun) -> String {
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
