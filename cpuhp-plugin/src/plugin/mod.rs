//! The plugin: the machine behind the hotplug lock, a [`Platform`] over
//! the loader's CPU exports, the `cpuhp` table, the `cpu` shell command and
//! the swap state. Decisions stay in the pure modules.

use crate::blob;
use crate::events::{self, Event, EventFn, Subscribers};
use crate::lock::HotplugLock;
use crate::machine::{
    self, Call, Direction, Error, Fallible, FallibleHooks, Hooks, Infallible, Machine, Origin, Platform, Refusal,
    Stage, StartingHooks, MAX_CPUS, NAME_LEN,
};
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use cpuhp_api::{code, section, Cpuhp, StateInfo};
use plugins::{ffi, CpuInfo, CpuLifecycle, StrRef};
use spin::Mutex;

mod acpi;
mod command;

#[cfg(feature = "v1")]
const GENERATION: u32 = 1;
#[cfg(feature = "v2")]
const GENERATION: u32 = 2;

static LOCK: HotplugLock = HotplugLock::new();

struct Inner {
    m: Machine,
    subs: Subscribers,
}

/// Taken only by the holder of LOCK's write side (and by swap export,
/// with the world stopped), so it never waits.
static INNER: Mutex<Option<Inner>> = Mutex::new(None);

/// Per CPU, lock-free for queries: the stage and origin as of the last
/// finished operation (published under the write lock).
static STAGE: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(Stage::Absent as u8) }; MAX_CPUS];
static ORIGIN: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];
/// Per CPU: running a hotplug walk (control CPU) or one of its callbacks.
/// `read_lock` there would wait for itself.
static IN_HOTPLUG: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

fn current_cpu() -> usize {
    // SAFETY: a plain query of the loader.
    unsafe { ffi::mv_current_cpu() as usize }
}

fn publish_mirror(m: &Machine) {
    for (i, c) in m.cpus().iter().enumerate() {
        STAGE[i].store(c.stage as u8, Ordering::Release);
        ORIGIN[i].store(c.origin.map_or(0, |o| o as u8 + 1), Ordering::Release);
    }
}

/// The callback a remote call runs. A static, not the caller's stack: the
/// loader's call may time out and the CPU answer late.
#[derive(Clone, Copy)]
enum Remote {
    Fallible(Fallible, u32, usize),
    Infallible(Infallible, u32, usize),
}

static REMOTE: Mutex<Option<Remote>> = Mutex::new(None);

/// The reason the running callback gave (`set_failure_reason`); cleared
/// before each callback, taken when it fails.
static REASON: Mutex<Option<String>> = Mutex::new(None);

extern "C" fn remote_trampoline(_: usize) -> i32 {
    let Some(r) = *REMOTE.lock() else { return code::BAD_ARGUMENT };
    let me = current_cpu();
    let nested = IN_HOTPLUG[me].swap(true, Ordering::AcqRel);
    let rc = match r {
        Remote::Fallible(f, cpu, ctx) => f(cpu, ctx),
        Remote::Infallible(f, cpu, ctx) => {
            f(cpu, ctx);
            0
        }
    };
    IN_HOTPLUG[me].store(nested, Ordering::Release);
    rc
}

/// Runs `r` on `cpu` through the loader (inline when `cpu` is this one),
/// so that a panic in it is contained and a swap cannot free it meanwhile.
fn run_on(cpu: usize, r: Remote, irqs_off: bool) -> Result<(), Refusal> {
    *REMOTE.lock() = Some(r);
    *REASON.lock() = None;
    let mut result = 0;
    let flags = if irqs_off { ffi::run_on::IRQS_OFF } else { 0 };
    // SAFETY: the trampoline is this plugin's; `result` is a live i32.
    let rc = unsafe { ffi::mv_run_on(cpu as u32, remote_trampoline, 0, flags, &mut result) };
    *REMOTE.lock() = None;
    match (rc, result) {
        (0, 0) => Ok(()),
        (0, code) => Err(Refusal { code, reason: REASON.lock().take() }),
        (code, _) => Err(code.into()),
    }
}

/// The real CPUs, for the machine.
struct Cpus<'a> {
    subs: &'a Subscribers,
}

