//! `timing`: two figures for `make bench`, measured in the guest's own TSC
//! view, so that nothing the host does between its slices lands in them:
//!
//! - the exit round trip of CPUID: vCPU 0 times 64 batches of 16 CPUIDs
//!   (each one exit) with interrupts off; a sample is a batch's ticks / 16;
//! - the HLT-to-wake latency of an IPI: 32 times, vCPU 1 halts (`sti;
//!   hlt`), vCPU 0 waits until its HLT has surely exited (its pCPU is idle
//!   then, or runs other work), reads the TSC and writes the ICR (a fixed
//!   IPI to vCPU 1); vCPU 1's handler reads the TSC first thing. A sample
//!   is the handler's TSC less the sender's.
//!
//! Each figure is the minimum and the median of its samples (`stats`),
//! printed and written to `abi::TIMING_BASE` in `abi::TIMING_FIGURES`
//! order; then vCPU 0 exits 0 (1 if a figure is 0 or a wake went to the
//! wrong vCPU, 2 with fewer than 2 vCPUs; vCPUs past the second park).
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::hint::spin_loop;
use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use test_guests::abi::{TIMING_BASE, TIMING_FIGURES};
use test_guests::check::Checks;
use test_guests::idt::{self, Frame};
use test_guests::smp::{halt_until, Barrier};
use test_guests::x2apic::{self, Destination};
use test_guests::{cpu, println, stats, status, Start};

test_guests::guest!(timing);

const BATCHES: usize = 64;
const PER_BATCH: u64 = 16;
const WAKES: usize = 32;
const WAKE: u8 = 0x40;
/// How long vCPU 0 waits after vCPU 1 said it halts: far more than the
/// HLT exit and the host's switch to its idle loop take (a few thousand
/// ticks in Bochs).
const SETTLE_TICKS: u64 = 200_000;

/// The round vCPU 1 is about to halt for.
static HALTING: AtomicU32 = AtomicU32::new(0);
/// Wakes vCPU 1's handler ran, and the TSC it read at the last.
static WOKEN: AtomicU32 = AtomicU32::new(0);
static WOKE_AT: AtomicU64 = AtomicU64::new(0);
static MISROUTED: AtomicU32 = AtomicU32::new(0);
static READY: Barrier = Barrier::new();

fn on_wake(_: &mut Frame) {
    WOKE_AT.store(cpu::rdtsc(), Ordering::Release);
    if x2apic::id() != 1 {
        MISROUTED.fetch_add(1, Ordering::AcqRel);
    }
    WOKEN.fetch_add(1, Ordering::AcqRel);
    x2apic::eoi();
}

fn timing(start: &Start) -> u32 {
    if start.count < 2 {
        if start.vcpu == 0 {
            println!("timing: needs 2 vcpus, this VM has {}", start.count);
            return status::UNSUPPORTED;
        }
        test_guests::park();
    }
    if start.vcpu >= 2 {
        test_guests::park();
    }
    idt::install();
    idt::set_handler(WAKE, on_wake);
    x2apic::enable();
    READY.wait(2);
    if start.vcpu == 1 {
        for round in 1..=WAKES as u32 {
            HALTING.store(round, Ordering::Release);
            halt_until(|| WOKEN.load(Ordering::Acquire) >= round);
        }
        test_guests::park();
    }
    let cpuid = cpuid_samples();
    let wake = wake_samples();
    report(cpuid, wake)
}

/// Ticks of one CPUID exit round trip, per batch.
fn cpuid_samples() -> [u64; BATCHES] {
    let mut samples = [0; BATCHES];
    for sample in samples.iter_mut() {
        let t0 = cpu::rdtsc();
        for _ in 0..PER_BATCH {
            cpu::cpuid(0, 0);
        }
        *sample = cpu::rdtsc().wrapping_sub(t0) / PER_BATCH;
    }
    samples
}

/// Ticks from the ICR write to vCPU 1's handler, per wake.
fn wake_samples() -> [u64; WAKES] {
    let mut samples = [0; WAKES];
    for (round, sample) in (1..).zip(samples.iter_mut()) {
        while HALTING.load(Ordering::Acquire) < round {
            spin_loop();
        }
        let settled = cpu::rdtsc();
        while cpu::rdtsc().wrapping_sub(settled) < SETTLE_TICKS {
            spin_loop();
        }
        let sent = cpu::rdtsc();
        x2apic::send_ipi(Destination::Physical(1), WAKE);
        while WOKEN.load(Ordering::Acquire) < round {
            spin_loop();
        }
        *sample = WOKE_AT.load(Ordering::Acquire).wrapping_sub(sent);
    }
    samples
}

fn report(mut cpuid: [u64; BATCHES], mut wake: [u64; WAKES]) -> u32 {
    let mut checks = Checks::new("timing");
    let (Some(c), Some(w)) = (stats::min_median(&mut cpuid), stats::min_median(&mut wake)) else {
        return status::FAILED;
    };
    let figures = [c.0, c.1, w.0, w.1];
    for (i, (value, name)) in figures.iter().zip(TIMING_FIGURES).enumerate() {
        checks.check(*value > 0, format_args!("{name} {value} ticks"));
        let word = ptr::with_exposed_provenance_mut::<u64>((TIMING_BASE + 8 * i as u64) as usize);
        // SAFETY: the figures' words are guest RAM below the guest's image
        // that nothing else uses; the VMM reads them after the exit.
        unsafe { ptr::write_volatile(word, *value) };
    }
    let misrouted = MISROUTED.load(Ordering::Acquire);
    checks.check(misrouted == 0, format_args!("every wake ran on vcpu 1 ({misrouted} did not)"));
    checks.note(format_args!("{BATCHES} batches of {PER_BATCH} cpuid, {WAKES} wakes"));
    checks.finish()
}
