//! VM entry and exit: the one piece of assembly that swaps the general
//! registers between host and guest around VMLAUNCH/VMRESUME.
//!
//! `vmx_run(regs, launched)` saves the host's callee-saved registers and
//! the `regs` pointer on its stack, writes HOST_RSP/HOST_RIP (so the exit
//! lands at `2:` with this stack), loads the guest's registers and enters.
//! On exit it stores the guest's registers back into `regs` and returns
//! 0; if the entry itself failed it returns 1 (VMfailInvalid) or 2
//! (VMfailValid, error number in the VMCS). The flags of `test` survive
//! the register loads (MOV does not change them), so the choice between
//! VMLAUNCH and VMRESUME is made after the guest's RDI is in place.

use crate::insn::VmFail;

/// The guest's general registers outside the VMCS (RSP and RIP are in it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Regs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

const _: () = assert!(core::mem::size_of::<Regs>() == 15 * 8);

core::arch::global_asm!(
    ".pushsection .text.modvisor_vmx_run, \"ax\"",
    ".global modvisor_vmx_run",
    ".hidden modvisor_vmx_run",
    "modvisor_vmx_run:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdi",
    "mov rax, 0x6c14", // HOST_RSP
    "vmwrite rax, rsp",
    "lea rdx, [rip + 2f]",
    "mov rax, 0x6c16", // HOST_RIP
    "vmwrite rax, rdx",
    "test rsi, rsi",
    "mov rax, [rdi + 0]",
    "mov rbx, [rdi + 8]",
    "mov rcx, [rdi + 16]",
    "mov rdx, [rdi + 24]",
    "mov rsi, [rdi + 32]",
    "mov rbp, [rdi + 48]",
    "mov r8, [rdi + 56]",
    "mov r9, [rdi + 64]",
    "mov r10, [rdi + 72]",
    "mov r11, [rdi + 80]",
    "mov r12, [rdi + 88]",
    "mov r13, [rdi + 96]",
    "mov r14, [rdi + 104]",
    "mov r15, [rdi + 112]",
    "mov rdi, [rdi + 40]",
    "jnz 3f",
    "vmlaunch",
    "jmp 4f",
    "3:",
    "vmresume",
    "4:",
    // The entry failed: CF=1 VMfailInvalid, ZF=1 VMfailValid.
    "mov eax, 2",
    "mov ecx, 1",
    "cmovc eax, ecx",
    "add rsp, 8",
    "jmp 5f",
    "2:",
    // VM exit: the host state is loaded, RSP points at the saved `regs`.
    "xchg rdi, [rsp]",
    "mov [rdi + 0], rax",
    "mov [rdi + 8], rbx",
    "mov [rdi + 16], rcx",
    "mov [rdi + 24], rdx",
    "mov [rdi + 32], rsi",
    "mov [rdi + 48], rbp",
    "mov [rdi + 56], r8",
    "mov [rdi + 64], r9",
    "mov [rdi + 72], r10",
    "mov [rdi + 80], r11",
    "mov [rdi + 88], r12",
    "mov [rdi + 96], r13",
    "mov [rdi + 104], r14",
    "mov [rdi + 112], r15",
    "pop rax",
    "mov [rdi + 40], rax",
    "xor eax, eax",
    "5:",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".popsection",
);

extern "C" {
    fn modvisor_vmx_run(regs: *mut Regs, launched: u64) -> u64;
}

/// Runs the guest of the current VMCS until its next VM exit.
///
/// # Safety
/// VMX root operation on this CPU with the vCPU's VMCS current and its
/// host, control and guest state written; `launched` says whether this
/// VMCS was launched since its last VMCLEAR. Interrupts are off.
pub unsafe fn run(regs: &mut Regs, launched: bool) -> Result<(), VmFail> {
    // SAFETY: per the caller; the routine keeps the SysV callee-saved
    // registers and returns on the stack it was called on.
    match unsafe { modvisor_vmx_run(regs, launched as u64) } {
        0 => Ok(()),
        1 => Err(VmFail::Invalid),
        // SAFETY: VMfailValid leaves the error number in the current VMCS.
        _ => Err(VmFail::Valid(unsafe { crate::insn::vmread(0x4400) }.map_or(0, |v| v as u32))),
    }
}
