//! The `vmx` suite (Bochs, which emulates VMX): vmx-plugin over cpuhp on
//! every online CPU, proven with VMPTRST (only VMX operation executes it);
//! logical offline and online, a CPU that comes online after the load, an
//! injected failure rolled back, a swap that keeps VMX on, unload, a load
//! refused while the system goes down, and the reboot path leaving VMX on
//! every CPU. The `vmx-absent` suite (QEMU, no VMX under TCG): the store
//! refuses vmx-plugin before hashing it (the signed manifest says it needs
//! VMX), an upload of it is refused by its metadata, nothing is
//! registered, and cpuhp keeps working.

use super::cpuhp::{boot_aps, cpuhp, last_failure};
use crate::ktest::{with, Failure, Test};
use crate::plugin::registry;
use crate::{check, check_eq, failure};
use alloc::string::ToString;
use core::sync::atomic::{AtomicU64, Ordering};
use cpuhp_api::code::FAILED;
use cpuhp_api::direction::UP;
use cpuhp_api::StateInfo;
use loader_core::plugin::store::Error::CpuLacks;
use plugins::meta::cpu::VMX;
use vmx_api::code::BUSY;
use vmx_api::Vmx;

crate::suite!(SUITE_VMX, "vmx", TESTS, crate::ktest::InAll::OnlyWhenNamed);
static TESTS: &[Test] = &[
    Test { name: "cpu-kept-offline-at-boot-enables-vmx-when-it-comes-online", run: kept_offline_at_boot },
    Test { name: "load-enables-vmx-on-every-online-cpu", run: load_enables },
    Test { name: "offline-leaves-vmx-online-reenters", run: offline_online },
    Test { name: "injected-failures-roll-back-with-vmx-off", run: injected_failures },
    Test { name: "inconsistent-cpu-refused-with-the-field-named", run: inconsistent_cpu },
    Test { name: "swap-keeps-vmx-on", run: swap_keeps_vmx_on },
    Test { name: "unload-leaves-vmx-off-everywhere", run: unload },
    Test { name: "load-during-shutdown-is-busy", run: busy },
    // Last: it stops the other CPUs for good, as a reboot does.
    Test { name: "reboot-path-leaves-vmx-on-every-cpu", run: reboot_path },
];

crate::suite!(SUITE_VMX_PANIC, "vmx-panic", PANIC, crate::ktest::InAll::OnlyWhenNamed);
static PANIC: &[Test] = &[Test { name: "panic-path-leaves-vmx-on-every-cpu", run: panic_path }];

crate::suite!(SUITE_VMX_ABSENT, "vmx-absent", ABSENT, crate::ktest::InAll::OnlyWhenNamed);
static ABSENT: &[Test] = &[Test { name: "load-fails-not-supported-cpuhp-unaffected", run: absent }];

crate::suite!(SUITE_BENCH_VMX, "bench-vmx", BENCH, crate::ktest::InAll::OnlyWhenNamed);
static BENCH: &[Test] = &[Test { name: "vmx-enable-disable", run: bench }];

fn vmx<R>(f: impl FnOnce(&Vmx) -> R) -> Result<R, Failure> {
    with(f)
}

static PROBE: AtomicU64 = AtomicU64::new(0);
const IN_VMX: u64 = 1;
const NOT_IN_VMX: u64 = 2;

fn probe_here(_: usize, _: usize) {
    let r = match crate::interrupts::probe::vmptrst() {
        Ok(_) => IN_VMX,
        Err(_) => NOT_IN_VMX,
    };
    PROBE.store(r, Ordering::SeqCst);
}

/// Whether `cpu` (running) is in VMX operation, by executing VMPTRST there.
fn in_vmx(cpu: usize) -> Result<bool, Failure> {
    PROBE.store(0, Ordering::SeqCst);
    crate::smp::run_on(1 << cpu, probe_here, 0).map_err(|e| failure!("run on cpu {cpu}: {e}"))?;
    match PROBE.load(Ordering::SeqCst) {
        IN_VMX => Ok(true),
        NOT_IN_VMX => Ok(false),
        _ => Err(failure!("the VMPTRST probe did not run on cpu {cpu}")),
    }
}

