//! One small function per instruction the guests need. None of the asm
//! blocks says `nomem`: MSR writes send IPIs and program timers, port
//! writes are output, and each must stay ordered with the memory accesses
//! around it.

use core::arch::asm;

/// What CPUID returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpuid {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// CPUID leaf `leaf`, subleaf `subleaf` (an exiting instruction under VMX).
pub fn cpuid(leaf: u32, subleaf: u32) -> Cpuid {
    let (eax, ebx, ecx, edx): (u32, u64, u32, u32);
    // SAFETY: CPUID only reports; RBX, which LLVM reserves, is saved and
    // restored around it.
    unsafe {
        asm!(
            "mov {rbx_copy}, rbx",
            "cpuid",
            "xchg {rbx_copy}, rbx",
            rbx_copy = out(reg) ebx,
            inout("eax") leaf => eax,
            inout("ecx") subleaf => ecx,
            out("edx") edx,
            options(nostack, preserves_flags),
        );
    }
    Cpuid { eax, ebx: ebx as u32, ecx, edx }
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC reads a counter; CR4.TSD is clear at CPL 0 anyway.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nostack, preserves_flags)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Reads MSR `msr`.
///
/// # Safety
/// The MSR exists, or a #GP is expected ([`crate::idt::catch`]); without
/// an IDT a #GP ends the VM.
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller vouches for the MSR; RDMSR writes EAX:EDX only.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nostack, preserves_flags)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes `value` to MSR `msr`.
///
/// # Safety
/// As for [`rdmsr`], and the write must not break what Rust relies on
/// (paging, the stack, EFER.LME).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller vouches for the MSR and the value.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags));
    }
}

/// `out dx, al`.
pub fn out8(port: u16, value: u8) {
    // SAFETY: the guests only use the ABI's ports, which the VMM handles;
    // a port write touches no guest memory.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nostack, preserves_flags)) };
}

/// `out dx, eax`.
pub fn out32(port: u16, value: u32) {
    // SAFETY: as in `out8`.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nostack, preserves_flags)) };
}

/// Masks interrupts.
pub fn cli() {
    // SAFETY: clearing IF affects only when interrupts arrive.
    unsafe { asm!("cli", options(nostack)) };
}

/// Unmasks interrupts.
pub fn sti() {
    // SAFETY: handlers run on the interrupted stack and restore every
    // register they clobber (`idt.rs`); vectors nobody handles end the VM.
    unsafe { asm!("sti", options(nostack)) };
}

/// Halts until the next interrupt (forever with interrupts off).
pub fn hlt() {
    // SAFETY: HLT only waits.
    unsafe { asm!("hlt", options(nostack, preserves_flags)) };
}

/// `sti; hlt`: halts with interrupts on. STI's interrupt shadow covers the
/// HLT, so an interrupt pending before cannot slip in between and be
/// missed: it wakes the HLT. Returns with interrupts on.
pub fn sti_hlt() {
    // SAFETY: as in `sti` and `hlt`.
    unsafe { asm!("sti", "hlt", options(nostack)) };
}

/// Whether RFLAGS.IF is set.
pub fn interrupts_enabled() -> bool {
    let rflags: u64;
    // SAFETY: pushes and pops one word on the current stack.
    unsafe { asm!("pushfq", "pop {}", out(reg) rflags, options(preserves_flags)) };
    rflags & (1 << 9) != 0
}

/// Loads IDTR.
///
/// # Safety
/// `base..base + limit + 1` holds gates valid for as long as any vCPU
/// uses them (limit 0 makes every exception a triple fault).
pub unsafe fn lidt(base: u64, limit: u16) {
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let pointer = Pointer { limit, base };
    // SAFETY: the caller vouches for the table; LIDT reads the 10 bytes.
    unsafe { asm!("lidt [{}]", in(reg) &pointer, options(nostack, preserves_flags)) };
}

/// CR3: the PML4's guest-physical address (bits 51:12) and flags.
pub fn read_cr3() -> u64 {
    let cr3: u64;
    // SAFETY: reading CR3 has no effect.
    unsafe { asm!("mov {}, cr3", out(reg) cr3, options(nostack, preserves_flags)) };
    cr3
}

/// MFENCE: orders an x2APIC MSR write before a later one (the SDM wants
/// it between the LVT timer write and IA32_TSC_DEADLINE, Vol. 3A 11.5.4.1).
/// It is not an SSE instruction that needs CR4.OSFXSR.
pub fn mfence() {
    // SAFETY: a fence only orders.
    unsafe { asm!("mfence", options(nostack, preserves_flags)) };
}

/// UD2: raises #UD; returns only if a handler skips it ([`crate::idt::catch`]).
pub fn ud2() {
    // SAFETY: the #UD either ends the VM or is skipped by the handler,
    // which resumes right after these two bytes with every register kept.
    unsafe { asm!("ud2", options(nostack)) };
}

/// Reads the u64 at guest-physical `address` with one `mov`.
///
/// # Safety
/// `address` is mapped (or the read is meant to stop the VM).
pub unsafe fn read_physical(address: u64) -> u64 {
    let value: u64;
    // SAFETY: the caller vouches for the address; the identity map makes
    // it the guest-virtual address too.
    unsafe { asm!("mov {}, qword ptr [{}]", out(reg) value, in(reg) address, options(nostack, preserves_flags)) };
    value
}

/// Spins on one jump, never exiting to the VMM and never pausing.
pub fn spin_forever() -> ! {
    // SAFETY: a jump to itself.
    unsafe { asm!("2: jmp 2b", options(noreturn, nostack)) }
}

pub const CR4_OSFXSR: u64 = 1 << 9;
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
pub const CR4_OSXSAVE: u64 = 1 << 18;

pub fn read_cr4() -> u64 {
    let cr4: u64;
    // SAFETY: reading CR4 changes nothing.
    unsafe { asm!("mov {}, cr4", out(reg) cr4, options(nostack, preserves_flags)) };
    cr4
}

/// Writes CR4.
///
/// # Safety
/// The value keeps paging as it is (PAE) and sets only bits CPUID offers.
pub unsafe fn write_cr4(value: u64) {
    // SAFETY: per the caller.
    unsafe { asm!("mov cr4, {}", in(reg) value, options(nostack, preserves_flags)) };
}

/// XSETBV of `value` into XCR`index` (an exiting instruction under VMX).
///
/// # Safety
/// CR4.OSXSAVE is set, and either the value is valid or a #GP is expected
/// ([`crate::idt::catch`]).
pub unsafe fn xsetbv(index: u32, value: u64) {
    // SAFETY: per the caller.
    unsafe {
        asm!("xsetbv", in("ecx") index, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack))
    };
}

/// XGETBV of XCR0.
///
/// # Safety
/// CR4.OSXSAVE is set.
pub unsafe fn xgetbv() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: per the caller.
    unsafe { asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nostack, preserves_flags)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// LDMXCSR.
///
/// # Safety
/// CR4.OSFXSR is set and reserved bits of `value` are 0.
pub unsafe fn ldmxcsr(value: u32) {
    // SAFETY: per the caller.
    unsafe { asm!("ldmxcsr [{}]", in(reg) &value, options(nostack, preserves_flags)) };
}

/// STMXCSR.
///
/// # Safety
/// CR4.OSFXSR is set.
pub unsafe fn stmxcsr() -> u32 {
    let mut value = 0u32;
    // SAFETY: per the caller; writes `value` only.
    unsafe { asm!("stmxcsr [{}]", in(reg) &mut value, options(nostack, preserves_flags)) };
    value
}
