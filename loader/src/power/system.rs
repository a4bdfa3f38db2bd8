//! The machine's way down, as plugins take part in it: the system state
//! (running until a reboot, power-off or panic begins, and never back), the
//! plugins' shutdown hooks, and the emergency round in which every running
//! CPU runs the plugins' emergency callbacks before the machine resets
//! (Linux: `system_state`, syscore shutdown, and the NMI shootdown that
//! turns virtualization off on every CPU before a reboot).

use crate::cpu::percpu;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use loader_core::acpi::madt::MAX_CPUS;
use plugins::{system_state, SystemHooks};
use spin::Mutex;

/// Plugins that may hold hooks at once.
const SLOTS: usize = 8;
/// How long the CPU that shuts down waits for the others' emergency round.
const ROUND_TIMEOUT_US: u64 = 200_000;
/// A result slot whose callback did not run (callbacks return 1, 0 or a
/// negative error of their own, never this).
const NOT_RUN: i32 = i32::MIN;

#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    AlreadyRegistered,
    Full,
    NotRegistered,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::AlreadyRegistered => write!(f, "the plugin has registered its system hooks already"),
            Error::Full => write!(f, "all {SLOTS} system hook slots are taken"),
            Error::NotRegistered => write!(f, "the plugin has no system hooks registered"),
        }
    }
}

struct Slot {
    owner: u64,
    name: alloc::string::String,
    shutdown: Option<extern "C" fn(u32)>,
}

static STATE: AtomicU32 = AtomicU32::new(system_state::RUNNING);
/// Registrations, for the shutdown hooks and the report. The emergency
/// round does not take this lock (a stopped CPU may hold it): it reads the
/// callbacks from [`EMERGENCY`].
static SLOTS_TABLE: Mutex<[Option<Slot>; SLOTS]> = Mutex::new([const { None }; SLOTS]);
/// Slot `i`'s emergency callback as an address, 0 when none.
static EMERGENCY: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
/// Per CPU and slot: what the emergency callback returned in the round.
static RESULTS: [[AtomicI32; SLOTS]; MAX_CPUS] = [const { [const { AtomicI32::new(NOT_RUN) }; SLOTS] }; MAX_CPUS];
static IN_ROUND: AtomicBool = AtomicBool::new(false);
/// CPUs that finished their part of the round.
static DONE: AtomicU64 = AtomicU64::new(0);

/// The [`system_state`] now.
pub fn state() -> u32 {
    STATE.load(Ordering::SeqCst)
}

/// Registers `owner`'s hooks. Under the same lock as [`shut_down`]'s
/// change of state, so a shutdown either sees these hooks or began before
/// and shows in [`state`] when the caller checks it next.
pub fn register(owner: u64, name: &str, hooks: SystemHooks) -> Result<(), Error> {
    let mut t = SLOTS_TABLE.lock();
    if t.iter().flatten().any(|s| s.owner == owner) {
        return Err(Error::AlreadyRegistered);
    }
    let i = t.iter().position(Option::is_none).ok_or(Error::Full)?;
    t[i] = Some(Slot { owner, name: name.into(), shutdown: hooks.shutdown });
    EMERGENCY[i].store(hooks.emergency.map_or(0, |f| f as usize), Ordering::Release);
    Ok(())
}

/// Drops `owner`'s hooks.
pub fn unregister(owner: u64) -> Result<(), Error> {
    let mut t = SLOTS_TABLE.lock();
    let i = t.iter().position(|s| s.as_ref().is_some_and(|s| s.owner == owner)).ok_or(Error::NotRegistered)?;
    EMERGENCY[i].store(0, Ordering::Release);
    t[i] = None;
    Ok(())
}

/// Forgets `owner`'s hooks, if any (it is going away).
pub fn drop_owner(owner: u64) {
    let _ = unregister(owner);
}

/// An orderly reboot or power-off: enters `new_state`, runs every shutdown
/// hook here in thread context, then the emergency round.
pub fn shut_down(new_state: u32) {
    let hooks: Vec<(u64, alloc::string::String, extern "C" fn(u32))> = {
        let t = SLOTS_TABLE.lock();
        enter(new_state);
        t.iter().flatten().filter_map(|s| s.shutdown.map(|f| (s.owner, s.name.clone(), f))).collect()
    };
    for (owner, name, f) in hooks {
        crate::smp::enter_unstoppable();
        let r = crate::plugin::guard::call(owner, &name, || f(new_state));
        crate::smp::exit_unstoppable();
        if let Err(message) = r {
            log::error!("{name} panicked in its shutdown hook: {message}; going on");
        }
    }
    emergency(new_state);
}