/// The CPU these tests take offline and online: the first one enabled at
/// boot besides the one running the tests.
fn second_cpu() -> Result<usize, Failure> {
    boot_aps().first().copied().ok_or_else(|| failure!("no second CPU"))
}

/// cpuhp's answer to a logical online of `cpu`.
fn online(cpu: usize) -> Result<i32, Failure> {
    cpuhp(|t| (t.cpu_online)(cpu as u32))
}

/// cpuhp's answer to a logical offline of `cpu`.
fn offline(cpu: usize) -> Result<i32, Failure> {
    cpuhp(|t| (t.cpu_offline)(cpu as u32))
}

fn online_cpus() -> alloc::vec::Vec<usize> {
    (0..loader_core::acpi::madt::MAX_CPUS).filter(|&c| crate::smp::online_mask() & 1 << c != 0).collect()
}

/// Every running CPU in VMX operation, and vmx-plugin agreeing.
fn all_in_vmx(when: &str) -> Result<(), Failure> {
    for cpu in online_cpus() {
        check!(in_vmx(cpu)?, "cpu {cpu} is not in VMX operation {when}");
        check_eq!(vmx(|t| (t.cpu_enabled)(cpu as u32))?, 1, "vmx-plugin's flag for cpu {cpu} {when}");
    }
    Ok(())
}

fn unload_all() {
    for p in registry::list() {
        let _ = registry::unload(&p.name, true);
    }
}

fn load(name: &str, version: Option<&str>) -> Result<(), Failure> {
    registry::load(name, version).map(drop).map_err(|e| failure!("load {name}: {e}"))
}

pub(super) fn fresh() -> Result<(), Failure> {
    unload_all();
    load("cpuhp-plugin", Some("1.2.0"))?;
    load("vmx-plugin", Some("1.0.0"))
}

fn load_enables() -> Result<(), Failure> {
    fresh()?;
    check!(!boot_aps().is_empty(), "the vmx suite needs a second CPU");
    all_in_vmx("after load")?;
    crate::shell::execute("vmx").map_err(|e| failure!("vmx: {e}"))?;
    check!(crate::shell::execute("vmx now").is_err(), "`vmx` took an argument");
    Ok(())
}

/// First in the suite: the image boots with `maxcpus=1`, so cpuhp's first
/// load keeps CPU 1 offline, never started; vmx-plugin loads without it,
/// and the CPU gets VMX from the ONLINE state when it comes up later.
/// (Later loads of cpuhp adopt the running CPU.)
fn kept_offline_at_boot() -> Result<(), Failure> {
    unload_all();
    load("cpuhp-plugin", Some("1.2.0"))?;
    let cpu = second_cpu()?;
    check_eq!(crate::smp::state(cpu), crate::smp::State::Offline, "cpu {cpu} after cpuhp's load with maxcpus=1");
    check_eq!(cpuhp(|t| (t.is_online)(cpu as u32))?, 0, "cpuhp's view of cpu {cpu}");
    load("vmx-plugin", Some("1.0.0"))?;
    check_eq!(vmx(|t| (t.cpu_enabled)(cpu as u32))?, 0, "VMX on offline cpu {cpu}");
    check_eq!(online(cpu)?, 0, "online cpu {cpu}");
    check!(in_vmx(cpu)?, "cpu {cpu} came online without VMX");
    all_in_vmx("after the late CPU came up")
}

/// With a VMCS loaded, so that the teardown has to VMCLEAR it first.
fn offline_online() -> Result<(), Failure> {
    fresh()?;
    for cpu in boot_aps() {
        for round in 0..2 {
            check_eq!(vmx(|t| (t.load_vmcs)(cpu as u32))?, 0, "VMCS round trip on cpu {cpu}");
            check!(vmx(|t| (t.loaded_vmcs)(cpu as u32))? != 0, "no VMCS loaded on cpu {cpu}");
            check_eq!(offline(cpu)?, 0, "offline cpu {cpu}, round {round}");
            check_eq!(vmx(|t| (t.cpu_enabled)(cpu as u32))?, 0, "VMX flag of offline cpu {cpu}");
            check_eq!(vmx(|t| (t.loaded_vmcs)(cpu as u32))?, 0, "VMCS still loaded on offline cpu {cpu}");
            check_eq!(online(cpu)?, 0, "online cpu {cpu}, round {round}");
            check!(in_vmx(cpu)?, "cpu {cpu} online again without VMX, round {round}");
        }
    }
    Ok(())
}

