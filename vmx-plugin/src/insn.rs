//! The VMX instructions and the register accesses vmx-plugin makes, each in
//! one small unsafe function. VMX instructions report failure in RFLAGS
//! (SDM Vol. 3C, 31.2 "Conventions"): CF=1 is VMfailInvalid (no current
//! VMCS to hold an error number), ZF=1 is VMfailValid with the
//! VM-instruction error number in the current VMCS.

use core::arch::asm;

/// How a VMX instruction failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmFail {
    Invalid,
    /// The VM-instruction error number (SDM Vol. 3C, 31.4).
    Valid(u32),
}

impl core::fmt::Display for VmFail {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VmFail::Invalid => write!(f, "VMfailInvalid"),
            VmFail::Valid(n) => write!(f, "VMfailValid, VM-instruction error {n}"),
        }
    }
}

const CF: u64 = 1 << 0;
const ZF: u64 = 1 << 6;
/// VMCS field: VM-instruction error (32-bit read-only data field).
const VM_INSTRUCTION_ERROR: u64 = 0x4400;

/// Decodes RFLAGS as a VMX instruction left them.
fn outcome(rflags: u64) -> Result<(), VmFail> {
    if rflags & CF != 0 {
        Err(VmFail::Invalid)
    } else if rflags & ZF != 0 {
        // SAFETY: ZF=1 means VMfailValid, so a current VMCS exists and
        // holds the error number.
        Err(VmFail::Valid(unsafe { vmread(VM_INSTRUCTION_ERROR) }.map_or(0, |v| v as u32)))
    } else {
        Ok(())
    }
}

/// Enters VMX operation with the VMXON region at physical `region`.
///
/// # Safety
/// CR4.VMXE set, CR0/CR4 within the fixed bits, IA32_FEATURE_CONTROL
/// locked with VMX on, and `region` a 4 KiB-aligned page holding the VMCS
/// revision id that stays allocated until VMXOFF.
pub unsafe fn vmxon(region: u64) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: per the caller.
    unsafe { asm!("vmxon [{0}]", "pushfq", "pop {1}", in(reg) &region, out(reg) rflags) };
    outcome(rflags)
}

/// Leaves VMX operation.
///
/// # Safety
/// The CPU is in VMX root operation (else #UD).
pub unsafe fn vmxoff() -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: per the caller.
    unsafe { asm!("vmxoff", "pushfq", "pop {0}", out(reg) rflags) };
    outcome(rflags)
}

// VMXOFF that reports a #UD instead of ending the run, for the emergency
// callback, which may interrupt this CPU between setting CR4.VMXE and
// VMXON: the loader resumes at `2:` when `1:` faults (the pair is in
// `mv_extable`, which `exception_table` registers; "R" keeps it from
// `--gc-sections`, "w" lets its addresses be relocated at load). Returns RFLAGS in rax,
// and in rdx 0, or 1 if it faulted.
core::arch::global_asm!(
    r#"
.pushsection .text.vmx_vmxoff_checked, "ax"
.global vmx_vmxoff_checked
.hidden vmx_vmxoff_checked
vmx_vmxoff_checked:
    xor %edx, %edx
1:  vmxoff
    pushfq
    pop %rax
    ret
2:  mov $1, %edx
    xor %eax, %eax
    ret

.section mv_extable, "awR"
.balign 8
    .quad 1b, 2b
.popsection
"#,
    options(att_syntax)
);

#[repr(C)]
struct FlagsOrFault {
    rflags: u64,
    faulted: u64,
}

extern "C" {
    fn vmx_vmxoff_checked() -> FlagsOrFault;
    static __start_mv_extable: [u64; 0];
    static __stop_mv_extable: [u64; 0];
}

/// Registers this plugin's exception table with the loader (at init).
pub fn exception_table() -> bool {
    // The linker brackets `mv_extable` with these symbols, and the section
    // holds pairs of addresses; the loader checks them too.
    let (start, stop) = (&raw const __start_mv_extable, &raw const __stop_mv_extable);
    let (start, stop) = (start.cast::<u64>(), stop.cast::<u64>());
    // SAFETY: both point into (or just past) the one section.
    let words = unsafe { stop.offset_from(start) };
    // SAFETY: the table is this image's; the loader checks what it holds.
    unsafe { plugins::ffi::mv_exception_table(start, words as usize / 2) == 0 }
}

