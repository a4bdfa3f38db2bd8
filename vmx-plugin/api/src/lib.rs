//! The `vmx` interface (1.x): the `#[repr(C)]` table other plugins (and
//! the loader's tests) reach, and the error codes of vmx-plugin's init and
//! of its hotplug callback, which cpuhp reports in `failed` events. A
//! crate of its own, so that a consumer depends on the interface, not on
//! vmx-plugin's code.
#![no_std]

/// Negative error codes.
pub mod code {
    /// "VMX not supported by CPU N": no VMX in CPUID, or a control modvisor
    /// requires is missing.
    pub const NOT_SUPPORTED: i32 = -1;
    /// "VMX disabled by firmware on CPU N": IA32_FEATURE_CONTROL locked
    /// with VMX outside SMX off.
    pub const FIRMWARE_DISABLED: i32 = -2;
    /// "inconsistent VMX configuration on CPU N: <field>".
    pub const INCONSISTENT: i32 = -3;
    /// VMXON (or VMXOFF) failed.
    pub const VMX_INSTRUCTION: i32 = -4;
    pub const NO_MEMORY: i32 = -5;
    /// The system is going down: no load now (the KVM rule).
    pub const BUSY: i32 = -6;
    /// cpuhp refused the ONLINE state (its setup undid every CPU).
    pub const CPUHP: i32 = -7;
    /// The loader refused the system hooks.
    pub const HOOKS: i32 = -8;
    /// A swap's state blob this version cannot read.
    pub const BAD_STATE: i32 = -9;
    /// The callback ran on a CPU other than the one it was called for.
    pub const WRONG_CPU: i32 = -10;
    /// `load_vmcs` on a CPU without VMX on.
    pub const NOT_ENABLED: i32 = -11;
    /// A VMCS field read back other than written.
    pub const VMCS_MISMATCH: i32 = -12;
    /// CR0 or CR4 outside IA32_VMX_CRx_FIXED0/1: VMXON would fault.
    pub const FIXED_BITS: i32 = -13;
}

/// The `vmx` table.
#[repr(C)]
pub struct Vmx {
    /// 1 if `cpu` is in VMX operation (VMXON done, not yet VMXOFF).
    pub cpu_enabled: extern "C" fn(cpu: u32) -> u32,
    /// Physical address of `cpu`'s VMXON region, 0 if it has none.
    pub vmxon_region: extern "C" fn(cpu: u32) -> u64,
    /// Makes `cpu`'s VMCS current there and round-trips a field through
    /// it (VMCLEAR, VMPTRLD, VMWRITE, VMREAD); it stays loaded until the
    /// CPU leaves VMX. 0 or an error code.
    pub load_vmcs: extern "C" fn(cpu: u32) -> i32,
    /// Physical address of the VMCS loaded on `cpu`, 0 when none.
    pub loaded_vmcs: extern "C" fn(cpu: u32) -> u64,
    /// The cpuhp state id of `vmx:online`.
    pub state_id: extern "C" fn() -> u32,
    /// TSC ticks of `cpu`'s last per-CPU enable (check + VMXON) and
    /// disable (VMCLEAR + VMXOFF), 0 before the first.
    pub enable_ticks: extern "C" fn(cpu: u32) -> u64,
    pub disable_ticks: extern "C" fn(cpu: u32) -> u64,
    /// Which build answers (1 for 1.0.0, 2 for 1.1.0): for swap tests.
    pub generation: extern "C" fn() -> u32,
    /// VMXONs executed on `cpu` since the first load, swaps included: a
    /// swap that kept VMX on leaves it unchanged.
    pub enable_count: extern "C" fn(cpu: u32) -> u64,
    /// Makes `cpu`'s next enable see another VMCS revision id in its
    /// capability MSRs, as a CPU of another model would: for tests of the
    /// refusal where every CPU is the same model. 0, or
    /// [`code::WRONG_CPU`] for a CPU number out of range.
    pub mismatch_next: extern "C" fn(cpu: u32) -> i32,
}

// SAFETY: `Vmx` is the `vmx` table; it only grows, at its end.
unsafe impl plugins::Interface for Vmx {
    const NAME: &'static str = "vmx";
    const VERSION: &'static str = "1.0.0";
}
