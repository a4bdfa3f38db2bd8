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
    /// `vm`: no VM with that id.
    pub const NO_SUCH_VM: i32 = -14;
    /// `vm`: the request is refused (logged with the reason: bad name,
    /// memory size, vCPU count or CPU, no such guest file, not a guest
    /// ELF, the VM is in the wrong state, no memory).
    pub const REFUSED: i32 = -15;
    /// A CPU going offline holds vCPUs and no other CPU has VMX on to take
    /// them: the offline is refused.
    pub const VCPUS_STUCK: i32 = -16;
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

/// A VM's state, as [`VmTable::state`] reports it.
pub mod vm_state {
    pub const CREATED: i32 = 0;
    pub const LOADED: i32 = 1;
    pub const RUNNING: i32 = 2;
    pub const PAUSED: i32 = 3;
    /// Ended: the guest wrote its exit status, or it was stopped (killed,
    /// or a fault it cannot survive; `vm info` has the report).
    pub const STOPPED: i32 = 4;
}

/// The `vm` table (1.x): VMs and their guests, as the `vm` shell command
/// drives them, and (1.1) what a plugin needs to drive a VM itself: its
/// memory, vCPUs created one by one with their initial state, port and
/// MMIO handlers, pause and resume, and hooks at the VM's and vCPUs' life
/// events.
#[repr(C)]
pub struct VmTable {
    /// Creates VM `name` with `mem_mib` MiB of RAM and `vcpus` vCPUs; vCPU
    /// i is bound to `cpus[i % ncpus]`, or spread over the CPUs with VMX on
    /// (the boot CPU last) when `ncpus` is 0. With `vcpus` 0 the VM has RAM
    /// and EPT only, and [`VmTable::create_vcpu`] adds its vCPUs. The VM's
    /// id (> 0), or [`code::REFUSED`].
    pub create: extern "C" fn(name: plugins::StrRef, mem_mib: u64, vcpus: u32, cpus: *const u32, ncpus: u32) -> i64,
    /// Loads the guest ELF at `path` in the initrd (`guests/hello.elf`).
    pub load: extern "C" fn(id: u32, path: plugins::StrRef) -> i32,
    pub start: extern "C" fn(id: u32) -> i32,
    pub kill: extern "C" fn(id: u32) -> i32,
    /// Destroys a VM that is not running; every frame and byte it held
    /// goes back.
    pub destroy: extern "C" fn(id: u32) -> i32,
    /// The [`vm_state`]; `*status` gets the guest's exit status, or -1 if
    /// it wrote none.
    pub state: extern "C" fn(id: u32, status: *mut i64) -> i32,
    /// VM exits of every vCPU so far.
    pub exits: extern "C" fn(id: u32) -> u64,
    /// Copies `len` bytes of guest-physical memory from `gpa` to `out`; 0,
    /// or [`code::REFUSED`] outside guest RAM.
    pub read: extern "C" fn(id: u32, gpa: u64, out: *mut u8, len: usize) -> i32,
    /// The pCPU vCPU `vcpu` is bound to, or a negative code.
    pub vcpu_cpu: extern "C" fn(id: u32, vcpu: u32) -> i32,
    /// For `make bench`: TSC ticks of one request to 4 set ids of 4096
    /// vCPU slots (none in guest mode) by the set-bit walk, into `*mask`,
    /// and by a scan of all 4096 ids, into `*scan`.
    pub bench_request_mask: extern "C" fn(mask: *mut u64, scan: *mut u64),
    // 1.1.0
    /// 1: emulate the x2APIC (every access exits) even where the CPU could
    /// virtualize it; 0: virtualize where the CPU can (the default). Only
    /// before the VM first runs: else [`code::REFUSED`].
    pub set_apic_emulation: extern "C" fn(id: u32, emulate: u32) -> i32,
    /// vCPU `vcpu`'s [`apic_mode`], or a negative code.
    pub apic_mode: extern "C" fn(id: u32, vcpu: u32) -> i32,
    /// Copies `len` bytes from `from` to guest-physical `gpa`; 0, or
    /// [`code::REFUSED`] outside guest RAM.
    pub write: extern "C" fn(id: u32, gpa: u64, from: *const u8, len: usize) -> i32,
    /// Adds vCPU `vcpu_id` (below 16; ids need not be dense) bound to
    /// `cpu`, to a VM that has not started. The hooks' `vcpu_precreate`
    /// runs first, under the VM's lock, and may refuse: its nonzero code is
    /// returned. 0, or [`code::REFUSED`].
    pub create_vcpu: extern "C" fn(id: u32, vcpu_id: u32, cpu: u32) -> i32,
    /// Sets vCPU `vcpu`'s state for its first entry (before the VM
    /// starts); refused (logged with the rule) when it breaks one.
    pub set_vcpu_state: extern "C" fn(id: u32, vcpu: u32, init: *const VcpuInit) -> i32,
    /// Calls `handler(ctx, ..)` for IN and OUT to ports `first ..
    /// first + count` of the VM. Refused when the range overlaps one
    /// registered before (the test-guest ABI's 0xE9 and 0xF4 included).
    pub register_port: extern "C" fn(id: u32, first: u16, count: u16, handler: PortFn, ctx: usize) -> i32,
    /// What a port no handler has does ([`port_policy`]).
    pub set_port_policy: extern "C" fn(id: u32, policy: u32) -> i32,
    /// Calls `handler(ctx, ..)` for the guest's loads and stores (MOV) to
    /// guest-physical `gpa .. gpa + len`, which must lie outside RAM and
    /// not overlap another range.
    pub register_mmio: extern "C" fn(id: u32, gpa: u64, len: u64, handler: MmioFn, ctx: usize) -> i32,
    /// A running VM's vCPUs leave guest mode (this returns when they have)
    /// and are not run until [`VmTable::resume`].
    pub pause: extern "C" fn(id: u32) -> i32,
    pub resume: extern "C" fn(id: u32) -> i32,
    /// Installs `*hooks`, which must stay valid until they are removed (a
    /// static of the plugin); one set at a time: refused while another is
    /// installed. The registering plugin removes them in its `fini`; they
    /// are dropped when vmx-plugin ends.
    pub register_hooks: extern "C" fn(hooks: *const VmHooks) -> i32,
    /// Removes the hooks installed from `hooks` (the same pointer), once no
    /// CPU is inside one of them; refused if those are not the ones
    /// installed.
    pub unregister_hooks: extern "C" fn(hooks: *const VmHooks) -> i32,
    // The request/kick stress test's probe requests.
    /// Makes a probe request (one the vCPUs only count) pending on the
    /// vCPUs set in `vcpus` (bit i: vCPU i) and kicks those in guest mode
    /// on other CPUs; `tickets` (64 entries) gets each target's ticket,
    /// and `bounds` (64 entries) the VM-entry count by which each must take
    /// it (its count right after the request, one more if this call kicked
    /// it). The IPIs sent, or a negative code ([`code::REFUSED`]: a bit past
    /// the VM's vCPUs).
    pub probe_send: extern "C" fn(id: u32, vcpus: u64, tickets: *mut u32, bounds: *mut u64) -> i64,
    /// Waits (at most 200 ms) until every vCPU set in `vcpus` acknowledged
    /// the request of its ticket: it runs no guest code before taking it.
    /// Then `entries` (64 entries) gets each vCPU's VM entries so far. 0,
    /// how many did not acknowledge in time, or a negative code.
    pub probe_wait: extern "C" fn(id: u32, vcpus: u64, tickets: *const u32, entries: *mut u64) -> i64,
    /// vCPU `vcpu`'s probe requests taken, its VM entries when it took the
    /// last, and its VM entries, into `out[0..3]`. 0 or a negative code.
    pub probe_counts: extern "C" fn(id: u32, vcpu: u32, out: *mut u64) -> i32,
}

