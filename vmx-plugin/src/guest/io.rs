//! Port I/O and MMIO exits, dispatched to the handlers registered for the
//! VM: other plugins' (through the `vm` table) and the test-guest ABI's
//! built-in console (0xE9) and exit (0xF4) ports. A port no handler has
//! stops the VM or is ignored, by the VM's policy; an EPT violation in a
//! registered MMIO range has its MOV decoded (`crate::mmio`) from bytes
//! read through the guest's page tables (`crate::gva`).

use super::run::{dump, skip, Next};
use super::vm::{Error, Vcpu, VcpuRun, Vm};
use super::vmcs;
use crate::exits::{IoDirection, IoExit};
use crate::mmio::{self, Bits, Operand};
use crate::portio::{self, Action, Owner};
use alloc::format;
use alloc::string::String;
use core::sync::atomic::Ordering;
use vmx_api::{port_policy, MmioFn, PortFn};

/// Who handles a port range: the test-guest ABI or another plugin.
pub type Port = Owner<(PortFn, usize)>;

#[derive(Clone, Copy)]
pub struct Mmio {
    f: MmioFn,
    ctx: usize,
}

fn range_error<'a>(vm: &'a Vm, what: &'static str) -> impl FnOnce(crate::ranges::Error) -> Error + 'a {
    move |why| Error::Range { vm: vm.name.clone(), what, why }
}

/// The test-guest ABI's ports become `vm`'s.
pub fn register_test_abi(vm: &Vm) -> Result<(), Error> {
    let mut ports = vm.ports.lock();
    ports.insert(0xe9, 1, Owner::Console).map_err(range_error(vm, "port"))?;
    ports.insert(0xf4, 1, Owner::Exit).map_err(range_error(vm, "port"))
}

pub fn register_port(vm: &Vm, first: u16, count: u16, f: PortFn, ctx: usize) -> Result<(), Error> {
    let end = first as u64 + count as u64;
    if end > 0x1_0000 {
        return Err(Error::Range {
            vm: vm.name.clone(),
            what: "port",
            why: crate::ranges::Error::Wraps { start: first as u64, len: count as u64 },
        });
    }
    vm.ports.lock().insert(first as u64, count as u64, Owner::Handler((f, ctx))).map_err(range_error(vm, "port"))
}

pub fn register_mmio(vm: &Vm, gpa: u64, len: u64, f: MmioFn, ctx: usize) -> Result<(), Error> {
    if gpa < vm.ram_bytes {
        return Err(Error::MmioInRam { vm: vm.name.clone(), gpa });
    }
    if gpa.saturating_add(len) > crate::ept::GUEST_PHYS_LIMIT {
        return Err(Error::Range {
            vm: vm.name.clone(),
            what: "MMIO",
            why: crate::ranges::Error::Wraps { start: gpa, len },
        });
    }
    vm.mmio.lock().insert(gpa, len, Mmio { f, ctx }).map_err(range_error(vm, "MMIO"))
}

pub fn set_policy(vm: &Vm, policy: u32) -> Result<(), Error> {
    if policy != port_policy::STOP && policy != port_policy::IGNORE {
        return Err(Error::BadPolicy(policy));
    }
    vm.port_policy.store(policy, Ordering::Release);
    Ok(())
}

