//! The `cpuhp` suite: cpuhp-plugin with the hprecorder test plugin. Every
//! boot CPU online after load, offline/online cycles, injected failures in
//! every state and both directions rolled back in exact reverse (as the
//! recorder saw it), the boot CPU refused, and a swap of cpuhp while CPUs
//! are online. The `cpuhp-maxcpus` suite checks `maxcpus=`; the
//! `bench-cpuhp` suite times one offline->online.

use crate::ktest::{with, Failure, Test};
use crate::plugin::registry;
use crate::{check, check_eq, failure};
use core::sync::atomic::{AtomicU64, Ordering};
use cpuhp_api::code::{BOOT_CPU, FAILED, STARTING_CANNOT_FAIL};
use cpuhp_api::direction::{DOWN, UP};
use cpuhp_api::section::STARTING;
use cpuhp_api::{Cpuhp, Event, StateInfo};
use hprecorder_api::Recorder;
use loader_core::acpi::madt::CpuClass;

crate::suite!(SUITE_CPUHP, "cpuhp", TESTS);
static TESTS: &[Test] = &[
    Test { name: "boot-cpus-online-after-load", run: boot_cpus_online },
    Test { name: "offline-online-cycles", run: cycles },
    Test { name: "injected-failures-roll-back-in-reverse", run: injected_failures },
    Test { name: "boot-cpu-offline-refused", run: boot_cpu_refused },
    Test { name: "swap-while-cpus-online", run: swap_while_online },
];

crate::suite!(SUITE_CPUHP_MAXCPUS, "cpuhp-maxcpus", MAXCPUS);
static MAXCPUS: &[Test] = &[Test { name: "held-boot-cpus-come-online-on-request", run: maxcpus }];

crate::suite!(SUITE_BENCH_CPUHP, "bench-cpuhp", BENCH);
static BENCH: &[Test] = &[Test { name: "cpu-offline-online", run: bench }];

/// cpuhp's own state (`cpuhp:bringup`).
const BRINGUP_ID: u32 = 1;
/// The reason cpuhp gives an injected failure.
const INJECTED_REASON: &str = "injected with `cpu fail`";

pub(super) fn cpuhp<R>(f: impl FnOnce(&Cpuhp) -> R) -> Result<R, Failure> {
    with(f)
}

/// The recorder's records for `cpu` since the last take: (slot, direction).
fn take(cpu: usize) -> Result<alloc::vec::Vec<(u32, u32)>, Failure> {
    let mut buf = [0u32; 64];
    let n = with(|r: &Recorder| (r.take)(cpu as u32, buf.as_mut_ptr(), buf.len()))?;
    check!(n <= buf.len(), "the recorder lost records ({n})");
    Ok(buf[..n].iter().map(|v| (v >> 1, v & 1)).collect())
}

fn fresh() -> Result<(), Failure> {
    for p in registry::list() {
        let _ = registry::unload(&p.name, true);
    }
    registry::load("cpuhp-plugin", Some("1.2.0")).map_err(|e| failure!("load cpuhp: {e}"))?;
    registry::load("hprecorder-plugin", None).map_err(|e| failure!("load hprecorder: {e}"))?;
    Ok(())
}

/// CPUs enabled at boot other than the one running the tests.
pub(super) fn boot_aps() -> alloc::vec::Vec<usize> {
    let me = crate::cpu::percpu::current_id() as usize;
    let cpus = &crate::acpi::get().expect("ACPI is read at boot").cpus;
    cpus.iter().enumerate().filter(|(i, c)| *i != me && c.class == CpuClass::Boot).map(|(i, _)| i).collect()
}

/// What the shell's `cpus` shows for `cpu` (cpuhp's describer), as
/// (state, origin); `None` when no plugin describes CPUs.
fn described(cpu: usize) -> Result<Option<(alloc::string::String, alloc::string::String)>, Failure> {
    match registry::describe_cpu(cpu as u32) {
        None => Ok(None),
        Some(Ok(l)) => Ok(Some((l.state().into(), l.origin().into()))),
        Some(Err(e)) => Err(failure!("describing cpu {cpu}: {e}")),
    }
}

fn row(state: &str, origin: &str) -> Option<(alloc::string::String, alloc::string::String)> {
    Some((state.into(), origin.into()))
}

