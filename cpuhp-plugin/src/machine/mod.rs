//! The CPU hotplug state machine, pure: no hardware, no FFI. The plugin
//! drives it with a [`Platform`] that starts, parks and calls into real
//! CPUs; the host tests drive it with a modelled CPU set.
//!
//! The rules are Linux's (kernel/cpu.c), in our words:
//! - States are ordered and grouped in sections: PREPARE (callbacks run on
//!   the control CPU before the new CPU executes; may fail), then cpuhp's
//!   own `cpuhp:bringup` (starts the CPU; its teardown parks it), STARTING
//!   (on the new CPU, interrupts off; callbacks return nothing, so they
//!   cannot fail: there is no way to roll back from that context), ONLINE
//!   (on the CPU, interrupts on; may fail). Having passed every state the
//!   CPU is active: only then may work be placed on it.
//! - Bring-up walks the states in order, tear-down in reverse. A failure in
//!   either direction walks the CPU back over every state it passed in that
//!   operation, in exact reverse, so a failed bring-up leaves it offline and
//!   a refused tear-down leaves it online.
//! - Dynamic states join the end of their section (later registrations run
//!   later on the way up, earlier on the way down). Registering with calls
//!   runs the startup on every online CPU and undoes the CPUs done if one
//!   fails; removing with calls runs the teardown on every online CPU.
//! - Fault injection (Linux's `hotplug/fail`): a PREPARE or ONLINE state
//!   fails on one CPU on its next bring-up or tear-down, instead of running
//!   its callback. STARTING states cannot be made to fail.
//!
//! Every operation runs under the caller's hotplug write lock, so outside
//! one every CPU has passed either no state or all of them.

use crate::events::{EventLog, Kind};
use alloc::string::String;
use alloc::vec::Vec;

mod error;
mod types;

pub use error::Error;
pub use types::{
    Call, Cpu, Direction, FallibleHooks, Hooks, Origin, Platform, Refusal, Section, Stage, StartingHooks, State,
};

pub const MAX_CPUS: usize = 64;
/// Room for dynamic states (Linux has a fixed range of dynamic slots too).
pub const MAX_DYNAMIC: usize = 48;
pub use cpuhp_api::{Fallible, Infallible, NAME_LEN};

/// The id of cpuhp's own bring-up state; dynamic ids start above the
/// static ones and are never reused.
pub const BRINGUP_ID: u32 = 1;
pub const FIRST_DYNAMIC_ID: u32 = 16;

/// The error code an injected failure reports (Linux uses -EAGAIN).
pub const INJECTED: i32 = -11;
/// The reason an injected failure gives.
pub const INJECTED_REASON: &str = "injected with `cpu fail`";

/// The CPUs enabled at boot (`boot_enabled[cpu]`) that a load brings
/// online when at most `limit` may run (`maxcpus=`): the boot CPU counts
/// first, since it runs already, then the others in logical order.
pub fn started_at_load(boot_enabled: &[bool], boot_cpu: usize, limit: u32) -> Vec<usize> {
    let others = (limit as usize).saturating_sub(1);
    (0..boot_enabled.len()).filter(|&c| boot_enabled[c] && c != boot_cpu).take(others).collect()
}

pub struct Machine {
    states: Vec<State>,
    cpus: Vec<Cpu>,
    boot_cpu: usize,
    next_id: u32,
    pub events: EventLog,
}

impl Machine {
    /// `cpus`: (APIC id, enabled at boot) per logical CPU; `boot_cpu` is
    /// online already (the loader runs it), the others are offline or
    /// absent.
    pub fn new(cpus: &[(u32, bool)], boot_cpu: usize) -> Machine {
        let cpus = cpus
            .iter()
            .enumerate()
            .map(|(i, &(apic_id, boot))| Cpu {
                apic_id,
                origin: boot.then_some(Origin::Boot),
                stage: match (boot, i == boot_cpu) {
                    (_, true) => Stage::Online,
                    (true, false) => Stage::Offline,
                    (false, false) => Stage::Absent,
                },
                fail: None,
            })
            .collect();
        let bringup = State { id: BRINGUP_ID, name: String::from("cpuhp:bringup"), hooks: Hooks::Bringup };
        let mut m = Machine {
            states: alloc::vec![bringup],
            cpus,
            boot_cpu,
            next_id: FIRST_DYNAMIC_ID,
            events: EventLog::new(),
        };
        for cpu in 0..m.cpus.len() {
            if m.cpus[cpu].origin.is_some() {
                m.events.push(Kind::Discovered, cpu, None, 0, None);
            }
        }
        m
    }

