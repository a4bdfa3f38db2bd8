//! The `cpuhp` interface (1.x): the `#[repr(C)]` table other plugins
//! reach through `plugins::runtime::Required<Cpuhp>`, the events its
//! subscribers get, and its error codes. A crate of its own, so that a
//! consumer depends on the interface, not on cpuhp-plugin's code.
//!
//! The table only grows, at its end, and each addition takes a minor
//! version: 1.0 and 1.1 end at `generation`; 1.2 adds
//! `set_failure_reason` and `failure_reason`. A plugin that calls an
//! addition requires the minor version that brought it (`^1.2`), so the
//! loader never links it against an older table that lacks the entry.
//!
//! Functions returning `i32` return 0 (or, for `setup*`/`subscribe`, a
//! positive id) on success and a negative [`code`] on failure. CPU numbers
//! are the loader's logical numbers (MADT order).
//!
//! Callbacks (state startup/teardown) and subscribers run while the hotplug
//! write lock is held: they must not call `read_lock`, `setup*`, `remove`,
//! `cpu_online`/`cpu_offline` or `hotplug_*` (those wait for the lock; the
//! read side refuses with [`code::WOULD_DEADLOCK`] instead of hanging).
//! Queries (`is_online`, `is_boot_cpu`, `arrived_later`) never block.

#![no_std]

use plugins::StrRef;

/// Longest state name kept (it travels in events).
pub const NAME_LEN: usize = 32;
/// Longest failure reason kept, in bytes: one line of `cpu events`.
pub const REASON_LEN: usize = 80;
/// How many of the newest events cpuhp's log keeps (older ones are let go,
/// and counted); the log's memory grows until it holds that many.
pub const LOG_CAPACITY: usize = 256;

/// A PREPARE or ONLINE callback: 0 or an error.
pub type Fallible = extern "C" fn(cpu: u32, ctx: usize) -> i32;
/// A STARTING callback: nothing to report, by construction.
pub type Infallible = extern "C" fn(cpu: u32, ctx: usize);

/// Section numbers for `setup` (STARTING states use `setup_starting`).
pub mod section {
    pub const PREPARE: u32 = 0;
    pub const STARTING: u32 = 1;
    pub const ONLINE: u32 = 2;
}

/// The directions of `fail`.
pub mod direction {
    pub const UP: u32 = 0;
    pub const DOWN: u32 = 1;
}

/// The negative error codes of the interface (one per `Error` kind).
pub mod code {
    pub const NO_SUCH_CPU: i32 = -1;
    pub const ABSENT: i32 = -2;
    pub const PRESENT: i32 = -3;
    pub const ALREADY_ONLINE: i32 = -4;
    pub const ALREADY_OFFLINE: i32 = -5;
    pub const BOOT_CPU: i32 = -6;
    pub const LAST_CPU: i32 = -7;
    pub const CONTROL_CPU: i32 = -8;
    pub const STILL_ONLINE: i32 = -9;
    pub const NO_SUCH_STATE: i32 = -10;
    pub const STATIC_STATE: i32 = -11;
    pub const STARTING_CANNOT_FAIL: i32 = -12;
    pub const NOTHING_TO_FAIL: i32 = -13;
    pub const NAME_TAKEN: i32 = -14;
    pub const BAD_ARGUMENT: i32 = -15;
    pub const TOO_MANY_STATES: i32 = -16;
    /// A bring-up or tear-down failed and was rolled back: `last_failure`
    /// has the state, the owner (the state name's prefix) and the error.
    pub const FAILED: i32 = -17;
    /// A setup's startup failed on some CPU and was undone everywhere.
    pub const SETUP_FAILED: i32 = -18;
    /// `read_unlock` without `read_lock`.
    pub const NOT_LOCKED: i32 = -19;
    /// `read_lock` from a callback or subscriber, which run under the
    /// write side.
    pub const WOULD_DEADLOCK: i32 = -20;
    pub const NO_SUCH_SUBSCRIBER: i32 = -21;
    /// `failure_reason` of a sequence number that is no failure the log
    /// still knows.
    pub const NO_SUCH_EVENT: i32 = -22;
    /// `set_failure_reason` outside a state callback.
    pub const NOT_IN_CALLBACK: i32 = -23;
}

/// One state as `state_at` describes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateInfo {
    pub id: u32,
    /// A [`section`] number.
    pub section: u32,
    /// 1 for cpuhp's own states.
    pub builtin: u32,
    /// NUL-padded.
    pub name: [u8; NAME_LEN],
}