/// Leaves VMX operation if the CPU is in it: `Ok(false)` when VMXOFF
/// raised #UD (not in VMX operation), `Ok(true)` when it left.
pub fn vmxoff_if_on() -> Result<bool, VmFail> {
    // SAFETY: VMXOFF outside VMX operation faults, and the fault resumes
    // at the table's pair; inside it leaves VMX operation, which the
    // caller wants.
    let r = unsafe { vmx_vmxoff_checked() };
    if r.faulted != 0 {
        return Ok(false);
    }
    outcome(r.rflags).map(|()| true)
}

/// Makes the VMCS at physical `vmcs` inactive and not current, writing its
/// cached state back to memory.
///
/// # Safety
/// VMX root operation; `vmcs` a VMCS region of this VMX revision.
pub unsafe fn vmclear(vmcs: u64) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: per the caller.
    unsafe { asm!("vmclear [{0}]", "pushfq", "pop {1}", in(reg) &vmcs, out(reg) rflags) };
    outcome(rflags)
}

/// Makes the VMCS at physical `vmcs` current on this CPU.
///
/// # Safety
/// As [`vmclear`]; the VMCS is not current on another CPU.
pub unsafe fn vmptrld(vmcs: u64) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: per the caller.
    unsafe { asm!("vmptrld [{0}]", "pushfq", "pop {1}", in(reg) &vmcs, out(reg) rflags) };
    outcome(rflags)
}

/// Reads `field` of the current VMCS.
///
/// # Safety
/// VMX root operation.
pub unsafe fn vmread(field: u64) -> Result<u64, VmFail> {
    let (value, rflags): (u64, u64);
    // SAFETY: per the caller.
    unsafe { asm!("vmread {0}, {1}", "pushfq", "pop {2}", out(reg) value, in(reg) field, out(reg) rflags) };
    // Not through `outcome`: a failing VMREAD of the error field itself
    // must not recurse.
    match rflags & (CF | ZF) {
        0 => Ok(value),
        f if f & CF != 0 => Err(VmFail::Invalid),
        _ => Err(VmFail::Valid(0)),
    }
}

/// Writes `field` of the current VMCS.
///
/// # Safety
/// VMX root operation, and `value` right for `field` (the guest or host
/// state it sets is trusted).
pub unsafe fn vmwrite(field: u64, value: u64) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: per the caller.
    unsafe { asm!("vmwrite {0}, {1}", "pushfq", "pop {2}", in(reg) field, in(reg) value, out(reg) rflags) };
    outcome(rflags)
}

/// The all-context type of INVEPT and INVVPID.
pub const ALL_CONTEXT: u64 = 2;

/// INVEPT/INVVPID descriptor (SDM Vol. 3C, 31.3): two quadwords.
#[repr(C, align(16))]
pub struct Descriptor(pub [u64; 2]);

/// Invalidates EPT-derived translations of type `kind` (1 single-context
/// for the EPTP in `desc.0[0]`, 2 all-context).
///
/// # Safety
/// VMX root operation with EPT supported and `kind` allowed by
/// IA32_VMX_EPT_VPID_CAP.
pub unsafe fn invept(kind: u64, desc: &Descriptor) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: per the caller.
    unsafe { asm!("invept {0}, [{1}]", "pushfq", "pop {2}", in(reg) kind, in(reg) desc, out(reg) rflags) };
    outcome(rflags)
}

/// Invalidates translations tagged with the VPID in `desc.0[0]` by `kind`
/// (0 individual address, 1 single context, 2 all contexts, 3 single
/// context retaining globals).
///
/// # Safety
/// VMX root operation with VPID supported and `kind` allowed by
/// IA32_VMX_EPT_VPID_CAP.
pub unsafe fn invvpid(kind: u64, desc: &Descriptor) -> Result<(), VmFail> {
    let rflags: u64;
    // SAFETY: per the caller.
    unsafe { asm!("invvpid {0}, [{1}]", "pushfq", "pop {2}", in(reg) kind, in(reg) desc, out(reg) rflags) };
    outcome(rflags)
}

/// RDMSR.
///
/// # Safety
/// This CPU has MSR `msr` (else #GP): the caller checked CPUID and the
/// capability MSRs that announce it.
pub unsafe fn rdmsr(msr: u32) -> u64 {
    // SAFETY: per the caller.
    unsafe { x86_64::registers::model_specific::Msr::new(msr).read() }
}

/// WRMSR.
///
/// # Safety
/// As [`rdmsr`], and `value` is valid and harmless for `msr`.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: per the caller.
    unsafe { x86_64::registers::model_specific::Msr::new(msr).write(value) }
}