impl Platform for Cpus<'_> {
    fn current_cpu(&self) -> usize {
        current_cpu()
    }

    fn prepare(&mut self, call: Call, f: Fallible, ctx: usize) -> Result<(), Refusal> {
        // On the control CPU, but through the loader all the same: a panic
        // in the callback then fails the step instead of the whole walk.
        run_on(current_cpu(), Remote::Fallible(f, call.cpu as u32, ctx), false)
    }

    fn starting(&mut self, call: Call, f: Infallible, ctx: usize) {
        if let Err(e) = run_on(call.cpu, Remote::Infallible(f, call.cpu as u32, ctx), true) {
            // Nothing can be rolled back from here (a STARTING step does not
            // fail); say so loudly and go on.
            plugins::warn!(
                "cpu {}: STARTING callback of state {} could not run or panicked ({e})",
                call.cpu,
                call.state
            );
        }
    }

    fn online(&mut self, call: Call, f: Fallible, ctx: usize) -> Result<(), Refusal> {
        run_on(call.cpu, Remote::Fallible(f, call.cpu as u32, ctx), false)
    }

    fn start(&mut self, cpu: usize) -> Result<(), i32> {
        // SAFETY: a plain request to the loader.
        match unsafe { ffi::mv_cpu_start(cpu as u32) } {
            0 => Ok(()),
            e => Err(e),
        }
    }

    fn park(&mut self, cpu: usize) -> Result<(), i32> {
        // SAFETY: a plain request to the loader.
        match unsafe { ffi::mv_cpu_park(cpu as u32) } {
            0 => Ok(()),
            e => Err(e),
        }
    }

    fn publish(&mut self, event: &Event) {
        for s in &self.subs.list {
            (s.f)(event, s.ctx);
        }
    }
}

/// Runs `f` as the hotplug writer: write lock, then the machine.
fn write<R>(f: impl FnOnce(&mut Machine, &mut Cpus, &mut Subscribers) -> R) -> R {
    LOCK.write();
    let me = current_cpu();
    IN_HOTPLUG[me].store(true, Ordering::Release);
    let r = {
        let mut g = INNER.lock();
        let Inner { m, subs } = g.as_mut().expect("init sets the machine up");
        let mut new_subs = subs.clone();
        let r = f(m, &mut Cpus { subs }, &mut new_subs);
        *subs = new_subs;
        publish_mirror(m);
        r
    };
    IN_HOTPLUG[me].store(false, Ordering::Release);
    LOCK.write_unlock();
    r
}

fn status(r: Result<(), Error>) -> i32 {
    r.map_or_else(|e| e.code(), |()| 0)
}

/// A name passed by pointer and length, checked.
fn text<'a>(s: StrRef) -> Option<&'a str> {
    if s.ptr.is_null() {
        return None;
    }
    // SAFETY: callers pass a live string (the SDK's `StrRef`); it is
    // checked for UTF-8 rather than trusted.
    core::str::from_utf8(unsafe { core::slice::from_raw_parts(s.ptr, s.len) }).ok()
}

fn setup_any(name: StrRef, hooks: Option<Hooks>, calls: bool) -> i32 {
    let (Some(name), Some(hooks)) = (text(name), hooks) else { return code::BAD_ARGUMENT };
    write(|m, p, _| match m.setup(p, name, hooks, calls) {
        Ok(id) => id as i32,
        Err(e) => {
            plugins::warn!("{e}");
            e.code()
        }
    })
}

fn fallible_hooks(sec: u32, startup: Option<Fallible>, teardown: Option<Fallible>, ctx: usize) -> Option<Hooks> {
    let h = FallibleHooks { startup, teardown, ctx };
    match sec {
        section::PREPARE => Some(Hooks::Prepare(h)),
        section::ONLINE => Some(Hooks::Online(h)),
        _ => None,
    }
}

extern "C" fn setup(name: StrRef, sec: u32, up: Option<Fallible>, down: Option<Fallible>, ctx: usize) -> i32 {
    setup_any(name, fallible_hooks(sec, up, down, ctx), true)
}

extern "C" fn setup_nocalls(name: StrRef, sec: u32, up: Option<Fallible>, down: Option<Fallible>, ctx: usize) -> i32 {
    setup_any(name, fallible_hooks(sec, up, down, ctx), false)
}

extern "C" fn setup_starting(
    name: StrRef,
    up: Option<Infallible>,
    down: Option<Infallible>,
    ctx: usize,
    calls: u32,
) -> i32 {
    setup_any(name, Some(Hooks::Starting(StartingHooks { startup: up, teardown: down, ctx })), calls != 0)
}

extern "C" fn remove(id: u32) -> i32 {
    write(|m, p, _| status(m.remove(p, id, true)))
}

extern "C" fn rebind(id: u32, up: Option<Fallible>, down: Option<Fallible>, ctx: usize) -> i32 {
    write(|m, _, _| status(m.rebind(id, FallibleHooks { startup: up, teardown: down, ctx })))
}

