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
    Test { name: "four-vcpus-share-two-cpus", run: four_on_two },
    Test { name: "cpuid-and-msr-views", run: probes },
    Test { name: "ipis-between-vcpus-and-apic-timers", run: interrupts },
    Test { name: "nmis-wait-for-their-window-and-broadcasts-skip-the-sender", run: nmis },
    Test { name: "fpu-state-and-xcr0-survive-sharing-a-cpu", run: fpu },
    Test { name: "faulting-guests-are-stopped-with-a-report", run: faulting },
    Test { name: "looping-guests-are-killed-while-others-run", run: looping },
    Test { name: "two-vms-do-not-see-each-others-memory", run: isolation },
    Test { name: "offline-moves-vcpus-and-they-go-on", run: offline_moves },
];

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

fn four_on_two() -> Result<(), Failure> {
    fresh()?;
    let ap = *boot_aps().first().ok_or_else(|| failure!("the guests suite needs a second CPU"))? as u32;
    let id = start("four", "hello", 4, &[0, ap])?;
    check_eq!(finish(id, 10_000)?, 0, "hello on 4 vCPUs");
    destroy(id)
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
/// physical and logical destinations, a self-IPI), and the timer in
/// one-shot, periodic and TSC-deadline mode with HLT waits; each guest
/// with the x2APIC virtualized (Bochs' Skylake-X and Tiger Lake offer
/// APIC-register virtualization and virtual-interrupt delivery) and
/// emulated. Virtualized, the EOIs and most register reads do not exit:
/// the same guest exits fewer times.
fn interrupts() -> Result<(), Failure> {
    fresh()?;
    let before = figures();
    let ap = *boot_aps().first().ok_or_else(|| failure!("the guests suite needs a second CPU"))? as u32;
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
    check_eq!(figures(), before, "frames and heap after the interrupt guests");
    Ok(())
}

/// NMIs by the ICR (the second held until the first handler's IRET, by
/// the NMI window) and an all-excluding-self IPI, with the x2APIC
/// virtualized and emulated.
fn nmis() -> Result<(), Failure> {
    fresh()?;
    let ap = *boot_aps().first().ok_or_else(|| failure!("the guests suite needs a second CPU"))? as u32;
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
    let ap = *boot_aps().first().ok_or_else(|| failure!("the guests suite needs a second CPU"))? as u32;
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
    let spin = start("spin", "spin", 1, &[])?;
    let flood = start("flood", "flood", 1, &[])?;
    let hello = start("hello", "hello", 1, &[])?;
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
    let a = start("a", "counter", 1, &[])?;
    let b = start("b", "hello", 1, &[])?;
    check_eq!(finish(b, 10_000)?, 0, "hello beside the counter");
    check!(wait(2000, || counter(a, 0).is_ok_and(|n| n > 0)), "the counter guest does not count");
    check_eq!(counter(b, 0)?, 0, "VM b sees VM a's counter page");
    check_eq!(vm(|t| (t.kill)(a))?, 0, "kill a");
    finish(a, 2000)?;
    destroy(a)?;
    destroy(b)
}

fn offline_moves() -> Result<(), Failure> {
    fresh()?;
    let ap = *boot_aps().first().ok_or_else(|| failure!("the guests suite needs a second CPU"))?;
    let id = start("moving", "counter", 1, &[ap as u32])?;
    check!(wait(2000, || counter(id, 0).is_ok_and(|n| n > 0)), "the counter does not count on cpu {ap}");
    check_eq!(cpuhp(|t| (t.cpu_offline)(ap as u32))?, 0, "offline cpu {ap} with a vCPU on it");
    let now = vm(|t| (t.vcpu_cpu)(id, 0))?;
    check!(now >= 0 && now as usize != ap, "the vCPU is still bound to cpu {ap} ({now})");
    let at = counter(id, 0)?;
    check!(wait(3000, || counter(id, 0).is_ok_and(|n| n > at)), "the moved vCPU stopped counting");
    check_eq!(cpuhp(|t| (t.cpu_online)(ap as u32))?, 0, "online cpu {ap}");
    check_eq!(vm(|t| (t.kill)(id))?, 0, "kill");
    finish(id, 2000)?;
    destroy(id)
}

/// `make bench`'s guest figures (Bochs TSC): a hello VM from create to
/// its exit status, and the cost of one exit round trip, from a guest that
/// executes CPUID in a loop (each iteration one exit and a few guest
/// instructions) measured over 20 ms.
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
    let ap = *boot_aps().first().ok_or_else(|| failure!("the bench needs a second CPU"))? as u32;
    let t0 = crate::time::rdtsc();
    let id = start("ipi", "ipi", 2, &[0, ap])?;
    check_eq!(finish(id, 30_000)?, 0, "ipi's exit status");
    let ipi = crate::time::rdtsc() - t0;
    destroy(id)?;
    crate::println!(
        "bench: guest-ipi-round {} tsc (1000 rounds in {ipi} tsc, less hello's {hello})",
        ipi.saturating_sub(hello) / 1000
    );
    let id = start("flood", "flood", 1, &[])?;
    check!(wait(2000, || vm(|t| (t.exits)(id)).is_ok_and(|n| n > 100)), "flood made no exits");
    let (e0, t0) = (vm(|t| (t.exits)(id))?, crate::time::rdtsc());
    wait(20, || false);
    let (e1, t1) = (vm(|t| (t.exits)(id))?, crate::time::rdtsc());
    check_eq!(vm(|t| (t.kill)(id))?, 0, "kill flood");
    finish(id, 2000)?;
    destroy(id)?;
    crate::println!(
        "bench: exit-roundtrip-cpuid {} tsc ({} exits in {} tsc)",
        (t1 - t0) / (e1 - e0).max(1),
        e1 - e0,
        t1 - t0
    );
    Ok(())
}