/// The first state other than running sticks: a panic during a reboot is
/// still a reboot that went wrong.
fn enter(new_state: u32) {
    let _ = STATE.compare_exchange(system_state::RUNNING, new_state, Ordering::SeqCst, Ordering::SeqCst);
}

/// The emergency round (once): every other running CPU gets an NMI, runs
/// the emergency callbacks and halts for good; this CPU runs them too; then
/// the results are logged. Callable from the panic path: takes no lock a
/// stopped CPU might hold before the others have stopped.
pub fn emergency(new_state: u32) {
    enter(new_state);
    if IN_ROUND.swap(true, Ordering::SeqCst) {
        return;
    }
    let me = percpu::current_id() as usize;
    let others = crate::smp::online_mask() & !(1 << me);
    for cpu in (0..MAX_CPUS).filter(|c| others & 1 << c != 0) {
        // A CPU the NMI cannot reach shows as missing below.
        let _ = crate::smp::send_nmi(cpu);
    }
    x86_64::instructions::interrupts::without_interrupts(|| run_callbacks(me));
    let all = others | 1 << me;
    let arrived = crate::time::wait_until(ROUND_TIMEOUT_US, || DONE.load(Ordering::Acquire) == all);
    // The others halted wherever the NMI found them, maybe inside the
    // console: it is ours now.
    crate::console::claim_from_stopped_cpus();
    report(all);
    if !arrived {
        log::error!(
            "emergency round: CPUs {:#x} did not answer the NMI; whatever they had on stays on",
            all & !DONE.load(Ordering::Acquire)
        );
    }
}

/// Runs every emergency callback on this CPU and records the results.
fn run_callbacks(cpu: usize) {
    for (slot, f) in EMERGENCY.iter().enumerate() {
        let f = f.load(Ordering::Acquire);
        if f != 0 {
            // SAFETY: slot addresses are stored from `extern "C" fn() ->
            // i32` values in `register`, and the owner's image stays mapped
            // while its slot is set (`drop_owner` comes before the unmap).
            let f = unsafe { core::mem::transmute::<usize, extern "C" fn() -> i32>(f) };
            RESULTS[cpu][slot].store(f(), Ordering::Release);
        }
    }
    DONE.fetch_or(1 << cpu, Ordering::AcqRel);
}

/// The NMI handler's part: in a round, this CPU takes part and halts.
pub fn on_nmi() {
    if IN_ROUND.load(Ordering::Acquire) {
        run_callbacks(percpu::current_id() as usize);
        loop {
            x86_64::instructions::interrupts::disable();
            x86_64::instructions::hlt();
        }
    }
}

fn report(cpus: u64) {
    let t = SLOTS_TABLE.try_lock();
    for cpu in (0..MAX_CPUS).filter(|c| cpus & 1 << c != 0) {
        for (slot, r) in RESULTS[cpu].iter().enumerate() {
            let r = r.load(Ordering::Acquire);
            if r == NOT_RUN {
                continue;
            }
            let owner = t.as_ref().and_then(|t| t[slot].as_ref().map(|s| s.name.as_str())).unwrap_or("a plugin");
            match r {
                1 => log::info!("shutdown: cpu {cpu}: {owner} turned off what it had on"),
                0 => log::info!("shutdown: cpu {cpu}: {owner} had nothing on"),
                e => log::error!("shutdown: cpu {cpu}: {owner}'s emergency callback failed with {e}"),
            }
        }
    }
}

/// Whether `cpu` took part in the emergency round (for tests).
#[cfg(feature = "ktest")]
pub fn emergency_ran(cpu: usize) -> bool {
    DONE.load(Ordering::Acquire) & 1 << cpu != 0
}

/// What the emergency callbacks returned on `cpu` in the round, in slot
/// order (for tests).
#[cfg(feature = "ktest")]
pub fn emergency_results(cpu: usize) -> alloc::vec::Vec<i32> {
    RESULTS[cpu].iter().map(|r| r.load(Ordering::Acquire)).filter(|&r| r != NOT_RUN).collect()
}

/// Whether any plugin holds system hooks (for tests).
#[cfg(feature = "ktest")]
pub fn any_registered() -> bool {
    SLOTS_TABLE.lock().iter().any(Option::is_some)
}

/// Runs `f` in `state` as a shutdown that has just begun shows it (no
/// hooks, no emergency round), then goes back to running: for the test of
/// a load that must notice the shutdown.
#[cfg(feature = "ktest")]
pub fn with_state<R>(state: u32, f: impl FnOnce() -> R) -> R {
    enter(state);
    let r = f();
    STATE.store(system_state::RUNNING, Ordering::SeqCst);
    r
}