extern "C" fn remove_nocalls(id: u32) -> i32 {
    write(|m, p, _| status(m.remove(p, id, false)))
}

extern "C" fn read_lock() -> i32 {
    if IN_HOTPLUG[current_cpu()].load(Ordering::Acquire) {
        return code::WOULD_DEADLOCK;
    }
    LOCK.read();
    0
}

extern "C" fn read_unlock() -> i32 {
    LOCK.read_unlock().map_or(code::NOT_LOCKED, |()| 0)
}

extern "C" fn subscribe(f: EventFn, ctx: usize) -> i32 {
    write(|_, _, subs| subs.add(f, ctx) as i32)
}

extern "C" fn unsubscribe(id: u32) -> i32 {
    write(|_, _, subs| if subs.remove(id) { 0 } else { code::NO_SUCH_SUBSCRIBER })
}

fn online(cpu: usize) -> Result<(), Error> {
    write(|m, p, _| m.bring_up(p, cpu))
}

fn offline(cpu: usize) -> Result<(), Error> {
    write(|m, p, _| m.tear_down(p, cpu))
}

extern "C" fn cpu_online(cpu: u32) -> i32 {
    status(online(cpu as usize))
}

extern "C" fn cpu_offline(cpu: u32) -> i32 {
    status(offline(cpu as usize))
}

fn stage_of(cpu: u32) -> u8 {
    STAGE.get(cpu as usize).map_or(Stage::Absent as u8, |s| s.load(Ordering::Acquire))
}

fn origin_of(cpu: u32) -> u8 {
    ORIGIN.get(cpu as usize).map_or(0, |s| s.load(Ordering::Acquire))
}

/// The shell's `cpus` rows (`mv_cpu_describer`): the stage and origin of
/// `cpu`, from the lock-free mirror, so that it never waits for a walk.
extern "C" fn describe(cpu: u32, out: *mut CpuLifecycle) -> i32 {
    let stage = Stage::from_u8(stage_of(cpu)).unwrap_or(Stage::Absent);
    let origin = [Origin::Boot, Origin::HotAdded].into_iter().find(|o| *o as u8 + 1 == origin_of(cpu));
    // SAFETY: the loader passes a pointer to a live `CpuLifecycle`.
    unsafe { out.write(CpuLifecycle::new(stage.name(), origin.map_or("-", Origin::name))) };
    0
}

extern "C" fn is_online(cpu: u32) -> u32 {
    (stage_of(cpu) == Stage::Online as u8) as u32
}

extern "C" fn is_boot_cpu(cpu: u32) -> u32 {
    (origin_of(cpu) == Origin::Boot as u8 + 1) as u32
}

extern "C" fn arrived_later(cpu: u32) -> u32 {
    (origin_of(cpu) == Origin::HotAdded as u8 + 1) as u32
}

extern "C" fn hotplug_add(cpu: u32) -> i32 {
    let cpu = cpu as usize;
    status(write(|m, p, _| {
        m.insert(p, cpu)?;
        m.bring_up(p, cpu)
    }))
}

extern "C" fn hotplug_remove(cpu: u32) -> i32 {
    let cpu = cpu as usize;
    status(write(|m, p, _| {
        if m.cpus().get(cpu).is_some_and(|c| c.stage == Stage::Online) {
            m.tear_down(p, cpu)?;
        }
        m.eject(p, cpu)
    }))
}

fn direction(v: u32) -> Option<Direction> {
    match v {
        0 => Some(Direction::Up),
        1 => Some(Direction::Down),
        _ => None,
    }
}

extern "C" fn fail(cpu: u32, id: u32, dir: u32) -> i32 {
    let Some(dir) = direction(dir) else { return code::BAD_ARGUMENT };
    let id = alloc::format!("{id}");
    write(|m, _, _| m.inject(cpu as usize, &id, dir).map_or_else(|e| e.code(), |_| 0))
}

extern "C" fn state_count() -> u32 {
    LOCK.read();
    let n = INNER.lock().as_ref().map_or(0, |i| i.m.states().len() as u32);
    let _ = LOCK.read_unlock();
    n
}