    /// Rebuilds a machine from exported parts (a swap).
    pub fn from_parts(states: Vec<State>, cpus: Vec<Cpu>, boot_cpu: usize, next_id: u32, events: EventLog) -> Machine {
        Machine { states, cpus, boot_cpu, next_id, events }
    }

    pub fn states(&self) -> &[State] {
        &self.states
    }

    pub fn cpus(&self) -> &[Cpu] {
        &self.cpus
    }

    pub fn boot_cpu(&self) -> usize {
        self.boot_cpu
    }

    pub fn next_id(&self) -> u32 {
        self.next_id
    }

    pub fn online_count(&self) -> usize {
        self.cpus.iter().filter(|c| c.stage == Stage::Online).count()
    }

    fn cpu(&self, cpu: usize) -> Result<&Cpu, Error> {
        self.cpus.get(cpu).ok_or(Error::NoSuchCpu(cpu))
    }

    pub fn find_state(&self, name_or_id: &str) -> Result<&State, Error> {
        let by_id = name_or_id.parse::<u32>().ok();
        self.states
            .iter()
            .find(|s| s.name == name_or_id || Some(s.id) == by_id)
            .ok_or_else(|| Error::UnknownState(name_or_id.into()))
    }

    fn emit<P: Platform>(&mut self, p: &mut P, kind: Kind, cpu: usize, state: Option<usize>, code: i32) {
        let state = state.map(|i| &self.states[i]);
        let e = self.events.push(kind, cpu, state, code, None);
        p.publish(&e);
    }

    /// Emits a `failed` or `rollback-step-failed` event: these carry the
    /// reason.
    fn emit_failure<P: Platform>(&mut self, p: &mut P, kind: Kind, cpu: usize, state: usize, why: &Refusal) {
        let e = self.events.push(kind, cpu, Some(&self.states[state]), why.code, why.reason.clone());
        p.publish(&e);
    }

    /// Runs state `i`'s callback for `cpu` in `dir`. An injected failure
    /// replaces the callback and is used up.
    fn step<P: Platform>(
        &mut self,
        p: &mut P,
        cpu: usize,
        i: usize,
        dir: Direction,
        inject: bool,
    ) -> Result<(), Refusal> {
        let s = &self.states[i];
        if inject && self.cpus[cpu].fail == Some((s.id, dir)) {
            self.cpus[cpu].fail = None;
            return Err(Refusal { code: INJECTED, reason: Some(INJECTED_REASON.into()) });
        }
        let call = Call { cpu, state: s.id, dir };
        let pick = |h: FallibleHooks| if dir == Direction::Up { h.startup } else { h.teardown };
        match s.hooks {
            Hooks::Prepare(h) => pick(h).map_or(Ok(()), |f| p.prepare(call, f, h.ctx)),
            Hooks::Online(h) => pick(h).map_or(Ok(()), |f| p.online(call, f, h.ctx)),
            Hooks::Starting(h) => {
                if let Some(f) = if dir == Direction::Up { h.startup } else { h.teardown } {
                    p.starting(call, f, h.ctx);
                }
                Ok(())
            }
            Hooks::Bringup => match dir {
                Direction::Up => p.start(cpu),
                Direction::Down => p.park(cpu),
            }
            .map_err(Refusal::from),
        }
    }

    /// Index of the last state at or before STARTING: passing it makes
    /// the CPU "online" (running, interrupts about to be on), the rest
    /// makes it active.
    fn last_starting(&self) -> usize {
        self.states.iter().rposition(|s| s.hooks.rank() <= 2).expect("cpuhp:bringup is always there")
    }

    /// Brings `cpu` from offline through every state.
    pub fn bring_up<P: Platform>(&mut self, p: &mut P, cpu: usize) -> Result<(), Error> {
        match self.cpu(cpu)?.stage {
            Stage::Absent => return Err(Error::Absent(cpu)),
            Stage::Online => return Err(Error::AlreadyOnline(cpu)),
            Stage::Offline => {}
        }
        self.emit(p, Kind::BringUpStarted, cpu, None, 0);
        let online_at = self.last_starting();
        for i in 0..self.states.len() {
            if let Err(why) = self.step(p, cpu, i, Direction::Up, true) {
                return Err(self.roll_back(p, cpu, i, Direction::Up, why));
            }
            self.emit(p, Kind::StateReached, cpu, Some(i), 0);
            if i == online_at {
                self.emit(p, Kind::Online, cpu, None, 0);
            }
        }
        self.cpus[cpu].stage = Stage::Online;
        self.emit(p, Kind::Active, cpu, None, 0);
        Ok(())
    }