/// A failure at `vmx:online` (VMX never entered) and at the last state
/// (VMX entered, so the rollback must leave it): the CPU ends offline with
/// VMX off, and comes up with VMX once the failure is gone.
fn injected_failures() -> Result<(), Failure> {
    fresh()?;
    let cpu = second_cpu()?;
    let vmx_state = vmx(|t| (t.state_id)())?;
    let last = cpuhp(|t| (t.state_count)())? - 1;
    let mut info = StateInfo::default();
    check_eq!(cpuhp(|t| (t.state_at)(last, &mut info))?, 0, "state_at {last}");
    for id in [vmx_state, info.id] {
        check_eq!(offline(cpu)?, 0, "offline cpu {cpu}");
        check_eq!(cpuhp(|t| (t.fail)(cpu as u32, id, UP))?, 0, "inject at state {id}");
        check_eq!(online(cpu)?, FAILED, "online with state {id} failing");
        check_eq!(cpuhp(|t| (t.is_online)(cpu as u32))?, 0, "cpu {cpu} online after state {id} failed");
        check!(crate::smp::state(cpu) != crate::smp::State::Online, "cpu {cpu} still runs after the rollback");
        check_eq!(vmx(|t| (t.cpu_enabled)(cpu as u32))?, 0, "VMX flag of cpu {cpu} after state {id} failed");
        check_eq!(online(cpu)?, 0, "online cpu {cpu} without the failure");
        check!(in_vmx(cpu)?, "cpu {cpu} without VMX after a clean online");
    }
    Ok(())
}

/// A CPU whose capability MSRs give another configuration (here: another
/// VMCS revision id, as read) is refused by the compatibility check: it
/// stays offline with VMX off, and cpuhp's `failed` event names the state
/// and KVM's reason with the field.
fn inconsistent_cpu() -> Result<(), Failure> {
    fresh()?;
    let cpu = second_cpu()?;
    let vmx_state = vmx(|t| (t.state_id)())?;
    check_eq!(offline(cpu)?, 0, "offline cpu {cpu}");
    check_eq!(vmx(|t| (t.mismatch_next)(cpu as u32))?, 0, "mismatch_next");
    check_eq!(online(cpu)?, FAILED, "online of the mismatched cpu {cpu}");
    let (state, reason) = last_failure()?;
    check_eq!(state, vmx_state, "the failed state");
    let want = alloc::format!("inconsistent VMX configuration on CPU {cpu}: vmcs revision id");
    check_eq!(reason, want, "the failure's reason");
    check_eq!(cpuhp(|t| (t.is_online)(cpu as u32))?, 0, "cpuhp's view of the refused cpu {cpu}");
    check_eq!(vmx(|t| (t.cpu_enabled)(cpu as u32))?, 0, "VMX flag of the refused cpu {cpu}");
    check_eq!(online(cpu)?, 0, "online cpu {cpu} reading its own MSRs again");
    check!(in_vmx(cpu)?, "cpu {cpu} without VMX after the clean online");
    Ok(())
}