#[repr(C)]
pub struct Cpuhp {
    /// Registers a PREPARE or ONLINE state `name` ("owner:what") and runs
    /// `startup` on every online CPU; if it fails on one, the CPUs done are
    /// torn down and [`code::SETUP_FAILED`] returned. The state id (> 0).
    pub setup: extern "C" fn(
        name: StrRef,
        section: u32,
        startup: Option<Fallible>,
        teardown: Option<Fallible>,
        ctx: usize,
    ) -> i32,
    /// The same without running any callback now.
    pub setup_nocalls: extern "C" fn(
        name: StrRef,
        section: u32,
        startup: Option<Fallible>,
        teardown: Option<Fallible>,
        ctx: usize,
    ) -> i32,
    /// Registers a STARTING state; its callbacks return nothing. `calls`:
    /// 1 runs `startup` on every online CPU now (interrupts off), 0 not.
    pub setup_starting: extern "C" fn(
        name: StrRef,
        startup: Option<Infallible>,
        teardown: Option<Infallible>,
        ctx: usize,
        calls: u32,
    ) -> i32,
    /// Runs the teardown of state `id` on every online CPU, then removes it.
    pub remove: extern "C" fn(id: u32) -> i32,
    /// Removes state `id` without running its teardown.
    pub remove_nocalls: extern "C" fn(id: u32) -> i32,
    pub read_lock: extern "C" fn() -> i32,
    pub read_unlock: extern "C" fn() -> i32,
    /// Calls `f(event, ctx)` for every event from now on, synchronously.
    /// Returns the subscription id (> 0).
    pub subscribe: extern "C" fn(f: EventFn, ctx: usize) -> i32,
    pub unsubscribe: extern "C" fn(id: u32) -> i32,
    /// Logical online (bring-up through every state) of a present CPU.
    pub cpu_online: extern "C" fn(cpu: u32) -> i32,
    /// Logical offline (tear-down through every state); refused for the
    /// boot CPU, the last online CPU and the calling CPU.
    pub cpu_offline: extern "C" fn(cpu: u32) -> i32,
    /// 1 if `cpu` has passed every state (active), else 0.
    pub is_online: extern "C" fn(cpu: u32) -> u32,
    /// 1 if `cpu` was enabled at boot (and has not been ejected since).
    pub is_boot_cpu: extern "C" fn(cpu: u32) -> u32,
    /// 1 if the CPU in slot `cpu` was inserted at run time (0 once ejected).
    pub arrived_later: extern "C" fn(cpu: u32) -> u32,
    /// Physical hot-add: slot `cpu` now holds a CPU (after the platform
    /// inserted it); marks it present and brings it up. 0, or an error
    /// with the CPU present but offline (e.g. [`code::FAILED`]: a state
    /// refused it).
    pub hotplug_add: extern "C" fn(cpu: u32) -> i32,
    /// Physical eject request: tears `cpu` down (if online) and marks the
    /// slot empty. 0 means the platform may eject it now; on an error the
    /// CPU stays as it was (online when a teardown refused).
    pub hotplug_remove: extern "C" fn(cpu: u32) -> i32,
    /// Makes state `id` fail on `cpu` on its next walk in `direction`.
    pub fail: extern "C" fn(cpu: u32, id: u32, direction: u32) -> i32,
    /// The number of states (cpuhp's own included), in order.
    pub state_count: extern "C" fn() -> u32,
    /// Fills `*out` with the state at `index` of the order; 0 or an error.
    pub state_at: extern "C" fn(index: u32, out: *mut StateInfo) -> i32,
    /// The `failed` event of the last walk that failed; 0, or
    /// [`code::NO_SUCH_STATE`] if none failed yet. Its reason:
    /// `failure_reason(event.seq, ..)`.
    pub last_failure: extern "C" fn(out: *mut Event) -> i32,
    /// The sequence number the next event will get.
    pub next_seq: extern "C" fn() -> u64,
    /// Which build answers (1 for 1.2.0, 2 for 1.3.0): for swap tests.
    pub generation: extern "C" fn() -> u32,
    /// 1.2: gives PREPARE or ONLINE state `id` new callbacks, keeping its place
    /// and every CPU's progress: for the new version of a swapped plugin,
    /// from its state import, to take over its predecessor's state.
    pub rebind: extern "C" fn(id: u32, startup: Option<Fallible>, teardown: Option<Fallible>, ctx: usize) -> i32,
    /// 1.2: a PREPARE or ONLINE callback about to return an error says why
    /// in words (e.g. "sse4.2 (absent on this CPU, present on the boot
    /// CPU)"). The text is copied (control characters become spaces; at
    /// most [`REASON_LEN`] bytes are kept) and goes with the `failed` event
    /// of this step: `cpu events`, `failure_reason`. 0;
    /// [`code::NOT_IN_CALLBACK`] outside a callback;
    /// [`code::BAD_ARGUMENT`] for text that is not UTF-8 or blank.
    pub set_failure_reason: extern "C" fn(reason: StrRef) -> i32,
    /// 1.2: copies the reason given with failure event `seq` (a `failed`
    /// or `rollback-step-failed` event, e.g. `last_failure`'s) into `buf`
    /// (room for `cap` bytes, [`REASON_LEN`] is always enough; UTF-8,
    /// no NUL) and returns its length, 0 when the callback gave none;
    /// [`code::NO_SUCH_EVENT`] if the log knows no such failure.
    pub failure_reason: extern "C" fn(seq: u64, buf: *mut u8, cap: usize) -> i32,
}

