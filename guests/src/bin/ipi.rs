//! `ipi`: IPIs through the x2APIC ICR between vCPU 0 and vCPU 1 (others
//! park; fewer than 2 vCPUs exits 2). vCPU 0 sends itself one IPI with the
//! "self" shorthand, then plays 1000 rounds of ping-pong with vCPU 1
//! (fixed IPIs, physical destination: pings are vector 0x40, pongs 0x41),
//! then sends vCPU 1 one IPI by logical destination (the x2APIC cluster
//! LDR, which it first checks). Every wait is `sti; hlt`, every handler
//! sends an EOI and checks that it runs on the vCPU the IPI was for. Exits
//! 0 with the round count printed, 1 if a check failed.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU32, Ordering};

use test_guests::check::Checks;
use test_guests::idt::{self, Frame};
use test_guests::smp::{halt_until, Barrier};
use test_guests::x2apic::{self, Destination};
use test_guests::{cpu, hv, println, status, Start};

test_guests::guest!(ping_pong);

const ROUNDS: u32 = 1000;
const PING: u8 = 0x40;
const PONG: u8 = 0x41;
const SELF: u8 = 0x42;
const LOGICAL: u8 = 0x43;

static PINGS: AtomicU32 = AtomicU32::new(0);
static PONGS: AtomicU32 = AtomicU32::new(0);
static SELFS: AtomicU32 = AtomicU32::new(0);
static LOGICALS: AtomicU32 = AtomicU32::new(0);
/// IPIs whose handler ran on another vCPU than the one they were sent to.
static MISROUTED: AtomicU32 = AtomicU32::new(0);
/// The x2APIC ids of vCPU 0 and 1, and vCPU 1's LDR.
static IDS: [AtomicU32; 2] = [AtomicU32::new(0), AtomicU32::new(0)];
static LDR_1: AtomicU32 = AtomicU32::new(0);
static READY: Barrier = Barrier::new();

/// Counts one IPI meant for vCPU `to` and ends it.
fn arrived(count: &AtomicU32, to: usize) {
    if x2apic::id() != IDS[to].load(Ordering::Acquire) {
        MISROUTED.fetch_add(1, Ordering::AcqRel);
    }
    count.fetch_add(1, Ordering::AcqRel);
    x2apic::eoi();
}

fn on_ping(_: &mut Frame) {
    arrived(&PINGS, 1);
}

fn on_pong(_: &mut Frame) {
    arrived(&PONGS, 0);
}

fn on_self(_: &mut Frame) {
    arrived(&SELFS, 0);
}

fn on_logical(_: &mut Frame) {
    arrived(&LOGICALS, 1);
}

fn ping_pong(start: &Start) -> u32 {
    if start.count < 2 {
        if start.vcpu == 0 {
            println!("ipi: needs at least 2 vcpus, this VM has {}", start.count);
            return status::UNSUPPORTED;
        }
        test_guests::park();
    }
    if start.vcpu >= 2 {
        test_guests::park();
    }
    let me = start.vcpu as usize;
    idt::install();
    if me == 0 {
        idt::set_handler(PING, on_ping);
        idt::set_handler(PONG, on_pong);
        idt::set_handler(SELF, on_self);
        idt::set_handler(LOGICAL, on_logical);
    }
    x2apic::enable();
    IDS[me].store(x2apic::id(), Ordering::Release);
    if me == 1 {
        LDR_1.store(x2apic::ldr(), Ordering::Release);
    }
    // Both APICs take interrupts and both ids are known from here on.
    READY.wait(2);
    if me == 0 {
        vcpu_0()
    } else {
        vcpu_1()
    }
}

fn vcpu_0() -> u32 {
    let mut checks = Checks::new("ipi");
    let (id_0, id_1) = (IDS[0].load(Ordering::Acquire), IDS[1].load(Ordering::Acquire));
    checks.note(format_args!("vcpu 0 is x2apic {id_0}, vcpu 1 is x2apic {id_1}"));

    x2apic::send_ipi(Destination::SelfOnly, SELF);
    halt_until(|| SELFS.load(Ordering::Acquire) >= 1);
    checks.check(true, format_args!("self-ipi (icr shorthand self, vector {SELF:#x}) arrived"));

    let t0 = cpu::rdtsc();
    for round in 1..=ROUNDS {
        x2apic::send_ipi(Destination::Physical(id_1), PING);
        halt_until(|| PONGS.load(Ordering::Acquire) >= round);
        if round.is_multiple_of(250) {
            checks.note(format_args!("{round} rounds"));
        }
    }
    let ticks = cpu::rdtsc().wrapping_sub(t0);
    let (pings, pongs) = (PINGS.load(Ordering::Acquire), PONGS.load(Ordering::Acquire));
    checks.check(
        pings == ROUNDS && pongs == ROUNDS,
        format_args!(
            "{ROUNDS} ping-pong rounds (vector {PING:#x} to vcpu 1, {PONG:#x} back): {pings} pings, {pongs} pongs"
        ),
    );
    if let Some(f) = hv::frequencies() {
        let us = f.tsc_us(ticks);
        checks.note(format_args!("{us} us for {ROUNDS} rounds, {} us a round", us / u64::from(ROUNDS)));
    }

    let ldr = LDR_1.load(Ordering::Acquire);
    let expected = x2apic::logical_id(id_1);
    let ldr_ok = checks.check(
        ldr == expected,
        format_args!("vcpu 1's ldr {ldr:#x} is (id >> 4) << 16 | 1 << (id & 15) = {expected:#x}"),
    );
    if ldr_ok {
        x2apic::send_ipi(Destination::Logical(ldr), LOGICAL);
        // vCPU 1 answers the logical IPI with one more pong.
        halt_until(|| PONGS.load(Ordering::Acquire) > ROUNDS);
        let got = LOGICALS.load(Ordering::Acquire);
        checks.check(
            got == 1,
            format_args!("logical-destination ipi (vector {LOGICAL:#x}) to {ldr:#x} arrived {got} time(s)"),
        );
    }
    let misrouted = MISROUTED.load(Ordering::Acquire);
    checks.check(misrouted == 0, format_args!("every ipi ran its handler on its destination ({misrouted} did not)"));
    println!("ipi: {ROUNDS} rounds between vcpu 0 and vcpu 1");
    checks.finish()
}

fn vcpu_1() -> ! {
    let id_0 = IDS[0].load(Ordering::Acquire);
    for round in 1..=ROUNDS {
        halt_until(|| PINGS.load(Ordering::Acquire) >= round);
        x2apic::send_ipi(Destination::Physical(id_0), PONG);
    }
    halt_until(|| LOGICALS.load(Ordering::Acquire) >= 1);
    x2apic::send_ipi(Destination::Physical(id_0), PONG);
    test_guests::park()
}
