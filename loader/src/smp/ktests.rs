//! The `smp` suite: start, park and restart every AP; IPIs; run-on-CPUs.

use super::{Error, State};
use crate::ktest::{Failure, Test};
use crate::{check, check_eq};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use loader_core::acpi::madt::{CpuClass, MAX_CPUS};

crate::suite!(SUITE_SMP, "smp", TESTS);
static TESTS: &[Test] = &[
    Test { name: "start-every-boot-cpu", run: start_every_boot_cpu },
    Test { name: "aps-take-timer-interrupts", run: aps_take_timer_interrupts },
    Test { name: "fixed-ipi-reaches-every-ap", run: fixed_ipi },
    Test { name: "nmi-reaches-every-ap", run: nmi_ipi },
    Test { name: "run-on-all-cpus", run: run_on_all },
    Test { name: "faults-are-caught-on-aps", run: faults_on_aps },
    Test { name: "park-and-restart-every-ap-twice", run: park_and_restart },
    Test { name: "absent-slot-start-times-out", run: absent_slot },
    Test { name: "bad-requests-are-refused", run: bad_requests },
];

fn cpus() -> &'static loader_core::acpi::madt::CpuList {
    &crate::acpi::get().expect("ACPI is parsed at boot").cpus
}

fn boot_cpu() -> usize {
    crate::cpu::percpu::current_id() as usize
}

/// Logical ids of the APs present at boot.
fn aps() -> impl Iterator<Item = usize> {
    let me = boot_cpu();
    cpus().iter().enumerate().filter(move |(id, c)| *id != me && c.class == CpuClass::Boot).map(|(id, _)| id)
}

fn ensure_all_online() -> Result<(), Failure> {
    for cpu in aps() {
        if super::state(cpu) != State::Online {
            super::start(cpu).map_err(|e| Failure::new(format_args!("start cpu {cpu}: {e}")))?;
        }
    }
    Ok(())
}

fn start_every_boot_cpu() -> Result<(), Failure> {
    ensure_all_online()?;
    for cpu in aps() {
        check_eq!(super::state(cpu), State::Online, "cpu {cpu} state");
        let want = cpus().get(cpu).unwrap().apic_id;
        check_eq!(super::seen_apic_id(cpu), want, "cpu {cpu} read its own APIC id");
    }
    Ok(())
}

fn wait(us: u64, done: impl Fn() -> bool) -> bool {
    crate::time::wait_until(us, done)
}

fn aps_take_timer_interrupts() -> Result<(), Failure> {
    ensure_all_online()?;
    for cpu in aps() {
        let t0 = crate::time::timer::cpu_ticks(cpu);
        check!(wait(500_000, || crate::time::timer::cpu_ticks(cpu) >= t0 + 3), "cpu {cpu} took no timer ticks");
    }
    Ok(())
}

const TEST_VECTOR: u8 = 0xe0;
static FIXED_COUNT: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

fn count_fixed(_: &mut crate::interrupts::idt::TrapFrame) {
    FIXED_COUNT[boot_cpu()].fetch_add(1, Ordering::Relaxed);
}

fn fixed_ipi() -> Result<(), Failure> {
    ensure_all_online()?;
    // Installed once; a second run of the suite finds it in place.
    let _ = crate::interrupts::idt::set_handler(TEST_VECTOR, count_fixed);
    for cpu in aps() {
        let before = FIXED_COUNT[cpu].load(Ordering::Relaxed);
        super::send_fixed(cpu, TEST_VECTOR).map_err(|e| Failure::new(format_args!("{e}")))?;
        check!(
            wait(500_000, || FIXED_COUNT[cpu].load(Ordering::Relaxed) == before + 1),
            "cpu {cpu} did not take the fixed IPI"
        );
    }
    Ok(())
}

fn nmi_ipi() -> Result<(), Failure> {
    ensure_all_online()?;
    for cpu in aps() {
        let before = super::nmi_count(cpu);
        super::send_nmi(cpu).map_err(|e| Failure::new(format_args!("{e}")))?;
        check!(wait(500_000, || super::nmi_count(cpu) == before + 1), "cpu {cpu} did not take the NMI");
    }
    Ok(())
}