fn boot_cpus_online() -> Result<(), Failure> {
    fresh()?;
    let me = crate::cpu::percpu::current_id() as usize;
    for cpu in boot_aps().into_iter().chain([me]) {
        check_eq!(
            cpuhp(|t| ((t.is_online)(cpu as u32), (t.is_boot_cpu)(cpu as u32), (t.arrived_later)(cpu as u32)))?,
            (1, 1, 0),
            "cpu {cpu} online, boot, not later"
        );
        check_eq!(crate::smp::state(cpu), crate::smp::State::Online, "cpu {cpu} runs");
        check_eq!(described(cpu)?, row("online", "boot"), "`cpus` row of cpu {cpu}");
    }
    let cpus = &crate::acpi::get().expect("ACPI is read at boot").cpus;
    for (cpu, _) in cpus.iter().enumerate().filter(|(_, c)| c.class == CpuClass::HotPluggable) {
        check_eq!(described(cpu)?, row("absent", "-"), "`cpus` row of empty slot {cpu}");
    }
    Ok(())
}

/// Up: prepare, starting, online; down: the reverse.
const UP_ALL: [(u32, u32); 3] = [(0, 0), (1, 0), (2, 0)];
const DOWN_ALL: [(u32, u32); 3] = [(2, 1), (1, 1), (0, 1)];

fn cycles() -> Result<(), Failure> {
    fresh()?;
    let aps = boot_aps();
    if aps.is_empty() {
        crate::println!("  (one CPU only: nothing to offline)");
    }
    for &cpu in &aps {
        take(cpu)?;
        for round in 0..3 {
            check_eq!(cpuhp(|t| (t.cpu_offline)(cpu as u32))?, 0, "offline cpu {cpu}, round {round}");
            check_eq!(crate::smp::state(cpu), crate::smp::State::Parked, "cpu {cpu} after offline");
            check_eq!(cpuhp(|t| (t.is_online)(cpu as u32))?, 0, "cpuhp's view after offline");
            check_eq!(take(cpu)?, DOWN_ALL, "teardowns on cpu {cpu}");
            let wakes = crate::smp::wakes(cpu);
            check_eq!(cpuhp(|t| (t.cpu_online)(cpu as u32))?, 0, "online cpu {cpu}, round {round}");
            check_eq!(crate::smp::state(cpu), crate::smp::State::Online, "cpu {cpu} after online");
            check_eq!(crate::smp::wakes(cpu), wakes + 1, "cpu {cpu} onlined from its park loop, round {round}");
            check_eq!(take(cpu)?, UP_ALL, "startups on cpu {cpu}");
        }
    }
    Ok(())
}

/// The recorder slot of state `id`, if it is one of the recorder's.
fn slot_of(id: u32) -> Result<Option<u32>, Failure> {
    for slot in 0..3 {
        if with(|r: &Recorder| (r.state_id)(slot))? == id {
            return Ok(Some(slot));
        }
    }
    Ok(None)
}

/// The state and reason of the last failure (`last_failure`, then
/// `failure_reason` of its event).
pub(super) fn last_failure() -> Result<(u32, alloc::string::String), Failure> {
    let mut e = Event::default();
    check_eq!(cpuhp(|t| (t.last_failure)(&mut e))?, 0, "last_failure");
    let mut buf = [0u8; 80];
    let n = cpuhp(|t| (t.failure_reason)(e.seq, buf.as_mut_ptr(), buf.len()))?;
    check!((0..=buf.len() as i32).contains(&n), "failure_reason of event #{}: {n}", e.seq);
    Ok((e.state, alloc::string::String::from_utf8_lossy(&buf[..n as usize]).into()))
}

