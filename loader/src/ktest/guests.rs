//! The `guests` suite (Bochs, which emulates VMX): the test guests of
//! `guests/` run as VMs under vmx-plugin, driven through its `vm` table:
//! each gives its expected result or is stopped with a report, several
//! run at once without seeing each other's memory, a vCPU moves off a CPU
//! that goes offline, and destroying a VM gives back every frame and byte.

use super::cpuhp::{boot_aps, cpuhp};
use super::vmx::fresh;
use crate::ktest::{with, Failure, Test};
use crate::plugin::registry;
use crate::{check, check_eq, failure};
use plugins::StrRef;
use vmx_api::{apic_mode, vm_state, VmTable};

crate::suite!(SUITE_GUESTS, "guests", TESTS, crate::ktest::InAll::OnlyWhenNamed);
static TESTS: &[Test] = &[
    Test { name: "hello-exits-with-its-status-and-gives-everything-back", run: hello },
    Test { name: "an-uploaded-guest-file-runs", run: uploaded },
    Test { name: "four-vcpus-share-two-cpus-and-take-four", run: four_vcpus },
    Test { name: "cpuid-and-msr-views", run: probes },
    Test { name: "ipis-between-vcpus-and-apic-timers", run: interrupts },
    Test { name: "nmis-wait-for-their-window-and-broadcasts-skip-the-sender", run: nmis },
    Test { name: "fpu-state-and-xcr0-survive-sharing-a-cpu", run: fpu },
    Test { name: "faulting-guests-are-stopped-with-a-report", run: faulting },
    Test { name: "looping-guests-are-killed-while-others-run", run: looping },
    Test { name: "two-vms-do-not-see-each-others-memory", run: isolation },
    Test { name: "offline-moves-vcpus-and-they-go-on", run: offline_moves },
];

/// The CPUs other than the boot CPU (where this suite runs), in order:
/// vmx-plugin's default placement uses them first.
fn aps() -> Result<alloc::vec::Vec<u32>, Failure> {
    let aps: alloc::vec::Vec<u32> = boot_aps().into_iter().map(|c| c as u32).collect();
    check!(!aps.is_empty(), "the guests suite needs a second CPU");
    Ok(aps)
}

/// The `i`th AP, round robin: VMs that should run beside each other go to
/// different CPUs where there are enough, and share one where there are not.
fn ap(i: usize) -> Result<u32, Failure> {
    let aps = aps()?;
    Ok(aps[i % aps.len()])
}

pub(super) fn vm<R>(f: impl FnOnce(&VmTable) -> R) -> Result<R, Failure> {
    with(f)
}

/// Frames free and heap bytes in use.
fn figures() -> (u64, u64) {
    let s = crate::memory::stats();
    (s.frames_free, s.heap_used)
}

/// Creates VM `name` on `cpus` (empty: vmx-plugin's choice) and loads
/// guest `guest` (a test guest by name, or a guest file by path); its id.
fn loaded(name: &str, guest: &str, vcpus: u32, cpus: &[u32]) -> Result<u32, Failure> {
    let id = vm(|t| (t.create)(StrRef::borrowed(name), 8, vcpus, cpus.as_ptr(), cpus.len() as u32))?;
    check!(id > 0, "create {name}: {id}");
    let id = id as u32;
    // A test guest by its name, or any guest file by its path.
    let path = if guest.contains('/') { guest.into() } else { alloc::format!("guests/{guest}.elf") };
    check_eq!(vm(|t| (t.load)(id, StrRef::borrowed(&path)))?, 0, "load {path} into {name}");
    Ok(id)
}

/// As [`loaded`], then started; its id.
pub(super) fn start(name: &str, guest: &str, vcpus: u32, cpus: &[u32]) -> Result<u32, Failure> {
    let id = loaded(name, guest, vcpus, cpus)?;
    check_eq!(vm(|t| (t.start)(id))?, 0, "start {name}");
    Ok(id)
}

/// The VM's state and exit status.
pub(super) fn state(id: u32) -> Result<(i32, i64), Failure> {
    let mut status = 0;
    let s = vm(|t| (t.state)(id, &mut status))?;
    Ok((s, status))
}