fn swap_keeps_vmx_on() -> Result<(), Failure> {
    fresh()?;
    let cpus = online_cpus();
    for &cpu in &cpus {
        check_eq!(vmx(|t| (t.load_vmcs)(cpu as u32))?, 0, "VMCS round trip on cpu {cpu}");
    }
    let state = |c: usize| vmx(|t| ((t.vmxon_region)(c as u32), (t.loaded_vmcs)(c as u32), (t.enable_count)(c as u32)));
    for (version, generation) in [("1.1.0", 2), ("1.0.0", 1)] {
        let before: alloc::vec::Vec<(u64, u64, u64)> = cpus.iter().map(|&c| state(c)).collect::<Result<_, _>>()?;
        registry::swap("vmx", version).map_err(|e| failure!("swap vmx to {version}: {e}"))?;
        check_eq!(vmx(|t| (t.generation)())?, generation, "generation after the swap to {version}");
        all_in_vmx("right after the swap")?;
        // The same VMXON region, the same VMCS loaded, and no VMXON since:
        // VMX stayed on through the swap.
        for (&cpu, &before) in cpus.iter().zip(&before) {
            check_eq!(state(cpu)?, before, "cpu {cpu}'s VMXON region, loaded VMCS and VMXON count after the swap");
        }
        // The new version's callbacks run the ONLINE state now.
        for cpu in boot_aps() {
            let count = vmx(|t| (t.enable_count)(cpu as u32))?;
            check_eq!(offline(cpu)?, 0, "offline cpu {cpu} after the swap");
            check_eq!(online(cpu)?, 0, "online cpu {cpu} after the swap");
            check!(in_vmx(cpu)?, "cpu {cpu} without VMX after offline/online past the swap");
            check_eq!(vmx(|t| (t.enable_count)(cpu as u32))?, count + 1, "VMXONs on cpu {cpu} after offline/online");
            check_eq!(vmx(|t| (t.load_vmcs)(cpu as u32))?, 0, "VMCS round trip on cpu {cpu} past the swap");
        }
    }
    Ok(())
}

fn unload() -> Result<(), Failure> {
    fresh()?;
    let states = cpuhp(|t| (t.state_count)())?;
    registry::unload("vmx", false).map_err(|e| failure!("unload vmx: {e}"))?;
    for cpu in online_cpus() {
        check!(!in_vmx(cpu)?, "cpu {cpu} still in VMX operation after unload");
    }
    check_eq!(cpuhp(|t| (t.state_count)())?, states - 1, "cpuhp states after unload");
    Ok(())
}

fn busy() -> Result<(), Failure> {
    unload_all();
    load("cpuhp-plugin", Some("1.2.0"))?;
    let states = cpuhp(|t| (t.state_count)())?;
    // What a reboot or power-off does first (`system::shut_down`), without
    // its hooks and its emergency round: the load must see it.
    let r = crate::power::system::with_state(plugins::system_state::RESTART, || registry::load("vmx-plugin", None));
    match r {
        Err(registry::Error::InitFailed { code, .. }) => check_eq!(code, BUSY, "init's error"),
        other => return Err(failure!("load during shutdown: {other:?}")),
    }
    check_eq!(cpuhp(|t| (t.state_count)())?, states, "cpuhp states after the refused load");
    check!(!crate::power::system::any_registered(), "system hooks left behind by the refused load");
    for cpu in online_cpus() {
        check!(!in_vmx(cpu)?, "cpu {cpu} left in VMX operation by the refused load");
    }
    Ok(())
}

/// What the shell's `reboot` runs before the reset (`power::reboot` is
/// `system::shut_down` then `power::reset`): every CPU leaves VMX.
fn reboot_path() -> Result<(), Failure> {
    fresh()?;
    all_in_vmx("before the reboot")?;
    let cpus = online_cpus();
    crate::power::system::shut_down(plugins::system_state::RESTART);
    for &cpu in &cpus {
        check_eq!(vmx(|t| (t.cpu_enabled)(cpu as u32))?, 0, "VMX flag of cpu {cpu} after the shutdown");
        check!(crate::power::system::emergency_ran(cpu), "the emergency round did not run on cpu {cpu}");
    }
    check!(crate::interrupts::probe::vmptrst().is_err(), "this CPU is still in VMX operation after the shutdown");
    Ok(())
}

