//! The plugin: VMX on every online CPU through the cpuhp ONLINE state
//! `vmx:online`, in KVM's order (kvm_main.c after the 2024 rework): check
//! the boot CPU, register the state (its startup enables VMX on every online
//! CPU), register the system hooks, and only then check whether the system
//! is already going down; unload undoes it in reverse.
//!
//! Per-CPU state lives in [`CPUS`], shaped to host VMCSs later: the VMXON
//! region, the VMCS loaded on the CPU (none until guests run), the enabled
//! flag that makes enable and disable idempotent, and why VMX is off.

use crate::compat::{self, Action, Probe, Reference};
use crate::config::{Policy, VmxConfig};
use crate::insn;
use crate::msr::Caps;
use alloc::alloc::Layout;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use cpuhp_api::{section, Cpuhp};
use plugins::runtime::Required;
use plugins::{ffi, StrRef, SystemHooks};
use vmx_api::{code, VmTable, Vmx};

mod command;
mod guests;
mod state;

pub use guests::{
    clear_vmcs_on, ept_caps, forget_loaded, free_vmcs, global_config, new_vmcs, note_loaded, vmcs_revision, vmx_config,
};

#[cfg(feature = "v1")]
const GENERATION: u32 = 1;
#[cfg(feature = "v2")]
const GENERATION: u32 = 2;

/// CPUs this plugin can track (the loader's MADT limit).
pub const MAX_CPUS: usize = 64;
const PAGE: usize = 4096;
/// A VMXON region or VMCS: one page, page-aligned (SDM Vol. 3C, 25.11.5).
const PAGE_LAYOUT: Layout = match Layout::from_size_align(PAGE, PAGE) {
    Ok(l) => l,
    Err(_) => panic!("a page is a valid layout"),
};

/// Why VMX is off on a CPU, for `vmx` (0: it never came online).
mod off {
    pub const OFFLINE: u32 = 0;
    pub const SHUTDOWN: u32 = 1;
    pub const EMERGENCY: u32 = 2;
    /// Otherwise: the negated error code of the refused enable.
    pub const fn refused(code: i32) -> u32 {
        (-code) as u32 + 16
    }
}

struct PerCpu {
    enabled: AtomicBool,
    /// Virtual address of the VMXON region (identity of the loader's heap
    /// page), 0 until the CPU first enables VMX.
    region: AtomicU64,
    /// Virtual address of the CPU's VMCS page, 0 until first loaded.
    vmcs: AtomicU64,
    /// Physical address of the VMCS loaded on the CPU, 0 when none.
    loaded_vmcs: AtomicU64,
    off_reason: AtomicU32,
    enable_ticks: AtomicU64,
    disable_ticks: AtomicU64,
    /// VMXONs executed on the CPU since the first load (carried across
    /// swaps): a swap that kept VMX on leaves it unchanged.
    enables: AtomicU64,
}