/// Waits up to `ms` for `done`, running this CPU's share of the vCPUs
/// meanwhile (as the shell's loop does).
pub(super) fn wait(ms: u64, done: impl Fn() -> bool) -> bool {
    let me = crate::cpu::percpu::current_id();
    let end = crate::time::uptime_us() + ms * 1000;
    while crate::time::uptime_us() < end {
        if done() {
            return true;
        }
        x86_64::instructions::interrupts::without_interrupts(|| registry::idle::run(me));
        core::hint::spin_loop();
    }
    done()
}

/// Waits for VM `id` to stop; its exit status (-1: none written). A VM
/// that does not stop in time is described (`vm info`) for the log.
pub(super) fn finish(id: u32, ms: u64) -> Result<i64, Failure> {
    let stopped = wait(ms, || state(id).is_ok_and(|(s, _)| s == vm_state::STOPPED));
    let _ = crate::shell::execute("vm list");
    if !stopped {
        let _ = crate::shell::execute("vm info");
    }
    check!(stopped, "VM {id} still {:?} after {ms} ms", state(id)?);
    Ok(state(id)?.1)
}

pub(super) fn destroy(id: u32) -> Result<(), Failure> {
    check_eq!(vm(|t| (t.destroy)(id))?, 0, "destroy VM {id}");
    Ok(())
}

fn hello() -> Result<(), Failure> {
    fresh()?;
    let before = figures();
    let id = start("hello", "hello", 1, &[])?;
    check_eq!(finish(id, 5000)?, 0, "hello's exit status");
    check!(vm(|t| (t.exits)(id))? > 0, "hello ran without a single exit");
    destroy(id)?;
    check_eq!(figures(), before, "frames free and heap in use after destroying hello");
    check!(crate::shell::execute("vm info hello").is_err(), "a destroyed VM is still listed");
    Ok(())
}

/// A guest file taken as a COM2 upload takes (`guest_files`, which the
/// upload-session scenario feeds over COM2 under QEMU) runs from
/// `uploads/`; a missing upload is refused by name.
fn uploaded() -> Result<(), Failure> {
    fresh()?;
    let file = crate::boot::initrd_file("guests/hello.elf").ok_or_else(|| failure!("no guests/hello.elf"))?;
    crate::plugin::guest_files::add("greeter.elf", file);
    let id = start("up", "uploads/greeter.elf", 2, &[])?;
    check_eq!(finish(id, 5000)?, 0, "the uploaded hello's exit status");
    destroy(id)?;
    let id = vm(|t| (t.create)(StrRef::borrowed("none"), 8, 1, core::ptr::null(), 0))?;
    check!(id > 0, "create none: {id}");
    let refused = vm(|t| (t.load)(id as u32, StrRef::borrowed("uploads/nothing.elf")))?;
    check_eq!(refused, vmx_api::code::REFUSED, "loading an upload that never came");
    destroy(id as u32)
}

/// Four vCPUs on two pCPUs (two each), and, where the machine has four
/// CPUs, on four (one each, the boot CPU's run by this suite's waits).
fn four_vcpus() -> Result<(), Failure> {
    fresh()?;
    let aps = aps()?;
    let mut pools = alloc::vec![alloc::vec![0, aps[0]]];
    if aps.len() >= 3 {
        pools.push([0].into_iter().chain(aps.iter().copied().take(3)).collect());
    }
    for pool in pools {
        let id = start("four", "hello", 4, &pool)?;
        for v in 0..4 {
            check_eq!(vm(|t| (t.vcpu_cpu)(id, v))?, pool[v as usize % pool.len()] as i32, "vCPU {v}'s CPU");
        }
        check_eq!(finish(id, 10_000)?, 0, "hello on 4 vCPUs over cpus {pool:?}");
        destroy(id)?;
    }
    Ok(())
}

fn probes() -> Result<(), Failure> {
    fresh()?;
    for guest in ["cpuid", "msr"] {
        let id = start(guest, guest, 1, &[])?;
        check_eq!(finish(id, 5000)?, 0, "{guest}'s exit status");
        destroy(id)?;
    }
    Ok(())
}