/// How a vCPU's x2APIC is carried out, as [`VmTable::apic_mode`] reports.
pub mod apic_mode {
    /// Not yet: the mode is fixed at the vCPU's first run.
    pub const UNDECIDED: i32 = 0;
    /// APIC-register virtualization and virtual-interrupt delivery.
    pub const VIRTUALIZED: i32 = 1;
    /// Every x2APIC MSR access exits to the VMM.
    pub const EMULATED: i32 = 2;
}

/// A port handler: `size` is 1, 2 or 4; for an OUT (`write`) `*value`
/// holds the value, for an IN the handler stores it there (the low `size`
/// bytes count). 0, or a nonzero code that stops the VM with a report.
/// Runs on the vCPU's CPU with interrupts off and must not block.
pub type PortFn =
    extern "C" fn(ctx: usize, vm: u32, vcpu: u32, port: u16, size: u8, write: bool, value: *mut u32) -> i32;

/// An MMIO handler, like [`PortFn`] with the guest-physical address and
/// a `size` of 1, 2, 4 or 8.
pub type MmioFn =
    extern "C" fn(ctx: usize, vm: u32, vcpu: u32, gpa: u64, size: u8, write: bool, value: *mut u64) -> i32;

/// [`VmTable::set_port_policy`]: what IN and OUT to a port no handler has
/// do.
pub mod port_policy {
    /// The VM stops with a report naming the port, direction, size and RIP
    /// (the default).
    pub const STOP: u32 = 0;
    /// IN reads all ones, OUT is dropped.
    pub const IGNORE: u32 = 1;
}

