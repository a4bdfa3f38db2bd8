//! Accesses that may fault, and report the fault instead of crashing:
//! each faulting instruction has an entry in the `.extable` section naming
//! where to resume, and the exception handler resumes there after recording
//! the fault in the per-CPU area (the same idea as Linux's exception tables).

use crate::percpu::{self, Fault};

core::arch::global_asm!(
    r#"
.section .text.probe, "ax"
.global probe_read_u64
probe_read_u64:                 /* (addr) -> rax value, rdx 0 or 1 (faulted) */
    xor %edx, %edx
1:  mov (%rdi), %rax
    ret
2:  mov $1, %edx
    xor %eax, %eax
    ret

.global probe_write_u64
probe_write_u64:                /* (addr, value) -> rax 0 or 1 */
    xor %eax, %eax
3:  mov %rsi, (%rdi)
    ret
4:  mov $1, %eax
    ret

.global probe_ud2
probe_ud2:                      /* () -> rax 0 or 1 */
    xor %eax, %eax
5:  ud2
    ret
6:  mov $1, %eax
    ret

.global probe_rdmsr
probe_rdmsr:                    /* (msr) -> rax value, rdx 0 or 1 */
    mov %edi, %ecx
7:  rdmsr
    shl $32, %rdx
    or %rdx, %rax
    xor %edx, %edx
    ret
8:  mov $1, %edx
    xor %eax, %eax
    ret

.global probe_vmptrst
probe_vmptrst:                  /* () -> rax current-VMCS pointer, rdx 0 or 1 (faulted) */
    push %rax
9:  vmptrst (%rsp)
    pop %rax
    xor %edx, %edx
    ret
10: pop %rax
    mov $1, %edx
    xor %eax, %eax
    ret

.section .extable, "a"
.balign 8
    .quad 1b, 2b
    .quad 3b, 4b
    .quad 5b, 6b
    .quad 7b, 8b
    .quad 9b, 10b
"#,
    options(att_syntax)
);

#[repr(C)]
struct ValueOrFault {
    value: u64,
    faulted: u64,
}

extern "C" {
    fn probe_read_u64(addr: u64) -> ValueOrFault;
    fn probe_write_u64(addr: u64, value: u64) -> u64;
    fn probe_ud2() -> u64;
    fn probe_rdmsr(msr: u32) -> ValueOrFault;
    fn probe_vmptrst() -> ValueOrFault;
    static __extable_start: [u64; 0];
    static __extable_end: [u64; 0];
}

/// Where to resume after a fault at `rip`, if `rip` is a probe.
pub fn fixup(rip: u64) -> Option<u64> {
    // SAFETY: the linker script brackets the table with these symbols, and
    // the table holds pairs of addresses.
    let table = unsafe {
        let start = __extable_start.as_ptr();
        let len = __extable_end.as_ptr().offset_from(start) as usize;
        core::slice::from_raw_parts(start, len)
    };
    table.chunks_exact(2).find(|e| e[0] == rip).map(|e| e[1])
}

fn last_fault() -> Fault {
    // SAFETY: written by this CPU's exception handler during the probe that
    // just returned; nothing else touches it.
    unsafe { *percpu::current().last_fault.get() }
}

/// Records a fault for the probe that caused it (exception handler only).
pub fn record(fault: Fault) {
    // SAFETY: only this CPU uses its `last_fault`, and the probe that reads
    // it is suspended in the exception right now.
    unsafe { *percpu::current().last_fault.get() = fault };
}

/// Reads a u64 at virtual address `addr`.
pub fn read_u64(addr: u64) -> Result<u64, Fault> {
    // SAFETY: the probe only reads; a fault is caught and reported.
    let r = unsafe { probe_read_u64(addr) };
    if r.faulted != 0 { Err(last_fault()) } else { Ok(r.value) }
}

/// Writes a u64 at `addr`. On success the write happened: callers probe
/// only memory where that is harmless (or where it must fail).
pub fn write_u64(addr: u64, value: u64) -> Result<(), Fault> {
    // SAFETY: as above; the caller picks an address where a write is harmless.
    if unsafe { probe_write_u64(addr, value) } != 0 { Err(last_fault()) } else { Ok(()) }
}

/// Executes `ud2`; always returns the resulting #UD.
pub fn ud2() -> Result<(), Fault> {
    // SAFETY: the #UD is caught and reported.
    if unsafe { probe_ud2() } != 0 { Err(last_fault()) } else { Ok(()) }
}

/// RDMSR that returns the #GP of an MSR this CPU does not have.
pub fn rdmsr(msr: u32) -> Result<u64, Fault> {
    // SAFETY: reading an MSR has no side effects on the MSRs this loader
    // reads; a #GP is caught and reported.
    let r = unsafe { probe_rdmsr(msr) };
    if r.faulted != 0 { Err(last_fault()) } else { Ok(r.value) }
}

/// VMPTRST, which only VMX operation executes (elsewhere it raises #UD):
/// the proof that this CPU is in VMX operation. The current-VMCS pointer
/// (all ones when none is loaded), or the fault.
pub fn vmptrst() -> Result<u64, Fault> {
    // SAFETY: VMPTRST only stores the pointer into the probe's own stack
    // slot; a #UD is caught and reported.
    let r = unsafe { probe_vmptrst() };
    if r.faulted != 0 { Err(last_fault()) } else { Ok(r.value) }
}