/// The virtual x2APIC: IPIs between two vCPUs on two CPUs (fixed,
/// physical and logical destinations, a self-IPI), wakes from HLT by IPI
/// (`timing`), and the timer in one-shot, periodic and TSC-deadline mode
/// with HLT waits; the ipi and timer guests with the x2APIC virtualized
/// (Bochs' Skylake-X and Tiger Lake offer APIC-register virtualization and
/// virtual-interrupt delivery) and emulated. Virtualized, the EOIs and most
/// register reads do not exit: the same guest exits fewer times.
fn interrupts() -> Result<(), Failure> {
    fresh()?;
    let before = figures();
    let ap = ap(0)?;
    for (guest, vcpus, cpus, saved) in [("ipi", 2, &[0, ap][..], 1000), ("timer", 1, &[][..], 3)] {
        let mut exits = [0; 2];
        for (emulate, mode) in [(0, apic_mode::VIRTUALIZED), (1, apic_mode::EMULATED)] {
            let id = loaded(guest, guest, vcpus, cpus)?;
            check_eq!(vm(|t| (t.set_apic_emulation)(id, emulate))?, 0, "{guest}: apic emulation {emulate}");
            check_eq!(vm(|t| (t.start)(id))?, 0, "start {guest}");
            check_eq!(finish(id, 20_000)?, 0, "{guest}'s exit status (apic emulation {emulate})");
            for vcpu in 0..vcpus {
                check_eq!(vm(|t| (t.apic_mode)(id, vcpu))?, mode, "{guest} vCPU {vcpu}'s x2APIC mode");
            }
            check_eq!(vm(|t| (t.set_apic_emulation)(id, 0))?, vmx_api::code::REFUSED, "a mode change after the run");
            exits[emulate as usize] = vm(|t| (t.exits)(id))?;
            destroy(id)?;
        }
        crate::println!("{guest}: {} exits with the x2APIC virtualized, {} emulated", exits[0], exits[1]);
        check!(exits[0] + saved <= exits[1], "{guest}: virtualized saved fewer than {saved} exits: {exits:?}");
    }
    // The bench's guest must pass here too: its wakes cross CPUs.
    let timing = start("timing", "timing", 2, &[0, ap])?;
    check_eq!(finish(timing, 20_000)?, 0, "timing's exit status");
    destroy(timing)?;
    check_eq!(figures(), before, "frames and heap after the interrupt guests");
    Ok(())
}

/// NMIs by the ICR (the second held until the first handler's IRET, by
/// the NMI window) and an all-excluding-self IPI, with the x2APIC
/// virtualized and emulated.
fn nmis() -> Result<(), Failure> {
    fresh()?;
    let ap = ap(0)?;
    for emulate in [0, 1] {
        let id = loaded("nmi", "nmi", 2, &[0, ap])?;
        check_eq!(vm(|t| (t.set_apic_emulation)(id, emulate))?, 0, "nmi: apic emulation {emulate}");
        check_eq!(vm(|t| (t.start)(id))?, 0, "start nmi");
        check_eq!(finish(id, 20_000)?, 0, "nmi's exit status (apic emulation {emulate})");
        destroy(id)?;
    }
    Ok(())
}

/// Two vCPUs on one CPU, each with SSE/AVX registers, MXCSR, XCR0 and
/// syscall MSRs of its own, which the VMM carries across their slices.
fn fpu() -> Result<(), Failure> {
    fresh()?;
    let ap = ap(0)?;
    let id = start("fpu", "fpu", 2, &[ap, ap])?;
    check_eq!(finish(id, 20_000)?, 0, "fpu's exit status");
    destroy(id)
}

fn faulting() -> Result<(), Failure> {
    fresh()?;
    let before = figures();
    for guest in ["triple", "unmapped"] {
        let id = start(guest, guest, 1, &[])?;
        check_eq!(finish(id, 5000)?, -1, "{guest} wrote an exit status");
        crate::shell::execute(&alloc::format!("vm info {guest}")).map_err(|e| failure!("vm info: {e}"))?;
        destroy(id)?;
    }
    check_eq!(figures(), before, "frames and heap after the faulting guests");
    Ok(())
}