extern "C" fn state_at(index: u32, out: *mut StateInfo) -> i32 {
    LOCK.read();
    let info = INNER.lock().as_ref().and_then(|i| i.m.states().get(index as usize).cloned());
    let _ = LOCK.read_unlock();
    let Some(s) = info else { return code::NO_SUCH_STATE };
    let mut name = [0; NAME_LEN];
    name[..s.name.len()].copy_from_slice(s.name.as_bytes());
    let builtin = matches!(s.hooks, Hooks::Bringup) as u32;
    // SAFETY: the caller passes a pointer to a live `StateInfo`.
    unsafe { out.write(StateInfo { id: s.id, section: s.hooks.section() as u32, builtin, name }) };
    0
}

extern "C" fn last_failure(out: *mut Event) -> i32 {
    let Some(e) = INNER.lock().as_ref().and_then(|i| i.m.events.last_failure().map(|l| l.event)) else {
        return code::NO_SUCH_STATE;
    };
    // SAFETY: the caller passes a pointer to a live `Event`.
    unsafe { out.write(e) };
    0
}

extern "C" fn set_failure_reason(reason: StrRef) -> i32 {
    if !IN_HOTPLUG[current_cpu()].load(Ordering::Acquire) {
        return code::NOT_IN_CALLBACK;
    }
    let Some(reason) = text(reason).and_then(events::clean_reason) else { return code::BAD_ARGUMENT };
    *REASON.lock() = Some(reason);
    0
}

extern "C" fn failure_reason(seq: u64, buf: *mut u8, cap: usize) -> i32 {
    let g = INNER.lock();
    let Some(reason) = g.as_ref().and_then(|i| i.m.events.reason_of(seq)) else { return code::NO_SUCH_EVENT };
    let r = events::cut(reason.unwrap_or(""), cap);
    if !r.is_empty() {
        // SAFETY: the caller passes `cap` writable bytes at `buf`; `r` is
        // at most `cap` bytes long.
        unsafe { core::ptr::copy_nonoverlapping(r.as_ptr(), buf, r.len()) };
    }
    r.len() as i32
}

extern "C" fn next_seq() -> u64 {
    INNER.lock().as_ref().map_or(0, |i| i.m.events.next_seq())
}

extern "C" fn generation() -> u32 {
    GENERATION
}

static TABLE: Cpuhp = Cpuhp {
    setup,
    setup_nocalls,
    setup_starting,
    remove,
    remove_nocalls,
    read_lock,
    read_unlock,
    subscribe,
    unsubscribe,
    cpu_online,
    cpu_offline,
    is_online,
    is_boot_cpu,
    arrived_later,
    hotplug_add,
    hotplug_remove,
    fail,
    state_count,
    state_at,
    last_failure,
    next_seq,
    generation,
    rebind,
    set_failure_reason,
    failure_reason,
};

/// At a fresh load: brings the CPUs enabled at boot online, within
/// `maxcpus=` (`limit`).
fn bring_up_boot_cpus(infos: &[CpuInfo], list: &[(u32, bool)], boot: usize, limit: u32) {
    let count = infos.len();
    let start = machine::started_at_load(&list.iter().map(|c| c.1).collect::<Vec<_>>(), boot, limit);
    // The loader runs only the boot CPU; the policy of bringing the others
    // up is ours, within `maxcpus=`. A CPU the loader already runs (started
    // by someone else, or left running by a cpuhp unloaded before) is
    // adopted, limit or not: no dynamic state exists yet to run.
    let aps: Vec<usize> = (0..count).filter(|&c| c != boot && list[c].1).collect();
    let (run, held): (Vec<usize>, Vec<usize>) =
        aps.into_iter().partition(|&c| infos[c].online != 0 || start.contains(&c));
    write(|m, p, _| {
        for cpu in run {
            let r = if infos[cpu].online != 0 { m.adopt(cpu) } else { m.bring_up(p, cpu) };
            if let Err(e) = r {
                plugins::warn!("cpu {cpu} stays offline: {e}");
            }
        }
    });
    let online = (0..count).filter(|c| is_online(*c as u32) == 1).count();
    match held.as_slice() {
        [] => plugins::info!("cpuhp generation {GENERATION}: {online} of {count} CPUs online"),
        held => plugins::info!(
            "cpuhp generation {GENERATION}: {online} of {count} CPUs online; maxcpus={limit} keeps cpus {held:?} offline (`cpu online N` brings one up)"
        ),
    }
}

/// Error code of `init`: the loader lists more CPUs than cpuhp tracks.
const TOO_MANY_CPUS: i32 = 2;