static RAN_ON: AtomicU64 = AtomicU64::new(0);

fn mark(cpu: usize, arg: usize) {
    if crate::cpu::percpu::current_id() as usize == cpu && arg == 0x5a {
        RAN_ON.fetch_or(1 << cpu, Ordering::Relaxed);
    }
}

fn run_on_all() -> Result<(), Failure> {
    ensure_all_online()?;
    RAN_ON.store(0, Ordering::Relaxed);
    let all = super::online_mask();
    super::run_on(all, mark, 0x5a).map_err(|e| Failure::new(format_args!("run_on: {e}")))?;
    check_eq!(RAN_ON.load(Ordering::Relaxed), all, "CPUs that ran the function");
    Ok(())
}

static UD_CAUGHT: AtomicU64 = AtomicU64::new(0);

fn ud_probe(cpu: usize, _: usize) {
    if matches!(crate::interrupts::probe::ud2(), Err(f) if f.vector == 6) {
        UD_CAUGHT.fetch_or(1 << cpu, Ordering::Relaxed);
    }
}

fn faults_on_aps() -> Result<(), Failure> {
    ensure_all_online()?;
    UD_CAUGHT.store(0, Ordering::Relaxed);
    let all = super::online_mask();
    super::run_on(all, ud_probe, 0).map_err(|e| Failure::new(format_args!("run_on: {e}")))?;
    check_eq!(UD_CAUGHT.load(Ordering::Relaxed), all, "CPUs whose #UD was caught");
    Ok(())
}

fn park_and_restart() -> Result<(), Failure> {
    ensure_all_online()?;
    for round in 0..2 {
        for cpu in aps() {
            super::park(cpu).map_err(|e| Failure::new(format_args!("round {round}: park cpu {cpu}: {e}")))?;
            check_eq!(super::state(cpu), State::Parked, "round {round}: cpu {cpu}");
            let ticks = crate::time::timer::cpu_ticks(cpu);
            crate::time::delay_us(50_000);
            check_eq!(crate::time::timer::cpu_ticks(cpu), ticks, "round {round}: parked cpu {cpu} still ticks");
        }
        let mask = super::online_mask();
        check_eq!(mask, 1 << boot_cpu(), "round {round}: online CPUs while all APs are parked");
        for cpu in aps() {
            let wakes = super::wakes(cpu);
            super::start(cpu).map_err(|e| Failure::new(format_args!("round {round}: restart cpu {cpu}: {e}")))?;
            // A parked CPU leaves its park loop; INIT-SIPI would be slower.
            check_eq!(super::wakes(cpu), wakes + 1, "round {round}: wakes of cpu {cpu} from its park loop");
        }
        run_on_all()?;
    }
    Ok(())
}

fn absent_slot() -> Result<(), Failure> {
    // Only layouts with a free hot-pluggable slot (e.g. -smp 2,maxcpus=4).
    let Some(slot) = cpus().iter().position(|c| c.class == CpuClass::HotPluggable) else {
        return Ok(());
    };
    check_eq!(super::start(slot), Err(Error::StartTimeout(slot)), "start of empty slot {slot}");
    check_eq!(super::state(slot), State::Offline, "state of empty slot {slot}");
    Ok(())
}

fn bad_requests() -> Result<(), Failure> {
    let me = boot_cpu();
    check_eq!(super::start(me), Err(Error::IsBootCpu(me)), "start of the boot CPU");
    check_eq!(super::park(me), Err(Error::IsBootCpu(me)), "park of the boot CPU");
    check_eq!(super::start(MAX_CPUS + 1), Err(Error::NoSuchCpu(MAX_CPUS + 1)), "start of a CPU not in the MADT");
    ensure_all_online()?;
    if let Some(cpu) = aps().next() {
        check_eq!(super::start(cpu), Err(Error::WrongState { cpu, state: State::Online }), "second start of cpu {cpu}");
    }
    Ok(())
}