fn looping() -> Result<(), Failure> {
    fresh()?;
    let before = figures();
    // Each on a CPU of its own where there are three APs.
    let spin = start("spin", "spin", 1, &[ap(0)?])?;
    let flood = start("flood", "flood", 1, &[ap(1)?])?;
    let hello = start("hello", "hello", 1, &[ap(2)?])?;
    check_eq!(finish(hello, 10_000)?, 0, "hello beside two looping guests");
    check!(wait(200, || vm(|t| (t.exits)(flood)).is_ok_and(|n| n > 1000)), "flood made few exits");
    crate::shell::execute("vm list").map_err(|e| failure!("the shell while guests loop: {e}"))?;
    for id in [spin, flood] {
        check_eq!(state(id)?.0, vm_state::RUNNING, "VM {id} before the kill");
        check_eq!(vm(|t| (t.kill)(id))?, 0, "kill VM {id}");
        check_eq!(finish(id, 2000)?, -1, "a killed VM's status");
    }
    for id in [spin, flood, hello] {
        destroy(id)?;
    }
    check_eq!(figures(), before, "frames and heap after the looping guests");
    Ok(())
}

/// The counter guest's per-vCPU counters: guest-physical 0x9000 + 8 * vCPU.
pub(super) fn counter(id: u32, vcpu: u64) -> Result<u64, Failure> {
    let mut v = [0u8; 8];
    check_eq!(vm(|t| (t.read)(id, 0x9000 + 8 * vcpu, v.as_mut_ptr(), 8))?, 0, "read VM {id}'s counter");
    Ok(u64::from_le_bytes(v))
}

fn isolation() -> Result<(), Failure> {
    fresh()?;
    let a = start("a", "counter", 1, &[ap(0)?])?;
    let b = start("b", "hello", 1, &[ap(1)?])?;
    check_eq!(finish(b, 10_000)?, 0, "hello beside the counter");
    check!(wait(2000, || counter(a, 0).is_ok_and(|n| n > 0)), "the counter guest does not count");
    check_eq!(counter(b, 0)?, 0, "VM b sees VM a's counter page");
    check_eq!(vm(|t| (t.kill)(a))?, 0, "kill a");
    finish(a, 2000)?;
    destroy(a)?;
    destroy(b)
}

/// Whether every counter of VM `id` moves past `at` (its values before).
fn all_count_past(id: u32, at: &[u64], ms: u64) -> bool {
    wait(ms, || at.iter().enumerate().all(|(v, &n)| counter(id, v as u64).is_ok_and(|now| now > n)))
}

/// The counter guest with two vCPUs per AP, placed by vmx-plugin (the APs
/// first, round robin); the CPU holding the last vCPU goes offline, its
/// vCPUs move, and every vCPU goes on counting.
fn offline_moves() -> Result<(), Failure> {
    fresh()?;
    let aps = aps()?;
    let vcpus = 2 * aps.len() as u32;
    let id = start("moving", "counter", vcpus, &[])?;
    let mut on = alloc::vec::Vec::new();
    for v in 0..vcpus {
        on.push(vm(|t| (t.vcpu_cpu)(id, v))?);
        check_eq!(on[v as usize], aps[v as usize % aps.len()] as i32, "vCPU {v}'s CPU by default");
    }
    check!(all_count_past(id, &alloc::vec![0; vcpus as usize], 5000), "the counters do not count");
    let victim = on[vcpus as usize - 1] as u32;
    check_eq!(cpuhp(|t| (t.cpu_offline)(victim))?, 0, "offline cpu {victim} with vCPUs on it");
    let mut at = alloc::vec::Vec::new();
    for v in 0..vcpus {
        let now = vm(|t| (t.vcpu_cpu)(id, v))?;
        check!(now >= 0 && now as u32 != victim, "vCPU {v} is still bound to cpu {victim} ({now})");
        check!(
            on[v as usize] == victim as i32 || now == on[v as usize],
            "vCPU {v} moved off cpu {} ({now})",
            on[v as usize]
        );
        at.push(counter(id, v as u64)?);
    }
    let counting = all_count_past(id, &at, 5000);
    if !counting {
        let _ = crate::shell::execute("vm info moving");
    }
    check!(counting, "a vCPU stopped counting after cpu {victim} went offline");
    check_eq!(cpuhp(|t| (t.cpu_online)(victim))?, 0, "online cpu {victim}");
    check_eq!(vm(|t| (t.kill)(id))?, 0, "kill");
    finish(id, 2000)?;
    destroy(id)
}

