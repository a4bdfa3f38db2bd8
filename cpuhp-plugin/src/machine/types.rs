//! The vocabulary of the state machine: sections, states and their hooks,
//! directions, CPUs, and the [`Platform`] the machine acts through.

use crate::events::Event;
use alloc::string::String;

pub use cpuhp_api::{Fallible, Infallible};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Section {
    Prepare = 0,
    Starting = 1,
    Online = 2,
}

impl Section {
    pub fn from_u32(v: u32) -> Option<Section> {
        match v {
            0 => Some(Section::Prepare),
            1 => Some(Section::Starting),
            2 => Some(Section::Online),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Section::Prepare => "prepare",
            Section::Starting => "starting",
            Section::Online => "online",
        }
    }
}

/// Why a step failed: the error code and, when the callback gave one, the
/// reason in words (see [`crate::events::clean_reason`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: i32,
    pub reason: Option<String>,
}

impl From<i32> for Refusal {
    fn from(code: i32) -> Refusal {
        Refusal { code, reason: None }
    }
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.code)?;
        match &self.reason {
            Some(r) => write!(f, ": {r}"),
            None => Ok(()),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct FallibleHooks {
    pub startup: Option<Fallible>,
    pub teardown: Option<Fallible>,
    pub ctx: usize,
}

#[derive(Clone, Copy, Debug)]
pub struct StartingHooks {
    pub startup: Option<Infallible>,
    pub teardown: Option<Infallible>,
    pub ctx: usize,
}

// Hooks compare by callback address: that is what a swap must carry over
// unchanged, and what the blob tests check.
impl PartialEq for FallibleHooks {
    fn eq(&self, o: &Self) -> bool {
        let a = |f: Option<Fallible>| f.map(|f| f as usize);
        (a(self.startup), a(self.teardown), self.ctx) == (a(o.startup), a(o.teardown), o.ctx)
    }
}
impl Eq for FallibleHooks {}

impl PartialEq for StartingHooks {
    fn eq(&self, o: &Self) -> bool {
        let a = |f: Option<Infallible>| f.map(|f| f as usize);
        (a(self.startup), a(self.teardown), self.ctx) == (a(o.startup), a(o.teardown), o.ctx)
    }
}
impl Eq for StartingHooks {}

/// What a state does; the variant fixes the section, so a STARTING state
/// cannot carry a callback that fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hooks {
    Prepare(FallibleHooks),
    /// cpuhp's own: starts the CPU; its teardown parks it.
    Bringup,
    Starting(StartingHooks),
    Online(FallibleHooks),
}

impl Hooks {
    pub fn section(&self) -> Section {
        match self {
            Hooks::Prepare(_) | Hooks::Bringup => Section::Prepare,
            Hooks::Starting(_) => Section::Starting,
            Hooks::Online(_) => Section::Online,
        }
    }

    /// Position in the order: PREPARE, bring-up, STARTING, ONLINE.
    pub(super) fn rank(&self) -> u8 {
        match self {
            Hooks::Prepare(_) => 0,
            Hooks::Bringup => 1,
            Hooks::Starting(_) => 2,
            Hooks::Online(_) => 3,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub id: u32,
    pub name: String,
    pub hooks: Hooks,
}

impl State {
    /// Who registered the state: its name up to the first `:`, as in
    /// Linux's "subsystem:what" names.
    pub fn owner(&self) -> &str {
        self.name.split(':').next().unwrap_or(&self.name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Direction {
    Up = 0,
    Down = 1,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Origin {
    /// Enabled at boot (MADT).
    Boot = 0,
    /// Inserted at run time.
    HotAdded = 1,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::Boot => "boot",
            Origin::HotAdded => "hot-added",
        }
    }
}

/// Where a CPU is in its life, between operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    /// A hot-pluggable slot without a CPU.
    Absent = 0,
    /// Present, no state passed.
    Offline = 1,
    /// Every state passed: active.
    Online = 2,
}

impl Stage {
    pub fn from_u8(v: u8) -> Option<Stage> {
        [Stage::Absent, Stage::Offline, Stage::Online].into_iter().find(|s| *s as u8 == v)
    }

    pub fn name(self) -> &'static str {
        match self {
            Stage::Absent => "absent",
            Stage::Offline => "offline",
            Stage::Online => "online",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    pub apic_id: u32,
    /// `None` for a slot that never held a CPU.
    pub origin: Option<Origin>,
    pub stage: Stage,
    /// Injected failure for the next walk in that direction.
    pub fail: Option<(u32, Direction)>,
}

/// One callback invocation, as the platform sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub cpu: usize,
    pub state: u32,
    pub dir: Direction,
}

/// The CPUs as the machine drives them.
pub trait Platform {
    /// The CPU running the machine (the control CPU).
    fn current_cpu(&self) -> usize;
    /// Runs a PREPARE callback on the control CPU, on behalf of `call.cpu`.
    fn prepare(&mut self, call: Call, f: Fallible, ctx: usize) -> Result<(), Refusal>;
    /// Runs a STARTING callback on `call.cpu` with interrupts off.
    fn starting(&mut self, call: Call, f: Infallible, ctx: usize);
    /// Runs an ONLINE callback on `call.cpu` with interrupts on.
    fn online(&mut self, call: Call, f: Fallible, ctx: usize) -> Result<(), Refusal>;
    /// Starts the CPU; it then idles, able to run callbacks.
    fn start(&mut self, cpu: usize) -> Result<(), i32>;
    /// Parks the CPU.
    fn park(&mut self, cpu: usize) -> Result<(), i32>;
    /// Hands an event to every subscriber, synchronously.
    fn publish(&mut self, event: &Event);
}