/// [`VcpuInit::mode`].
pub mod vcpu_mode {
    /// 64-bit mode with the caller's paging and GDT.
    pub const LONG: u32 = 0;
    /// Real mode (unrestricted guest): `cs:rip`, `ss:rsp`.
    pub const REAL: u32 = 1;
}

/// A vCPU's state at its first entry ([`VmTable::set_vcpu_state`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuInit {
    /// A [`vcpu_mode`].
    pub mode: u32,
    /// Real mode: CS and SS (base = selector * 16, limit 0xFFFF), and DS,
    /// ES, FS, GS = `ds`. Long mode: the selectors, whose descriptors the
    /// guest's GDT must hold: CS a 64-bit code segment, the others flat
    /// data (or 0).
    pub cs: u16,
    pub ss: u16,
    pub ds: u16,
    pub _pad: u16,
    /// Long mode only: CR0 (PE and PG set), CR3, CR4 (PAE set), EFER (LME
    /// set; EFER is not switched on entry yet, so other bits must be ones
    /// the host's EFER has), the GDT.
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub gdt_base: u64,
    pub gdt_limit: u16,
    pub _pad2: [u16; 3],
    pub rip: u64,
    pub rsp: u64,
    /// Bit 1 is forced on (it always reads 1).
    pub rflags: u64,
    /// RAX, RBX, RCX, RDX, RSI, RDI, RBP, R8 .. R15.
    pub gprs: [u64; 15],
}

/// Hooks another plugin installs ([`VmTable::register_hooks`]); every
/// one may be absent. They run on the CPU that does the operation, must
/// not block, and must not install or remove hooks.
#[repr(C)]
pub struct VmHooks {
    /// Passed to every hook.
    pub ctx: usize,
    /// After VM `vm` was created, before any of its vCPUs.
    pub vm_created: Option<extern "C" fn(ctx: usize, vm: u32)>,
    /// Before vCPU `vcpu_id` is created, under the VM's lock (no other
    /// vCPU of the VM is created meanwhile): nonzero refuses the creation
    /// with that code.
    pub vcpu_precreate: Option<extern "C" fn(ctx: usize, vm: u32, vcpu_id: u32) -> i32>,
    pub vcpu_created: Option<extern "C" fn(ctx: usize, vm: u32, vcpu_id: u32)>,
    /// When the VM is destroyed, for each of its vCPUs, then `vm_destroyed`.
    pub vcpu_destroyed: Option<extern "C" fn(ctx: usize, vm: u32, vcpu_id: u32)>,
    pub vm_destroyed: Option<extern "C" fn(ctx: usize, vm: u32)>,
    /// A write of `icr` to the x2APIC ICR of `vcpu` that asks for an IPI
    /// (on the sending vCPU's CPU, in its exit handler): 1 if the hook
    /// delivered it, 0 to have vmx-plugin deliver it.
    pub icr_write: Option<extern "C" fn(ctx: usize, vm: u32, vcpu: u32, icr: u64) -> i32>,
}

// SAFETY: `VmTable` is the `vm` table; it only grows, at its end.
unsafe impl plugins::Interface for VmTable {
    const NAME: &'static str = "vm";
    const VERSION: &'static str = "1.1.0";
}