fn injected_failures() -> Result<(), Failure> {
    fresh()?;
    let Some(&cpu) = boot_aps().first() else {
        crate::println!("  (one CPU only: nothing to bring up)");
        return Ok(());
    };
    let n = cpuhp(|t| (t.state_count)())?;
    let mut states = alloc::vec::Vec::new();
    for i in 0..n {
        let mut info = StateInfo::default();
        check_eq!(cpuhp(|t| (t.state_at)(i, &mut info))?, 0, "state_at {i}");
        states.push((info.id, info.section, slot_of(info.id)?));
    }
    check!(states.len() >= 4, "expected the recorder's three states and cpuhp:bringup, got {}", states.len());
    let mut tried = 0;
    for (i, &(id, section, _)) in states.iter().enumerate() {
        for dir in [UP, DOWN] {
            // Start where the walk starts: offline for up, online for down.
            let online_now = cpuhp(|t| (t.is_online)(cpu as u32))? == 1;
            if (dir == UP) == online_now {
                let op = if dir == UP { "offline" } else { "online" };
                let r = cpuhp(|t| if dir == UP { (t.cpu_offline)(cpu as u32) } else { (t.cpu_online)(cpu as u32) })?;
                check_eq!(r, 0, "{op} before the test");
            }
            take(cpu)?;
            let r = cpuhp(|t| (t.fail)(cpu as u32, id, dir))?;
            if section == STARTING {
                check_eq!(r, STARTING_CANNOT_FAIL, "injecting into STARTING state {id}");
                continue;
            }
            check_eq!(r, 0, "inject state {id} dir {dir}");
            let r = cpuhp(|t| if dir == UP { (t.cpu_online)(cpu as u32) } else { (t.cpu_offline)(cpu as u32) })?;
            check_eq!(r, FAILED, "walk with state {id} failing, dir {dir}");
            let (state, reason) = last_failure()?;
            check_eq!(
                (state, reason.as_str()),
                (id, INJECTED_REASON),
                "last failure after state {id} failed dir {dir}"
            );
            // Expected: the recorder states the walk passed, then the same
            // in exact reverse.
            let slots =
                |range: &[(u32, u32, Option<u32>)]| range.iter().filter_map(|s| s.2).collect::<alloc::vec::Vec<u32>>();
            let expected: alloc::vec::Vec<(u32, u32)> = if dir == UP {
                let passed = slots(&states[..i]);
                passed.iter().map(|&s| (s, UP)).chain(passed.iter().rev().map(|&s| (s, DOWN))).collect()
            } else {
                let passed = slots(&states[i + 1..]);
                passed.iter().rev().map(|&s| (s, DOWN)).chain(passed.iter().map(|&s| (s, UP))).collect()
            };
            check_eq!(take(cpu)?, expected, "records after state {id} failed dir {dir}");
            let (want_online, want_smp) =
                if dir == UP { (0, crate::smp::State::Parked) } else { (1, crate::smp::State::Online) };
            check_eq!(
                cpuhp(|t| (t.is_online)(cpu as u32))?,
                want_online,
                "cpuhp's view after state {id} failed dir {dir}"
            );
            let smp = crate::smp::state(cpu);
            check!(
                smp == want_smp || (want_smp == crate::smp::State::Parked && smp == crate::smp::State::Offline),
                "cpu {cpu} is {} after state {id} failed dir {dir}",
                smp.name()
            );
            tried += 1;
        }
    }
    // The recorder's own ONLINE callback refusing (not an injection).
    if cpuhp(|t| (t.is_online)(cpu as u32))? == 1 {
        check_eq!(cpuhp(|t| (t.cpu_offline)(cpu as u32))?, 0, "offline");
    }
    take(cpu)?;
    with(|r: &Recorder| (r.set_fail)(2, UP, 1))?;
    let r = cpuhp(|t| (t.cpu_online)(cpu as u32))?;
    with(|r: &Recorder| (r.set_fail)(2, UP, 0))?;
    check_eq!(r, FAILED, "online with the recorder refusing");
    let refusing = with(|r: &Recorder| (r.state_id)(2))?;
    check_eq!(
        last_failure()?,
        (refusing, alloc::string::String::new()),
        "last failure: the recorder's, which gives no reason"
    );
    check_eq!(take(cpu)?, [(0, 0), (1, 0), (2, 0), (1, 1), (0, 1)], "records after the recorder refused");
    check_eq!(cpuhp(|t| (t.cpu_online)(cpu as u32))?, 0, "online after the refusal is lifted");
    check!(tried >= 4, "only {tried} failures injected");
    Ok(())
}

fn boot_cpu_refused() -> Result<(), Failure> {
    fresh()?;
    let me = crate::cpu::percpu::current_id();
    check_eq!(cpuhp(|t| (t.cpu_offline)(me))?, BOOT_CPU, "offline of the boot CPU");
    check!(crate::shell::execute(&alloc::format!("cpu offline {me}")).is_err(), "the shell offlined the boot CPU");
    crate::shell::execute("cpus").map_err(|e| failure!("cpus: {e}"))?;
    crate::shell::execute("cpu states").map_err(|e| failure!("cpu states: {e}"))?;
    crate::shell::execute("cpu events 5").map_err(|e| failure!("cpu events: {e}"))?;
    check!(crate::shell::execute("cpu fail 0 hprecorder:starting").is_err(), "a STARTING state took a failure");
    Ok(())
}

static EVENTS_SEEN: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_event(_: *const Event, _: usize) {
    EVENTS_SEEN.fetch_add(1, Ordering::SeqCst);
}