static CPUS: [PerCpu; MAX_CPUS] = [const {
    PerCpu {
        enabled: AtomicBool::new(false),
        region: AtomicU64::new(0),
        vmcs: AtomicU64::new(0),
        loaded_vmcs: AtomicU64::new(0),
        off_reason: AtomicU32::new(off::OFFLINE),
        enable_ticks: AtomicU64::new(0),
        disable_ticks: AtomicU64::new(0),
        enables: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// What modvisor insists on: guests will run on EPT.
const POLICY: Policy = Policy { require_ept: true };

/// The boot CPU's configuration and CR4 view, computed at load; every CPU
/// must match it.
static GLOBAL: spin::Once<Reference> = spin::Once::new();
static STATE_ID: AtomicU32 = AtomicU32::new(0);
static CPUHP: spin::Once<Option<Required<Cpuhp>>> = spin::Once::new();
/// Set by an init that found its predecessor running (a swap): the state,
/// the cpuhp state and VMX itself come with the state import.
static TAKING_OVER: AtomicBool = AtomicBool::new(false);

fn cpuhp() -> Option<&'static Required<Cpuhp>> {
    CPUHP.call_once(Required::get).as_ref()
}

fn current_cpu() -> usize {
    // SAFETY: a plain query of the loader.
    unsafe { ffi::mv_current_cpu() as usize }
}

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Per CPU: its next enable reads IA32_VMX_BASIC with another VMCS
/// revision id, as a CPU of another model would report (`mismatch_next`):
/// the way to see a refused CPU where every CPU is the same model. Used
/// once, like cpuhp's injected failures.
static MISMATCH: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// The configuration this CPU's capability MSRs give (read only where
/// CPUID announces VMX); `mismatch` flips a revision id bit as read.
fn this_config(cpuid: &compat::Cpuid, mismatch: bool) -> Result<VmxConfig, crate::config::ConfigError> {
    if !cpuid.has_vmx() {
        // Not looked at by the checks: no VMX is refused before.
        return Err(crate::config::ConfigError::UnreadableMsr(crate::msr::IA32_VMX_BASIC));
    }
    // SAFETY: CPUID announces VMX, so the VMX capability MSRs exist;
    // `Caps::read` reads the optional ones only where announced.
    let mut caps = Caps::read(|msr| Some(unsafe { insn::rdmsr(msr) }))?;
    if mismatch {
        caps.basic ^= 1;
    }
    VmxConfig::new(&caps, POLICY)
}

/// Logs why VMX cannot be entered or left on a CPU and gives cpuhp the
/// same words for the `failed` event (from inside its ONLINE callbacks;
/// elsewhere cpuhp ignores them).
fn refuse(why: core::fmt::Arguments) {
    let reason = plugins::runtime::Buf::format(why);
    plugins::warn!("{}", reason.as_str());
    if let Some(cpuhp) = cpuhp() {
        cpuhp.call(|t| (t.set_failure_reason)(StrRef::borrowed(reason.as_str())));
    }
}

/// The error code cpuhp reports for a refusal.
fn refusal_code(e: &compat::Error) -> i32 {
    match e {
        compat::Error::NotSupported { .. } | compat::Error::Config { .. } => code::NOT_SUPPORTED,
        compat::Error::DisabledByFirmware { .. } => code::FIRMWARE_DISABLED,
        compat::Error::Cr4Mismatch { .. } | compat::Error::Inconsistent { .. } => code::INCONSISTENT,
    }
}

/// KVM's per-CPU compatibility check, then VMXON. Runs on `cpu`.
fn enable(cpu: usize) -> Result<(), i32> {
    let c = &CPUS[cpu];
    if c.enabled.load(Ordering::Acquire) {
        return Ok(());
    }
    let t0 = rdtsc();
    let global = GLOBAL.get().ok_or(code::NOT_SUPPORTED)?;
    let cpuid = insn::cpuid_words();
    // SAFETY: IA32_FEATURE_CONTROL exists wherever CPUID announces VMX.
    let feature_control = if cpuid.has_vmx() { unsafe { insn::rdmsr(crate::msr::IA32_FEATURE_CONTROL) } } else { 0 };
    let mismatch = MISMATCH[cpu].swap(false, Ordering::AcqRel);
    let probe = Probe { cpu: cpu as u32, cpuid, feature_control, config: this_config(&cpuid, mismatch) };
    let action = compat::check(&probe, global).map_err(|refusal| {
        refuse(format_args!("{refusal}"));
        refusal_code(&refusal)
    })?;
    if let Action::LockAndEnable { feature_control } = action {
        // SAFETY: the MSR exists (VMX is announced) and is unlocked; the
        // value sets the lock and VMX outside SMX, which VMXON needs.
        unsafe { insn::wrmsr(crate::msr::IA32_FEATURE_CONTROL, feature_control) };
    }
    let config = global.config();
    let checks = [
        ("CR0", insn::cr0(), config.cr0_fixed0, config.cr0_fixed1),
        ("CR4", insn::cr4() | insn::CR4_VMXE, config.cr4_fixed0, config.cr4_fixed1),
    ];
    for (name, value, fixed0, fixed1) in checks {
        if let Err(f) = compat::fixed_bits(value, fixed0, fixed1) {
            refuse(format_args!(
                "{name} of CPU {cpu} ({value:#x}) does not meet VMX's fixed bits: must set {:#x}, must clear {:#x}",
                f.missing, f.extra
            ));
            return Err(code::FIXED_BITS);
        }
    }
    // The VMXON region: allocated on the CPU's first enable, kept while
    // the plugin is loaded.
    let region = page(&c.region, config.revision_id)?;
    // SAFETY: CR0 and CR4 with VMXE meet the fixed bits (checked above).
    unsafe { insn::set_cr4_vmxe(true) };
    // SAFETY: CR4.VMXE is set, IA32_FEATURE_CONTROL allows VMXON, and the
    // region holds the revision id.
    let r = unsafe { insn::vmxon(region) };
    if let Err(e) = r {
        // SAFETY: VMXON failed, so the CPU is outside VMX operation.
        unsafe { insn::set_cr4_vmxe(false) };
        refuse(format_args!("VMXON failed on CPU {cpu}: {e}"));
        return Err(code::VMX_INSTRUCTION);
    }
    c.enabled.store(true, Ordering::Release);
    c.enables.fetch_add(1, Ordering::AcqRel);
    if let Err(e) = flush_guest_tlbs(global.config()) {
        refuse(format_args!("cannot flush guest translations on CPU {cpu}: {e}"));
        let _ = disable(cpu, off::refused(code::VMX_INSTRUCTION));
        return Err(code::VMX_INSTRUCTION);
    }
    c.enable_ticks.store(rdtsc() - t0, Ordering::Release);
    Ok(())
}

/// Drops EPT- and VPID-tagged translations a previous user of the CPU
/// (firmware, an earlier kernel) may have left, before any guest runs
/// (KVM's hardware enable does the same with a global INVEPT).
fn flush_guest_tlbs(config: &VmxConfig) -> Result<(), insn::VmFail> {
    let all = insn::Descriptor([0, 0]);
    if config.has(crate::config::ENABLE_EPT) {
        // SAFETY: in VMX root operation; the configuration has EPT only
        // with all-context INVEPT.
        unsafe { insn::invept(insn::ALL_CONTEXT, &all) }?;
    }
    if config.has(crate::config::ENABLE_VPID) && config.ept_vpid_caps & crate::msr::VPID_INVVPID_ALL_CONTEXT != 0 {
        // SAFETY: in VMX root operation, all-context INVVPID checked here.
        unsafe { insn::invvpid(insn::ALL_CONTEXT, &all) }?;
    }
    Ok(())
}

/// On the calling CPU (in VMX operation): makes its VMCS current and
/// round-trips a field through it, the first use of the slot a vCPU's VMCS
/// will take. The VMCS stays loaded: the CPU's teardown must VMCLEAR it.
extern "C" fn load_vmcs_here(_: usize) -> i32 {
    let cpu = current_cpu();
    let (c, Some(global)) = (&CPUS[cpu], GLOBAL.get()) else { return code::NOT_ENABLED };
    if !c.enabled.load(Ordering::Acquire) {
        return code::NOT_ENABLED;
    }
    let Ok(vmcs) = page(&c.vmcs, global.config().revision_id) else { return code::NO_MEMORY };
    const GUEST_ES_SELECTOR: u64 = 0x0800;
    let value = 0x28 + cpu as u64 * 8;
    // VMX root operation (checked above, interrupts are off so nothing
    // turns it off under us); the VMCS page is ours and carries the
    // revision id; loading it makes the field accesses valid.
    // SAFETY: as above.
    let r = unsafe { insn::vmclear(vmcs) }
        // SAFETY: as above; the page is clear.
        .and_then(|()| unsafe { insn::vmptrld(vmcs) })
        // SAFETY: the VMCS is current.
        .and_then(|()| unsafe { insn::vmwrite(GUEST_ES_SELECTOR, value) })
        // SAFETY: the VMCS is current.
        .and_then(|()| unsafe { insn::vmread(GUEST_ES_SELECTOR) });
    c.loaded_vmcs.store(vmcs, Ordering::Release);
    match r {
        Ok(v) if v == value => 0,
        Ok(_) => code::VMCS_MISMATCH,
        Err(e) => {
            plugins::warn!("VMCS access on CPU {cpu} failed: {e}");
            code::VMX_INSTRUCTION
        }
    }
}

/// The page in `slot` (allocated and cleared on first use, kept while the
/// plugin is loaded), stamped with `revision` as a VMXON region or VMCS
/// must be; its physical address. The page must not be in use. A page used
/// before is not cleared again: VMXON and VMCLEAR need only the revision
/// id, and the enable path is timed (`vmx-enable`).
fn page(slot: &AtomicU64, revision: u32) -> Result<u64, i32> {
    let mut virt = slot.load(Ordering::Acquire);
    if virt == 0 {
        // SAFETY: a non-zero size; freed in `free_regions`, or by the
        // version this one is swapped for, which adopts it.
        virt = unsafe { alloc::alloc::alloc(PAGE_LAYOUT) } as u64;
        if virt == 0 {
            return Err(code::NO_MEMORY);
        }
        // SAFETY: the page was just allocated, so nothing else uses it.
        unsafe { core::ptr::write_bytes(virt as *mut u8, 0, PAGE) };
        slot.store(virt, Ordering::Release);
    }
    // SAFETY: the page is ours and idle (per the caller); bit 31 of the
    // first word must be 0 (SDM Vol. 3C, 25.2 and 25.11.5).
    unsafe { (virt as *mut u32).write_volatile(revision & 0x7fff_ffff) };
    // SAFETY: a plain query of the loader.
    match unsafe { ffi::mv_virt_to_phys(virt as *const u8) } {
        u64::MAX => Err(code::NO_MEMORY),
        phys => Ok(phys),
    }
}

/// VMCLEAR what is loaded, VMXOFF, CR4.VMXE off. Runs on `cpu`.
fn disable(cpu: usize, reason: u32) -> Result<(), i32> {
    let c = &CPUS[cpu];
    if !c.enabled.load(Ordering::Acquire) {
        return Ok(());
    }
    let t0 = rdtsc();
    let vmcs = c.loaded_vmcs.swap(0, Ordering::AcqRel);
    // Cleared before VMXOFF: an emergency callback that interrupts us
    // between the two finds the flag off but CR4.VMXE on, and turns VMX
    // off itself.
    c.enabled.store(false, Ordering::Release);
    // SAFETY: `enabled` said this CPU is in VMX root operation; the VMCS
    // was made current here.
    let cleared = if vmcs != 0 { unsafe { insn::vmclear(vmcs) } } else { Ok(()) };
    // SAFETY: in VMX root operation, as above.
    let r = cleared.and_then(|()| unsafe { insn::vmxoff() });
    if let Err(e) = r {
        refuse(format_args!("leaving VMX on CPU {cpu} failed: {e}"));
        c.enabled.store(true, Ordering::Release);
        return Err(code::VMX_INSTRUCTION);
    }
    // SAFETY: VMXOFF succeeded, so clearing VMXE is allowed.
    unsafe { insn::set_cr4_vmxe(false) };
    c.off_reason.store(reason, Ordering::Release);
    c.disable_ticks.store(rdtsc() - t0, Ordering::Release);
    Ok(())
}

/// ONLINE startup, on the CPU coming up.
extern "C" fn online(cpu: u32, _: usize) -> i32 {
    if cpu as usize != current_cpu() {
        return code::WRONG_CPU;
    }
    match enable(cpu as usize) {
        Ok(()) => 0,
        Err(e) => {
            CPUS[cpu as usize].off_reason.store(off::refused(e), Ordering::Release);
            e
        }
    }
}

/// ONLINE teardown, on the CPU going down.
extern "C" fn offline(cpu: u32, _: usize) -> i32 {
    if cpu as usize != current_cpu() {
        return code::WRONG_CPU;
    }
    // The vCPUs go first: their VMCSs must be VMCLEARed before VMXOFF.
    // With nowhere to go they would never run again: the offline is
    // refused instead (cpuhp rolls it back).
    let to = guests::other_vmx_cpu(cpu);
    let bound = crate::guest::bound_to(cpu);
    if bound > 0 && to.is_none() {
        plugins::warn!("cpu {cpu} cannot go offline: its {bound} vCPUs have no other CPU with VMX on to move to");
        return code::VCPUS_STUCK;
    }
    let moved = crate::guest::evacuate(cpu, to);
    if let (true, Some(to)) = (moved > 0, to) {
        plugins::info!("cpu {cpu} goes offline: {moved} vCPUs move to cpu {to}");
        // Its idle loop may be halted with nothing to run: it has now.
        // SAFETY: a plain call of the loader (a CPU that left meanwhile
        // refuses it, and its vCPUs move on again).
        let _ = unsafe { ffi::mv_kick(to) };
    }
    disable(cpu as usize, off::OFFLINE).map_or_else(|e| e, |()| 0)
}

extern "C" fn disable_here(reason: usize) -> i32 {
    disable(current_cpu(), reason as u32).map_or_else(|e| e, |()| 0)
}

/// Orderly reboot or power-off: VMX off on every CPU that has it on
/// (KVM's kvm_shutdown), each on its own CPU.
extern "C" fn on_shutdown(_: u32) {
    for cpu in (0..MAX_CPUS).filter(|&c| CPUS[c].enabled.load(Ordering::Acquire)) {
        let mut result = 0;
        // SAFETY: `disable_here` is ours and `result` is live.
        let r = unsafe {
            ffi::mv_run_on(cpu as u32, disable_here, off::SHUTDOWN as usize, ffi::run_on::IRQS_OFF, &mut result)
        };
        if r != 0 || result != 0 {
            plugins::warn!("shutdown: cannot leave VMX on CPU {cpu} ({r}, {result}); the emergency round will");
        }
    }
}

/// The emergency round (NMI context): no locks, no logs. Decides by
/// CR4.VMXE rather than by the flag, so that an enable or disable it
/// interrupted is covered too; VMXOFF goes through the exception table, as
/// the NMI may have come between setting CR4.VMXE and VMXON.
extern "C" fn on_emergency() -> i32 {
    if insn::cr4() & insn::CR4_VMXE == 0 {
        return 0;
    }
    let c = &CPUS[current_cpu()];
    c.enabled.store(false, Ordering::Release);
    match insn::vmxoff_if_on() {
        Ok(left) => {
            // SAFETY: outside VMX operation now (or never was in it).
            unsafe { insn::set_cr4_vmxe(false) };
            c.off_reason.store(off::EMERGENCY, Ordering::Release);
            left as i32
        }
        Err(_) => code::VMX_INSTRUCTION,
    }
}

static HOOKS: SystemHooks = SystemHooks { shutdown: Some(on_shutdown), emergency: Some(on_emergency) };

fn init() -> Result<(), i32> {
    plugins::register_command!("vmx", "VMX on each CPU: vmx", command::vmx_command)?;
    plugins::register_command!(
        "vm",
        "guests: vm create NAME [mem=MIB] [vcpus=N] [cpus=..], vm load NAME FILE, vm run NAME FILE [..], vm \
         start|kill|destroy NAME, vm list, vm info [NAME]",
        crate::guest::vm_command
    )?;
    if !insn::exception_table() {
        return Err(code::HOOKS);
    }
    // SAFETY: `idle` is a function of ours, dropped by the loader when
    // this version ends.
    if unsafe { ffi::mv_idle_register(crate::guest::idle) } != 0 {
        return Err(code::HOOKS);
    }
    let boot = current_cpu() as u32;
    let cpuid = insn::cpuid_words();
    let reference = Reference::new(boot, cpuid, this_config(&cpuid, false)).map_err(|e| {
        plugins::warn!("{e}");
        refusal_code(&e)
    })?;
    GLOBAL.call_once(|| reference);
    let cpuhp = cpuhp().ok_or(code::CPUHP)?;
    // SAFETY: a plain query of the loader.
    if unsafe { ffi::mv_swapping_in() } == 1 {
        // Our predecessor keeps VMX on until the state import hands over.
        TAKING_OVER.store(true, Ordering::Release);
        return Ok(());
    }
    let id = cpuhp.call(|t| (t.setup)(StrRef::new("vmx:online"), section::ONLINE, Some(online), Some(offline), 0));
    if id <= 0 {
        plugins::warn!("cpuhp refused `vmx:online` ({id}): VMX is off everywhere again");
        free_regions();
        return Err(code::CPUHP);
    }
    STATE_ID.store(id as u32, Ordering::Release);
    // SAFETY: HOOKS is a static of ours.
    if unsafe { ffi::mv_system_register(&HOOKS) } != 0 {
        cpuhp.call(|t| (t.remove)(id as u32));
        free_regions();
        return Err(code::HOOKS);
    }
    // SAFETY: a plain query of the loader.
    if unsafe { ffi::mv_system_state() } != ffi::system_state::RUNNING {
        plugins::warn!("the system is going down: not enabling VMX");
        // SAFETY: plain calls of the loader.
        unsafe { ffi::mv_system_unregister() };
        cpuhp.call(|t| (t.remove)(id as u32));
        free_regions();
        return Err(code::BUSY);
    }
    let on = (0..MAX_CPUS).filter(|&c| CPUS[c].enabled.load(Ordering::Acquire)).count();
    plugins::info!(
        "vmx generation {GENERATION}: VMX on on {on} CPUs, VMCS revision {:#x}",
        reference.config().revision_id
    );
    Ok(())
}

fn fini() {
    // SAFETY: a plain call of the loader; no new slice starts after it.
    unsafe { ffi::mv_idle_unregister() };
    if TAKING_OVER.load(Ordering::Acquire) {
        // A swap that failed before our import: VMX is our predecessor's.
        return;
    }
    crate::guest::vm::destroy_all();
    crate::guest::drop_hooks();
    // SAFETY: a plain call of the loader.
    unsafe { ffi::mv_system_unregister() };
    if let (Some(c), id @ 1..) = (cpuhp(), STATE_ID.load(Ordering::Acquire)) {
        c.call(|t| (t.remove)(id));
    }
    free_regions();
}

/// Frees the pages of CPUs with VMX off (all of them at unload).
fn free_regions() {
    for c in CPUS.iter().filter(|c| !c.enabled.load(Ordering::Acquire)) {
        for slot in [&c.region, &c.vmcs] {
            let virt = slot.swap(0, Ordering::AcqRel);
            if virt != 0 {
                // SAFETY: allocated in `page` with this layout (by this
                // version or a predecessor it adopted it from), unused now
                // (VMX is off, so nothing is loaded).
                unsafe { alloc::alloc::dealloc(virt as *mut u8, PAGE_LAYOUT) };
            }
        }
    }
}

extern "C" fn cpu_enabled(cpu: u32) -> u32 {
    CPUS.get(cpu as usize).is_some_and(|c| c.enabled.load(Ordering::Acquire)) as u32
}

extern "C" fn vmxon_region(cpu: u32) -> u64 {
    match CPUS.get(cpu as usize).map(|c| c.region.load(Ordering::Acquire)) {
        // SAFETY: a plain query of the loader.
        Some(v) if v != 0 => unsafe { ffi::mv_virt_to_phys(v as *const u8) },
        _ => 0,
    }
}

extern "C" fn load_vmcs(cpu: u32) -> i32 {
    let mut result = 0;
    // SAFETY: `load_vmcs_here` is ours and `result` is live.
    match unsafe { ffi::mv_run_on(cpu, load_vmcs_here, 0, ffi::run_on::IRQS_OFF, &mut result) } {
        0 => result,
        _ => code::NOT_ENABLED,
    }
}

extern "C" fn loaded_vmcs(cpu: u32) -> u64 {
    CPUS.get(cpu as usize).map_or(0, |c| c.loaded_vmcs.load(Ordering::Acquire))
}

extern "C" fn state_id() -> u32 {
    STATE_ID.load(Ordering::Acquire)
}

extern "C" fn enable_ticks(cpu: u32) -> u64 {
    CPUS.get(cpu as usize).map_or(0, |c| c.enable_ticks.load(Ordering::Acquire))
}

extern "C" fn disable_ticks(cpu: u32) -> u64 {
    CPUS.get(cpu as usize).map_or(0, |c| c.disable_ticks.load(Ordering::Acquire))
}

extern "C" fn mismatch_next(cpu: u32) -> i32 {
    match MISMATCH.get(cpu as usize) {
        Some(m) => {
            m.store(true, Ordering::Release);
            0
        }
        None => code::WRONG_CPU,
    }
}

extern "C" fn enable_count(cpu: u32) -> u64 {
    CPUS.get(cpu as usize).map_or(0, |c| c.enables.load(Ordering::Acquire))
}

extern "C" fn generation() -> u32 {
    GENERATION
}

static TABLE: Vmx = Vmx {
    cpu_enabled,
    vmxon_region,
    load_vmcs,
    loaded_vmcs,
    state_id,
    enable_ticks,
    disable_ticks,
    generation,
    enable_count,
    mismatch_next,
};

#[cfg(feature = "v1")]
plugins::plugin! {
    name: "vmx-plugin", version: "1.0.0",
    needs: [VMX],
    init: init, fini: fini,
    provides: [(Vmx, &TABLE), (VmTable, &crate::guest::TABLE)],
    requires: [(Cpuhp, "^1.2")],
    state: Some((state::STATE_LAYOUT, state::export, state::import)),
}

#[cfg(feature = "v2")]
plugins::plugin! {
    name: "vmx-plugin", version: "1.1.0",
    needs: [VMX],
    init: init, fini: fini,
    provides: [(Vmx as "1.1.0", &TABLE), (VmTable, &crate::guest::TABLE)],
    requires: [(Cpuhp, "^1.2")],
    state: Some((state::STATE_LAYOUT, state::export, state::import)),
}