/// An IN or OUT exit.
pub fn port(vm: &Vm, vcpu: &Vcpu, run: &mut VcpuRun) -> Result<Next, String> {
    let io = IoExit::decode(vmcs::read(vmcs::EXIT_QUALIFICATION)).map_err(|e| format!("{e:?}"))?;
    let rip = vmcs::read(vmcs::GUEST_RIP);
    let write = io.direction == IoDirection::Out;
    let dir = if write { "OUT to" } else { "IN from" };
    let what = || format!("vCPU {}: {dir} port {:#x} ({} bytes) at rip {rip:#x}", vcpu.index, io.port, io.size);
    if io.string {
        return Err(format!("{}: string port I/O (INS/OUTS) is not supported{}", what(), dump(run)));
    }
    let mask = mmio::mask(io.size) as u32;
    let mut value = if write { run.regs.rax as u32 & mask } else { 0 };
    let owner = vm.ports.lock().find(io.port as u64).map(|(_, h)| h);
    let ignore = vm.port_policy.load(Ordering::Acquire) == port_policy::IGNORE;
    match portio::decide(owner, ignore, write, io.size, value) {
        Action::ReadOnes => value = mask,
        Action::Drop => {}
        Action::Stop(why) => return Err(format!("{}: {why}{}", what(), dump(run))),
        Action::Console(byte) => console(vm, byte),
        Action::Exit(status) => {
            skip(vmcs::read(vmcs::EXIT_INSTRUCTION_LENGTH))?;
            vm.stop(Some(status), None);
            return Ok(Next::Host);
        }
        Action::Call((f, ctx)) => {
            let rc = f(ctx, vm.id, vcpu.index, io.port, io.size, write, &mut value);
            if rc != 0 {
                return Err(format!("{}: its handler failed with code {rc}", what()));
            }
        }
    }
    if !write {
        run.regs.rax = mmio::write_reg(run.regs.rax, (value & mask) as u64, io.size, false);
    }
    skip(vmcs::read(vmcs::EXIT_INSTRUCTION_LENGTH))?;
    Ok(Next::Resume)
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

/// An EPT violation: an access to a registered MMIO range is decoded and
/// handed to its handler; anything else stops the VM.
pub fn ept_violation(vm: &Vm, vcpu: &Vcpu, run: &mut VcpuRun) -> Result<Next, String> {
    let gpa = vmcs::read(vmcs::GUEST_PHYSICAL_ADDRESS);
    let violation = crate::ept::EptViolation::decode(vmcs::read(vmcs::EXIT_QUALIFICATION));
    let Some((_, h)) = vm.mmio.lock().find(gpa) else {
        return Err(format!(
            "vCPU {} touched guest-physical {gpa:#x}, which is not RAM ({violation}){}",
            vcpu.index,
            dump(run)
        ));
    };
    let rip = vmcs::read(vmcs::GUEST_RIP);
    let (bytes, n) = instruction(vm)?;
    let cs_ar = vmcs::read(vmcs::GUEST_CS_AR);
    let access = match (cs_ar & (1 << 13) != 0, cs_ar & (1 << 14) != 0) {
        (true, _) => mmio::decode(&bytes[..n], Bits::B64),
        (false, true) => mmio::decode(&bytes[..n], Bits::B32),
        (false, false) => Err(mmio::Error::Addressing16),
    }
    .map_err(|e| format!("vCPU {}: MMIO at {gpa:#x} by {:02x?} at rip {rip:#x}: {e}", vcpu.index, &bytes[..n]))?;
    let mut value = match access.operand {
        Operand::Reg { index, high_byte } => mmio::read_reg(gpr(run, index), access.size, high_byte),
        Operand::Imm(v) => v,
    };
    let rc = (h.f)(h.ctx, vm.id, vcpu.index, gpa, access.size, access.write, &mut value);
    if rc != 0 {
        return Err(format!("vCPU {}: the handler of MMIO {gpa:#x} at rip {rip:#x} failed with code {rc}", vcpu.index));
    }
    if let (false, Operand::Reg { index, high_byte }) = (access.write, access.operand) {
        let merged = mmio::write_reg(gpr(run, index), value, access.size, high_byte);
        set_gpr(run, index, merged)?;
    }
    skip(access.len as u64)?;
    Ok(Next::Resume)
}

/// Up to 15 bytes from the guest's RIP (fewer where the next page is not
/// mapped: the instruction may end before it).
fn instruction(vm: &Vm) -> Result<([u8; mmio::MAX_LEN], usize), String> {
    let linear = vmcs::read(vmcs::GUEST_CS_BASE).wrapping_add(vmcs::read(vmcs::GUEST_RIP));
    let paging = crate::gva::Paging {
        cr0: vmcs::read(vmcs::GUEST_CR0),
        cr3: vmcs::read(vmcs::GUEST_CR3),
        cr4: vmcs::read(vmcs::GUEST_CR4),
        long_mode: vmcs::read(vmcs::ENTRY_CONTROLS) & (1 << crate::config::IA32E_MODE_GUEST.bit) != 0,
    };
    let entry = |gpa: u64| {
        let mut e = [0u8; 8];
        copy_out(vm, gpa, &mut e).then(|| u64::from_le_bytes(e))
    };
    let bytes = |gpa, out: &mut [u8]| copy_out(vm, gpa, out);
    let mut buf = [0u8; mmio::MAX_LEN];
    let first = ((4096 - (linear & 4095)) as usize).min(mmio::MAX_LEN);
    crate::gva::read_virtual(&paging, linear, &mut buf[..first], entry, bytes)
        .map_err(|e| format!("reading the instruction at {linear:#x}: {e}"))?;
    let rest = crate::gva::read_virtual(&paging, linear + first as u64, &mut buf[first..], entry, bytes);
    Ok((buf, if rest.is_ok() { mmio::MAX_LEN } else { first }))
}

/// Copies guest RAM at `gpa` into `out`; false outside RAM.
fn copy_out(vm: &Vm, gpa: u64, out: &mut [u8]) -> bool {
    let Some(from) = vm.host(gpa, out.len() as u64) else { return false };
    // SAFETY: `host` checked the range is this VM's RAM.
    unsafe { core::ptr::copy_nonoverlapping(from, out.as_mut_ptr(), out.len()) };
    true
}

/// General register `index` in the decoder's numbering (RSP is in the VMCS).
fn gpr(run: &mut VcpuRun, index: u8) -> u64 {
    match index {
        4 => vmcs::read(vmcs::GUEST_RSP),
        i => *reg_slot(run, i),
    }
}

fn set_gpr(run: &mut VcpuRun, index: u8, value: u64) -> Result<(), String> {
    match index {
        4 => vmcs::write(vmcs::GUEST_RSP, value).map_err(|e| format!("{e}")),
        i => {
            *reg_slot(run, i) = value;
            Ok(())
        }
    }
}

fn reg_slot(run: &mut VcpuRun, index: u8) -> &mut u64 {
    let r = &mut run.regs;
    match index {
        0 => &mut r.rax,
        1 => &mut r.rcx,
        2 => &mut r.rdx,
        3 => &mut r.rbx,
        5 => &mut r.rbp,
        6 => &mut r.rsi,
        7 => &mut r.rdi,
        8 => &mut r.r8,
        9 => &mut r.r9,
        10 => &mut r.r10,
        11 => &mut r.r11,
        12 => &mut r.r12,
        13 => &mut r.r13,
        14 => &mut r.r14,
        _ => &mut r.r15,
    }
}