fn init() -> Result<(), i32> {
    // SAFETY: a plain query of the loader.
    let count = unsafe { ffi::mv_cpu_count() } as usize;
    let boot = current_cpu();
    if count > MAX_CPUS {
        return Err(TOO_MANY_CPUS);
    }
    let infos: Vec<CpuInfo> = (0..count)
        .map(|cpu| {
            let mut info = CpuInfo::default();
            // SAFETY: `info` is a live CpuInfo; cpu < count.
            unsafe { ffi::mv_cpu_info(cpu as u32, &mut info) };
            info
        })
        .collect();
    let list: Vec<(u32, bool)> = infos.iter().map(|i| (i.apic_id, i.class == ffi::cpu_class::BOOT)).collect();
    // SAFETY: a plain query of the loader.
    let limit = unsafe { ffi::mv_boot_cpu_limit() };
    *INNER.lock() = Some(Inner { m: Machine::new(&list, boot), subs: Subscribers::default() });
    let registered = plugins::register_command!("cpu", "CPU lifecycle (cpuhp): cpu states, events [n], online N, offline N, fail N <state> [up|down]; `cpus` lists the CPUs", command::cpu_command);
    if let Err(e) = registered {
        // A refused init gets no fini.
        release_heap();
        return Err(e);
    }
    // SAFETY: `describe` is this plugin's; the loader drops it when we go.
    if unsafe { ffi::mv_cpu_describer(describe) } != 0 {
        plugins::warn!("`cpus` keeps showing another plugin's view of the CPUs");
    }
    // SAFETY: a plain query of the loader.
    if unsafe { ffi::mv_swapping_in() } == 1 {
        // The cpuhp this one replaces owns the CPUs; its state import
        // says which are online, so nothing is started here (a CPU it
        // keeps offline must stay so).
        plugins::info!("cpuhp generation {GENERATION}: taking over from the running version");
    } else {
        bring_up_boot_cpus(&infos, &list, boot, limit);
    }
    // SAFETY: a plain query of the loader.
    let base = unsafe { ffi::mv_acpi_cpu_hotplug_base() };
    // No block (Bochs, other machines): no physical hotplug, nothing to do.
    // SAFETY: `acpi::take_gpe` is this plugin's; the loader drops it if we go first.
    if base >= 0 && unsafe { ffi::mv_defer(acpi::take_gpe, base as usize) } != 0 {
        plugins::warn!("no physical CPU hotplug: the loader's work queue is full");
    }
    Ok(())
}

/// Error code of the state export: hotplug is in progress or the lock is
/// held by a reader (a swap now would lose it); try again.
const BUSY: i32 = 5;

fn export(buf: &mut [u8]) -> Result<usize, i32> {
    if LOCK.is_busy() {
        return Err(BUSY);
    }
    let g = INNER.try_lock().ok_or(BUSY)?;
    let i = g.as_ref().ok_or(BUSY)?;
    blob::export(&i.m, &i.subs, buf).map_err(|e| e.code())
}

fn import(layout: u32, buf: &[u8]) -> Result<(), i32> {
    // SAFETY: the loader hands over what the previous cpuhp exported in
    // this address space, with the world stopped; the callbacks' owners
    // depend on cpuhp and so are still loaded.
    let (m, subs) = unsafe { blob::import(layout, buf) }.map_err(|e| e.code())?;
    publish_mirror(&m);
    *INNER.lock() = Some(Inner { m, subs });
    Ok(())
}

/// What this version holds on the heap: the machine (states and their
/// names, CPUs, the event log and its reasons), the subscribers, a reason
/// not yet taken. Dropped on the way out, or it stays allocated after the
/// image is gone: the loader reports it as a leak.
fn release_heap() {
    drop(INNER.lock().take());
    drop(REASON.lock().take());
}

/// Unload: the CPUs stay as they are (a later load adopts those that run)
/// and the loader drops the command, the describer and the GPE handler;
/// what goes is the heap.
fn fini() {
    release_heap();
}

/// After a swap committed: the successor rebuilt the machine from the
/// state blob, which carries values only (no pointers into this version's
/// heap), so all of it is ours to free.
fn retire() {
    release_heap();
}

#[cfg(feature = "v1")]
plugins::plugin! {
    name: "cpuhp-plugin", version: "1.2.0",
    init: init, fini: fini, retire: retire,
    provides: [(Cpuhp, &TABLE)],
    requires: [],
    state: Some((blob::LAYOUT, export, import)),
}

#[cfg(feature = "v2")]
plugins::plugin! {
    name: "cpuhp-plugin", version: "1.3.0",
    init: init, fini: fini, retire: retire,
    provides: [(Cpuhp as "1.3.0", &TABLE)],
    requires: [],
    state: Some((blob::LAYOUT, export, import)),
}