fn swap_while_online() -> Result<(), Failure> {
    fresh()?;
    let sub = cpuhp(|t| (t.subscribe)(count_event, 0))?;
    check!(sub > 0, "subscribe: {sub}");
    let aps = boot_aps();
    // A refused offline, whose failure and reason every swap must carry.
    let failure = match aps.first() {
        Some(&cpu) => {
            check_eq!(cpuhp(|t| (t.fail)(cpu as u32, BRINGUP_ID, DOWN))?, 0, "inject into cpuhp:bringup");
            check_eq!(cpuhp(|t| (t.cpu_offline)(cpu as u32))?, FAILED, "offline with the park failing");
            take(cpu)?;
            Some(last_failure()?)
        }
        None => None,
    };
    for (version, generation) in [("1.3.0", 2), ("1.2.0", 1), ("1.3.0", 2)] {
        registry::swap("cpuhp", version).map_err(|e| failure!("swap to {version}: {e}"))?;
        check_eq!(cpuhp(|t| (t.generation)())?, generation, "generation after the swap to {version}");
        if let Some(f) = &failure {
            check_eq!(&last_failure()?, f, "the last failure after the swap to {version}");
        }
        // The new version described the CPUs in its init and took over.
        let me = crate::cpu::percpu::current_id() as usize;
        check_eq!(described(me)?, row("online", "boot"), "`cpus` row of cpu {me} after the swap to {version}");
        for &cpu in &aps {
            check_eq!(cpuhp(|t| (t.is_online)(cpu as u32))?, 1, "cpu {cpu} online after the swap to {version}");
            take(cpu)?;
            let before = EVENTS_SEEN.load(Ordering::SeqCst);
            check_eq!(cpuhp(|t| (t.cpu_offline)(cpu as u32))?, 0, "offline cpu {cpu} after the swap");
            check_eq!(cpuhp(|t| (t.cpu_online)(cpu as u32))?, 0, "online cpu {cpu} after the swap");
            check_eq!(take(cpu)?, [DOWN_ALL, UP_ALL].concat(), "the recorder's states after the swap to {version}");
            check!(
                EVENTS_SEEN.load(Ordering::SeqCst) > before,
                "the subscriber saw nothing after the swap to {version}"
            );
        }
    }
    check_eq!(cpuhp(|t| (t.unsubscribe)(sub as u32))?, 0, "unsubscribe");
    for p in registry::list() {
        let _ = registry::unload(&p.name, true);
    }
    check_eq!(
        described(crate::cpu::percpu::current_id() as usize)?,
        None,
        "`cpus` after cpuhp unloaded: the loader's view"
    );
    Ok(())
}

/// `maxcpus=` (any value, or none): the first CPUs enabled at boot are
/// online after cpuhp loads, the rest present, offline and of boot origin,
/// never started; `cpu online N` brings each up through every state.
fn maxcpus() -> Result<(), Failure> {
    let limit = crate::boot_info().1.max_cpus.unwrap_or(u32::MAX) as usize;
    fresh()?;
    let aps = boot_aps();
    let (started, held) = aps.split_at(aps.len().min(limit - 1));
    for &cpu in started {
        check_eq!(
            cpuhp(|t| ((t.is_online)(cpu as u32), (t.is_boot_cpu)(cpu as u32)))?,
            (1, 1),
            "cpu {cpu} online, boot"
        );
        check_eq!(described(cpu)?, row("online", "boot"), "`cpus` row of cpu {cpu}");
    }
    if held.is_empty() {
        crate::println!("  ({} CPUs enabled at boot, maxcpus={limit}: none held)", aps.len() + 1);
    }
    for &cpu in held {
        check_eq!(
            cpuhp(|t| ((t.is_online)(cpu as u32), (t.is_boot_cpu)(cpu as u32), (t.arrived_later)(cpu as u32)))?,
            (0, 1, 0),
            "cpu {cpu}, past maxcpus={limit}: offline, boot, not later"
        );
        check_eq!(crate::smp::state(cpu), crate::smp::State::Offline, "cpu {cpu} was never started");
        check_eq!(described(cpu)?, row("offline", "boot"), "`cpus` row of held cpu {cpu}");
        take(cpu)?;
        crate::shell::execute(&alloc::format!("cpu online {cpu}")).map_err(|e| failure!("cpu online {cpu}: {e}"))?;
        check_eq!(cpuhp(|t| (t.is_online)(cpu as u32))?, 1, "cpu {cpu} after `cpu online {cpu}`");
        check_eq!(crate::smp::state(cpu), crate::smp::State::Online, "cpu {cpu} runs");
        check_eq!(take(cpu)?, UP_ALL, "the recorder's startups on cpu {cpu}");
        check_eq!(described(cpu)?, row("online", "boot"), "`cpus` row of cpu {cpu} once online");
    }
    Ok(())
}

fn bench() -> Result<(), Failure> {
    fresh()?;
    let Some(&cpu) = boot_aps().first() else {
        crate::println!("  (one CPU only: nothing to time)");
        return Ok(());
    };
    let states = cpuhp(|t| (t.state_count)())?;
    let t0 = crate::time::rdtsc();
    check_eq!(cpuhp(|t| (t.cpu_offline)(cpu as u32))?, 0, "offline");
    check_eq!(cpuhp(|t| (t.cpu_online)(cpu as u32))?, 0, "online");
    crate::println!("bench: cpu-offline-online {} tsc states={states}", crate::time::rdtsc() - t0);
    Ok(())
}