    /// Takes `cpu` from active back through every state, in reverse.
    pub fn tear_down<P: Platform>(&mut self, p: &mut P, cpu: usize) -> Result<(), Error> {
        match self.cpu(cpu)?.stage {
            Stage::Absent => return Err(Error::Absent(cpu)),
            Stage::Offline => return Err(Error::AlreadyOffline(cpu)),
            Stage::Online => {}
        }
        if cpu == self.boot_cpu {
            return Err(Error::BootCpu(cpu));
        }
        if self.online_count() <= 1 {
            return Err(Error::LastCpu(cpu));
        }
        if cpu == p.current_cpu() {
            return Err(Error::ControlCpu(cpu));
        }
        self.emit(p, Kind::TearDownStarted, cpu, None, 0);
        for i in (0..self.states.len()).rev() {
            if let Err(why) = self.step(p, cpu, i, Direction::Down, true) {
                return Err(self.roll_back(p, cpu, i, Direction::Down, why));
            }
            self.emit(p, Kind::StateLeft, cpu, Some(i), 0);
        }
        self.cpus[cpu].stage = Stage::Offline;
        self.emit(p, Kind::Offline, cpu, None, 0);
        Ok(())
    }

    /// State `failed` failed while walking `dir`: undoes the states this
    /// walk passed, in exact reverse. Rollback steps are not injected into;
    /// one that still fails is reported and the walk back goes on (the
    /// state it leaves is the best one left).
    fn roll_back<P: Platform>(&mut self, p: &mut P, cpu: usize, failed: usize, dir: Direction, why: Refusal) -> Error {
        self.emit_failure(p, Kind::Failed, cpu, failed, &why);
        let (back, passed): (Direction, Vec<usize>) = match dir {
            Direction::Up => (Direction::Down, (0..failed).rev().collect()),
            Direction::Down => (Direction::Up, (failed + 1..self.states.len()).collect()),
        };
        for i in passed {
            match self.step(p, cpu, i, back, false) {
                Ok(()) => {
                    let kind = if back == Direction::Up { Kind::StateReached } else { Kind::StateLeft };
                    self.emit(p, kind, cpu, Some(i), 0)
                }
                Err(w) => self.emit_failure(p, Kind::RollbackStepFailed, cpu, i, &w),
            }
        }
        self.emit(p, Kind::RolledBack, cpu, Some(failed), why.code);
        let s = &self.states[failed];
        Error::Failed { cpu, dir, state: s.id, name: s.name.clone(), why }
    }

    /// Marks a CPU that already runs (started before cpuhp loaded, or its
    /// states were passed by a previous cpuhp) as online without calls.
    /// Only valid while no dynamic state exists: there is nothing to run.
    pub fn adopt(&mut self, cpu: usize) -> Result<(), Error> {
        match self.cpu(cpu)?.stage {
            Stage::Offline if self.states.len() == 1 => {
                self.cpus[cpu].stage = Stage::Online;
                self.events.push(Kind::Active, cpu, None, 0, None);
                Ok(())
            }
            Stage::Offline => Err(Error::TooManyStates),
            Stage::Absent => Err(Error::Absent(cpu)),
            Stage::Online => Err(Error::AlreadyOnline(cpu)),
        }
    }

    /// Registers a dynamic state at the end of its section; with `calls`,
    /// runs its startup on every online CPU first (see the module docs).
    /// Returns the new state's id.
    pub fn setup<P: Platform>(&mut self, p: &mut P, name: &str, hooks: Hooks, calls: bool) -> Result<u32, Error> {
        if name.is_empty() || name.len() > NAME_LEN || matches!(hooks, Hooks::Bringup) {
            return Err(Error::BadName);
        }
        if self.states.iter().any(|s| s.name == name) {
            return Err(Error::NameTaken(name.into()));
        }
        if self.states.len() > MAX_DYNAMIC {
            return Err(Error::TooManyStates);
        }
        let at = self.states.iter().rposition(|s| s.hooks.rank() <= hooks.rank()).map_or(0, |i| i + 1);
        let id = self.next_id;
        self.states.insert(at, State { id, name: name.into(), hooks });
        if calls {
            let online: Vec<usize> = (0..self.cpus.len()).filter(|&c| self.cpus[c].stage == Stage::Online).collect();
            for (k, &cpu) in online.iter().enumerate() {
                if let Err(why) = self.step(p, cpu, at, Direction::Up, false) {
                    self.emit_failure(p, Kind::Failed, cpu, at, &why);
                    for &done in online[..k].iter().rev() {
                        if let Err(w) = self.step(p, done, at, Direction::Down, false) {
                            self.emit_failure(p, Kind::RollbackStepFailed, done, at, &w);
                        }
                    }
                    self.states.remove(at);
                    return Err(Error::SetupFailed { cpu, name: name.into(), why });
                }
                self.emit(p, Kind::StateReached, cpu, Some(at), 0);
            }
        }
        self.next_id += 1;
        Ok(id)
    }