/// `make bench`'s guest figures (Bochs TSC): a hello VM from create to
/// its exit status; the IPI ping-pong round; and, from the `timing`
/// guest (measured in its own TSC view, min and median), the CPUID exit
/// round trip and the HLT-to-wake latency of an IPI.
///
/// The CPUID figure was once taken from outside, as a `flood` VM's exits
/// over 20 ms of host TSC, and moved between runs (232 to 352) and within
/// one boot (399 to 585 over five windows): the exit count is read under
/// the vCPU's run lock, which its pCPU holds for a whole slice, so every
/// window ended at a slice end and counted whole slices of 256 exits
/// (1792, 2048, 2560: a slice more or less is 12%), and each slice's
/// return to the idle loop was booked to its exits. Inside the guest 64
/// batches of 16 CPUIDs give the same minimum and median (378), and three runs the same figure.
pub(super) fn bench() -> Result<(), Failure> {
    let t0 = crate::time::rdtsc();
    let id = start("hello", "hello", 1, &[])?;
    check_eq!(finish(id, 5000)?, 0, "hello's exit status");
    let hello = crate::time::rdtsc() - t0;
    destroy(id)?;
    crate::println!("bench: guest-hello-create-to-exit {hello} tsc");
    // 1000 ping-pong rounds between vCPUs on two CPUs; each round is an
    // ICR exit, a kick or wake of the other CPU, its HLT ending, the
    // injection, and the same back. The hello run's fixed cost (create,
    // load, start, exit, one vCPU) is taken off before dividing.
    let t0 = crate::time::rdtsc();
    let id = start("ipi", "ipi", 2, &[0, ap(0)?])?;
    check_eq!(finish(id, 30_000)?, 0, "ipi's exit status");
    let ipi = crate::time::rdtsc() - t0;
    destroy(id)?;
    crate::println!(
        "bench: guest-ipi-round {} tsc (1000 rounds in {ipi} tsc, less hello's {hello})",
        ipi.saturating_sub(hello) / 1000
    );
    timing(0, "")?;
    timing(1, "-emulated-apic")
}

/// The `timing` guest on two CPUs, with the x2APIC virtualized (`emulate`
/// 0) or emulated (1, the figures named with `suffix`): vCPU 0 (CPUIDs, the
/// IPI's sender) here,
/// vCPU 1 (which halts) on an AP, so its wake crosses CPUs.
fn timing(emulate: u32, suffix: &str) -> Result<(), Failure> {
    // The guest ABI's `TIMING_BASE` and its four words (`TIMING_FIGURES`:
    // CPUID min and median, wake min and median), as `counter` hard-codes
    // the counter page: the loader does not link the guests' crate.
    const TIMING_BASE: u64 = 0xa000;
    let id = loaded("timing", "timing", 2, &[0, ap(0)?])?;
    check_eq!(vm(|t| (t.set_apic_emulation)(id, emulate))?, 0, "timing: apic emulation {emulate}");
    check_eq!(vm(|t| (t.start)(id))?, 0, "start timing");
    check_eq!(finish(id, 30_000)?, 0, "timing's exit status");
    let mut words = [0u64; 4];
    for (i, w) in words.iter_mut().enumerate() {
        let mut v = [0u8; 8];
        check_eq!(vm(|t| (t.read)(id, TIMING_BASE + 8 * i as u64, v.as_mut_ptr(), 8))?, 0, "read timing's figures");
        *w = u64::from_le_bytes(v);
    }
    destroy(id)?;
    let [cpuid_min, cpuid_median, wake_min, wake_median] = words;
    crate::println!(
        "bench: exit-roundtrip-cpuid{suffix} {cpuid_median} tsc (median of 64 batches of 16 in the guest, min \
         {cpuid_min})"
    );
    crate::println!(
        "bench: hlt-to-wake-ipi{suffix} {wake_median} tsc (median of 32: ICR write to the halted vCPU's handler on \
         another CPU, min {wake_min})"
    );
    Ok(())
}
