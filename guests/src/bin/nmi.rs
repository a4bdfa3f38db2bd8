//! `nmi`: the ICR's other deliveries between vCPU 0 and vCPU 1 (others
//! park; fewer than 2 vCPUs exits 2). vCPU 0 sends a fixed IPI with the
//! "all excluding self" shorthand, which only vCPU 1 takes; then an NMI to
//! vCPU 1 (physical destination), and while vCPU 1 is still in that NMI's
//! handler (NMIs blocked until its IRET) a second one, which must wait for
//! the IRET and then arrive (the VMM waits for the NMI window): two NMIs,
//! the second after the first handler ended, none lost. vCPU 1 waits with
//! interrupts off (`cli; hlt`), which only an NMI ends. Exits 0 if all
//! hold, 1 otherwise.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::hint::spin_loop;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use test_guests::check::Checks;
use test_guests::idt::{self, Frame};
use test_guests::smp::{halt_until, Barrier};
use test_guests::x2apic::{self, Destination};
use test_guests::{cpu, println, status, Start};

test_guests::guest!(nmis);

const BROADCAST: u8 = 0x44;
const NMI: u8 = 2;

static BROADCASTS: [AtomicU32; 2] = [AtomicU32::new(0), AtomicU32::new(0)];
static NMIS: AtomicU32 = AtomicU32::new(0);
/// vCPU 1 is inside its first NMI handler.
static IN_FIRST: AtomicBool = AtomicBool::new(false);
/// vCPU 0 sent the second NMI: the first handler may return.
static SECOND_SENT: AtomicBool = AtomicBool::new(false);
/// NMIs that began while another's handler still ran.
static NESTED: AtomicU32 = AtomicU32::new(0);
static RUNNING: AtomicBool = AtomicBool::new(false);
static ID_1: AtomicU32 = AtomicU32::new(0);
static READY: Barrier = Barrier::new();

fn on_broadcast(_: &mut Frame) {
    let me = x2apic::id() as usize;
    BROADCASTS[me.min(1)].fetch_add(1, Ordering::AcqRel);
    x2apic::eoi();
}

fn on_nmi(_: &mut Frame) {
    if RUNNING.swap(true, Ordering::AcqRel) {
        NESTED.fetch_add(1, Ordering::AcqRel);
    }
    let n = NMIS.fetch_add(1, Ordering::AcqRel) + 1;
    if n == 1 {
        IN_FIRST.store(true, Ordering::Release);
        // Hold NMIs blocked until the second one is pending.
        while !SECOND_SENT.load(Ordering::Acquire) {
            spin_loop();
        }
        for _ in 0..100_000 {
            spin_loop();
        }
    }
    RUNNING.store(false, Ordering::Release);
}

fn nmis(start: &Start) -> u32 {
    if start.count < 2 {
        if start.vcpu == 0 {
            println!("nmi: needs at least 2 vcpus, this VM has {}", start.count);
            return status::UNSUPPORTED;
        }
        test_guests::park();
    }
    if start.vcpu >= 2 {
        test_guests::park();
    }
    idt::install();
    if start.vcpu == 0 {
        idt::set_handler(BROADCAST, on_broadcast);
        idt::set_handler(NMI, on_nmi);
    }
    x2apic::enable();
    if start.vcpu == 1 {
        ID_1.store(x2apic::id(), Ordering::Release);
    }
    READY.wait(2);
    if start.vcpu == 1 {
        vcpu_1()
    }
    vcpu_0()
}

fn vcpu_0() -> u32 {
    let mut checks = Checks::new("nmi");
    x2apic::send_ipi(Destination::AllExcludingSelf, BROADCAST);
    let wait = |done: &dyn Fn() -> bool| {
        while !done() {
            spin_loop();
        }
    };
    wait(&|| BROADCASTS[1].load(Ordering::Acquire) >= 1);
    // Time for a stray copy to vCPU 0 to arrive, if the VMM sent one.
    cpu::sti();
    for _ in 0..100_000 {
        spin_loop();
    }
    cpu::cli();
    let (to_0, to_1) = (BROADCASTS[0].load(Ordering::Acquire), BROADCASTS[1].load(Ordering::Acquire));
    checks.check(
        to_0 == 0 && to_1 == 1,
        format_args!("all-excluding-self ipi reached vcpu 1 {to_1} time(s), vcpu 0 {to_0} time(s)"),
    );

    let id_1 = ID_1.load(Ordering::Acquire);
    x2apic::send_nmi(Destination::Physical(id_1));
    wait(&|| IN_FIRST.load(Ordering::Acquire));
    x2apic::send_nmi(Destination::Physical(id_1));
    SECOND_SENT.store(true, Ordering::Release);
    wait(&|| NMIS.load(Ordering::Acquire) >= 2);
    let nested = NESTED.load(Ordering::Acquire);
    checks.check(nested == 0, format_args!("the second nmi waited for the first one's iret ({nested} nested)"));
    // Nothing more may come: both NMIs were delivered once.
    for _ in 0..100_000 {
        spin_loop();
    }
    let got = NMIS.load(Ordering::Acquire);
    checks.check(
        got == 2,
        format_args!("2 nmis sent to vcpu 1 (one while it was in the other's handler), {got} arrived"),
    );
    checks.finish()
}

/// Waits with interrupts off: only the NMIs end its HLTs.
fn vcpu_1() -> ! {
    cpu::sti();
    halt_until(|| BROADCASTS[1].load(Ordering::Acquire) >= 1);
    loop {
        cpu::cli();
        cpu::hlt();
    }
}