    /// Removes dynamic state `id`; with `calls`, runs its teardown on every
    /// online CPU (in reverse CPU order) first. A teardown failure here is
    /// reported as an event and the removal goes on: the owner is leaving.
    pub fn remove<P: Platform>(&mut self, p: &mut P, id: u32, calls: bool) -> Result<(), Error> {
        let at = self.states.iter().position(|s| s.id == id).ok_or(Error::NoSuchState(id))?;
        if matches!(self.states[at].hooks, Hooks::Bringup) {
            return Err(Error::StaticState(id));
        }
        if calls {
            let online: Vec<usize> =
                (0..self.cpus.len()).rev().filter(|&c| self.cpus[c].stage == Stage::Online).collect();
            for cpu in online {
                match self.step(p, cpu, at, Direction::Down, false) {
                    Ok(()) => self.emit(p, Kind::StateLeft, cpu, Some(at), 0),
                    Err(w) => self.emit_failure(p, Kind::Failed, cpu, at, &w),
                }
            }
        }
        for c in self.cpus.iter_mut().filter(|c| c.fail.is_some_and(|(s, _)| s == id)) {
            c.fail = None;
        }
        self.states.remove(at);
        Ok(())
    }

    /// Gives PREPARE or ONLINE state `id` new callbacks, keeping its place
    /// and every CPU's progress: the new version of a swapped plugin takes
    /// over the state its predecessor registered.
    pub fn rebind(&mut self, id: u32, new: FallibleHooks) -> Result<(), Error> {
        let s = self.states.iter_mut().find(|s| s.id == id).ok_or(Error::NoSuchState(id))?;
        match &mut s.hooks {
            Hooks::Prepare(h) | Hooks::Online(h) => *h = new,
            Hooks::Bringup => return Err(Error::StaticState(id)),
            Hooks::Starting(_) => return Err(Error::StartingCannotFail(s.name.clone())),
        }
        Ok(())
    }

    /// Makes state `name_or_id` fail on `cpu` on its next walk in `dir`.
    pub fn inject(&mut self, cpu: usize, name_or_id: &str, dir: Direction) -> Result<u32, Error> {
        self.cpu(cpu)?;
        let s = self.find_state(name_or_id)?;
        let has_callback = match s.hooks {
            Hooks::Starting(_) => return Err(Error::StartingCannotFail(s.name.clone())),
            Hooks::Bringup => true,
            Hooks::Prepare(h) | Hooks::Online(h) => match dir {
                Direction::Up => h.startup.is_some(),
                Direction::Down => h.teardown.is_some(),
            },
        };
        if !has_callback {
            return Err(Error::NothingToFail(s.name.clone()));
        }
        let id = s.id;
        self.cpus[cpu].fail = Some((id, dir));
        Ok(id)
    }

    /// A CPU was inserted into slot `cpu` (physical hotplug): present,
    /// offline, recorded as arrived later.
    pub fn insert<P: Platform>(&mut self, p: &mut P, cpu: usize) -> Result<(), Error> {
        if self.cpu(cpu)?.stage != Stage::Absent {
            return Err(Error::Present(cpu));
        }
        let c = &mut self.cpus[cpu];
        c.stage = Stage::Offline;
        c.origin = Some(Origin::HotAdded);
        self.emit(p, Kind::Discovered, cpu, None, 0);
        Ok(())
    }

    /// The CPU in slot `cpu` is going away (eject): it must be offline.
    /// The slot then holds nothing, so it has no origin either.
    pub fn eject<P: Platform>(&mut self, p: &mut P, cpu: usize) -> Result<(), Error> {
        match self.cpu(cpu)?.stage {
            Stage::Absent => return Err(Error::Absent(cpu)),
            Stage::Online => return Err(Error::StillOnline(cpu)),
            Stage::Offline => {}
        }
        if cpu == self.boot_cpu {
            return Err(Error::BootCpu(cpu));
        }
        let c = &mut self.cpus[cpu];
        c.stage = Stage::Absent;
        c.origin = None;
        c.fail = None;
        self.emit(p, Kind::Removed, cpu, None, 0);
        Ok(())
    }
}