// SAFETY: `Cpuhp` is the `cpuhp` table; it only grows, at its end.
unsafe impl plugins::Interface for Cpuhp {
    const NAME: &'static str = "cpuhp";
    /// 1.2 brought the last entries, `set_failure_reason` and
    /// `failure_reason`.
    const VERSION: &'static str = "1.2.0";
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    /// A CPU is present: enabled at boot, or inserted.
    Discovered = 1,
    BringUpStarted = 2,
    /// A state's startup ran (or was rolled back up to).
    StateReached = 3,
    /// The CPU passed STARTING: it runs and takes interrupts.
    Online = 4,
    /// Every state passed: work may be placed on the CPU.
    Active = 5,
    TearDownStarted = 6,
    /// A state's teardown ran (or was rolled back down to).
    StateLeft = 7,
    /// Every state left: the CPU is parked.
    Offline = 8,
    /// The CPU left its slot (eject).
    Removed = 9,
    /// A callback failed (`code`); a rollback follows.
    Failed = 10,
    /// The rollback after a failure at `state` is complete.
    RolledBack = 11,
    /// A callback failed while rolling back; the walk back went on.
    RollbackStepFailed = 12,
}

impl Kind {
    pub fn from_u32(v: u32) -> Option<Kind> {
        use Kind::*;
        [
            Discovered,
            BringUpStarted,
            StateReached,
            Online,
            Active,
            TearDownStarted,
            StateLeft,
            Offline,
            Removed,
            Failed,
            RolledBack,
            RollbackStepFailed,
        ]
        .into_iter()
        .find(|k| *k as u32 == v)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Discovered => "discovered",
            Kind::BringUpStarted => "bring-up-started",
            Kind::StateReached => "state-reached",
            Kind::Online => "online",
            Kind::Active => "active",
            Kind::TearDownStarted => "tear-down-started",
            Kind::StateLeft => "state-left",
            Kind::Offline => "offline",
            Kind::Removed => "removed",
            Kind::Failed => "failed",
            Kind::RolledBack => "rolled-back",
            Kind::RollbackStepFailed => "rollback-step-failed",
        }
    }
}

/// One event, as subscribers receive it (`#[repr(C)]`: it crosses the
/// plugin boundary). `state` is 0 when no state is involved; the name is
/// copied in, so an event stays readable after its state is removed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    pub kind: u32,
    pub cpu: u32,
    pub state: u32,
    pub code: i32,
    pub name: [u8; NAME_LEN],
}

const _: () = assert!(core::mem::size_of::<Event>() == 56);

impl Event {
    pub fn kind(&self) -> Option<Kind> {
        Kind::from_u32(self.kind)
    }

    pub fn state_name(&self) -> &str {
        let n = self.name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        core::str::from_utf8(&self.name[..n]).unwrap_or("?")
    }
}

impl core::fmt::Display for Event {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let kind = self.kind().map_or("?", Kind::name);
        write!(f, "#{} cpu {} {kind}", self.seq, self.cpu)?;
        if self.state != 0 {
            write!(f, " state={}", self.state_name())?;
        }
        if self.code != 0 {
            write!(f, " error={}", self.code)?;
        }
        Ok(())
    }
}

/// A subscriber's callback: the event, and the context it subscribed with.
pub type EventFn = extern "C" fn(event: *const Event, ctx: usize);