/// The CPUID words the compatibility check reads, on this CPU.
pub fn cpuid_words() -> crate::compat::Cpuid {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    let l7 = (__cpuid(0).eax >= 7).then(|| __cpuid_count(7, 0));
    // Subleaf 0's EAX is the last subleaf of leaf 7.
    let l7_1 = l7.filter(|l| l.eax >= 1).map_or(0, |_| __cpuid_count(7, 1).eax);
    crate::compat::Cpuid {
        leaf1_ecx: __cpuid(1).ecx,
        leaf7_ebx: l7.map_or(0, |l| l.ebx),
        leaf7_ecx: l7.map_or(0, |l| l.ecx),
        leaf7_1_eax: l7_1,
    }
}

pub fn cr0() -> u64 {
    x86_64::registers::control::Cr0::read_raw()
}

pub fn cr4() -> u64 {
    x86_64::registers::control::Cr4::read_raw()
}

/// CR4.VMXE (bit 13).
pub const CR4_VMXE: u64 = 1 << 13;

/// Sets or clears CR4.VMXE on this CPU.
///
/// # Safety
/// Clearing it is only allowed outside VMX operation (else #GP).
pub unsafe fn set_cr4_vmxe(on: bool) {
    let cr4 = cr4();
    let new = if on { cr4 | CR4_VMXE } else { cr4 & !CR4_VMXE };
    // SAFETY: only VMXE changes, per the caller.
    unsafe { x86_64::registers::control::Cr4::write_raw(new) };
}

/// CR4.OSFXSR (bit 9) and CR4.OSXSAVE (bit 18): FXSAVE/FXRSTOR carry the
/// SSE state, and XSETBV/XSAVE/XRSTOR exist.
pub const CR4_OSFXSR: u64 = 1 << 9;
pub const CR4_OSXSAVE: u64 = 1 << 18;

/// Sets `bits` (of [`CR4_OSFXSR`] and [`CR4_OSXSAVE`]) in CR4 on this CPU.
///
/// # Safety
/// CPUID offers what the bits enable (FXSR, XSAVE).
pub unsafe fn set_cr4_fpu(bits: u64) {
    // SAFETY: only the FPU bits change, which the host itself never uses
    // (it has no SSE code) and which the caller checked exist.
    unsafe { x86_64::registers::control::Cr4::write_raw(cr4() | bits) };
}

/// XSETBV: XCR0 := `value`.
///
/// # Safety
/// CR4.OSXSAVE is set and `value` is a valid XCR0 for this CPU (else #GP).
pub unsafe fn xsetbv(value: u64) {
    // SAFETY: per the caller.
    unsafe { asm!("xsetbv", in("ecx") 0, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack)) };
}

/// XSAVE64 of the components in `mask` (and XCR0) into `area`.
///
/// # Safety
/// CR4.OSXSAVE is set; `area` is 64-byte aligned, writable and as large
/// as CPUID.0xD.0 EBX says for the current XCR0.
pub unsafe fn xsave(area: u64, mask: u64) {
    // SAFETY: per the caller.
    unsafe {
        asm!("xsave64 [{}]", in(reg) area, in("eax") mask as u32, in("edx") (mask >> 32) as u32, options(nostack))
    };
}

/// XRSTOR64 of the components in `mask` (and XCR0) from `area`.
///
/// # Safety
/// As [`xsave`], and `area` holds a valid XSAVE image (an XSAVE's, or
/// zeroes with a valid MXCSR).
pub unsafe fn xrstor(area: u64, mask: u64) {
    // SAFETY: per the caller.
    unsafe {
        asm!("xrstor64 [{}]", in(reg) area, in("eax") mask as u32, in("edx") (mask >> 32) as u32, options(nostack))
    };
}

/// FXSAVE64 into the 512 bytes at `area`.
///
/// # Safety
/// CR4.OSFXSR is set; `area` is 16-byte aligned and writable.
pub unsafe fn fxsave(area: u64) {
    // SAFETY: per the caller.
    unsafe { asm!("fxsave64 [{}]", in(reg) area, options(nostack)) };
}

/// FXRSTOR64 from the 512 bytes at `area`.
///
/// # Safety
/// As [`fxsave`], and `area` holds a valid image (MXCSR reserved bits 0).
pub unsafe fn fxrstor(area: u64) {
    // SAFETY: per the caller.
    unsafe { asm!("fxrstor64 [{}]", in(reg) area, options(nostack)) };
}