/// What the panic handler runs before it ends the run: the emergency round
/// alone, no orderly hooks, so vmx-plugin's NMI-context callback is what
/// turns VMX off on every CPU. The second CPU is first left in the state
/// an NMI can find between setting CR4.VMXE and VMXON (VMXE on, outside
/// VMX operation): its VMXOFF faults, and the plugin's exception table
/// must turn that into "nothing was on" instead of an unexpected #UD.
fn panic_path() -> Result<(), Failure> {
    fresh()?;
    all_in_vmx("before the panic path")?;
    let cpus = online_cpus();
    let other = second_cpu()?;
    crate::smp::run_on(1 << other, leave_vmx_behind_the_plugins_back, 0)
        .map_err(|e| failure!("run on cpu {other}: {e}"))?;
    check!(!in_vmx(other)?, "cpu {other} still in VMX operation");
    crate::power::system::emergency(plugins::system_state::PANIC);
    for &cpu in &cpus {
        check!(crate::power::system::emergency_ran(cpu), "the emergency round did not run on cpu {cpu}");
        let want = if cpu == other { 0 } else { 1 };
        check_eq!(crate::power::system::emergency_results(cpu), [want], "emergency results on cpu {cpu}");
        check_eq!(vmx(|t| (t.cpu_enabled)(cpu as u32))?, 0, "VMX flag of cpu {cpu} after the emergency round");
    }
    check!(
        crate::interrupts::probe::vmptrst().is_err(),
        "this CPU is still in VMX operation after the emergency round"
    );
    Ok(())
}

fn leave_vmx_behind_the_plugins_back(_: usize, _: usize) {
    // SAFETY: vmx-plugin put this CPU in VMX root operation (checked by
    // the caller); VMXOFF leaves it and touches nothing else. CR4.VMXE
    // stays set, as in the middle of the plugin's enable.
    unsafe { core::arch::asm!("vmxoff") };
}

fn absent() -> Result<(), Failure> {
    unload_all();
    load("cpuhp-plugin", Some("1.2.0"))?;
    let states = cpuhp(|t| (t.state_count)())?;
    match registry::load("vmx-plugin", None) {
        Err(e @ registry::Error::Store(CpuLacks { missing: VMX, .. })) => {
            check_eq!(e.to_string(), "vmx-plugin needs vmx, which this CPU does not have", "the refusal");
        }
        other => return Err(failure!("load without VMX: {other:?}")),
    }
    // The same file uploaded: no manifest lists it, so its metadata's
    // `needs` line refuses it once its signature has passed.
    let version = semver::Version::new(1, 1, 0);
    let file =
        crate::plugin::store::initrd_file("vmx-plugin", &version).ok_or_else(|| failure!("no vmx-plugin 1.1.0"))?;
    crate::plugin::store::add_uploaded("vmx-plugin".into(), version, file.to_vec());
    match registry::load("vmx-plugin", Some("1.1.0")) {
        Err(registry::Error::Store(CpuLacks { missing: VMX, .. })) => {}
        other => return Err(failure!("uploaded vmx-plugin without VMX: {other:?}")),
    }
    check!(registry::provider_table("vmx", 0).is_none(), "`vmx` provided after the failed load");
    check!(crate::shell::execute("vmx").is_err(), "the `vmx` command outlived the failed load");
    check_eq!(cpuhp(|t| (t.state_count)())?, states, "cpuhp states after the failed load");
    check!(!crate::power::system::any_registered(), "system hooks left behind by the failed load");
    for cpu in boot_aps() {
        check_eq!(offline(cpu)?, 0, "offline cpu {cpu}");
        check_eq!(online(cpu)?, 0, "online cpu {cpu}");
    }
    Ok(())
}

/// Per-CPU enable (compatibility check + VMXON) and disable (VMCLEAR +
/// VMXOFF) as vmx-plugin timed them, after one offline/online of a CPU.
fn bench() -> Result<(), Failure> {
    fresh()?;
    let cpu = second_cpu()?;
    check_eq!(offline(cpu)?, 0, "offline");
    check_eq!(online(cpu)?, 0, "online");
    let (up, down) = vmx(|t| ((t.enable_ticks)(cpu as u32), (t.disable_ticks)(cpu as u32)))?;
    crate::println!("bench: vmx-enable {up} tsc cpu={cpu}");
    crate::println!("bench: vmx-disable {down} tsc cpu={cpu}");
    let (mut mask, mut scan) = (0, 0);
    with(|t: &vmx_api::VmTable| (t.bench_request_mask)(&mut mask, &mut scan))?;
    crate::println!("bench: request-mask-4-of-4096 {mask} tsc set-bit walk");
    crate::println!("bench: request-scan-4-of-4096 {scan} tsc full scan ({}x the walk)", scan / mask.max(1));
    super::guests::bench()
}
