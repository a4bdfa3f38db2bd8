//! Why a state-machine operation was refused, and the code each reason
//! has at the plugin's C boundary.

use alloc::string::String;
use cpuhp_api::code;

use super::{Direction, Refusal, MAX_DYNAMIC, NAME_LEN};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    NoSuchCpu(usize),
    /// The slot holds no CPU (hot-add it first).
    Absent(usize),
    /// Hot-add of a slot that already holds a CPU.
    Present(usize),
    AlreadyOnline(usize),
    AlreadyOffline(usize),
    /// The boot CPU stays online.
    BootCpu(usize),
    /// Offlining it would leave no CPU online.
    LastCpu(usize),
    /// A CPU cannot take itself down (the control CPU runs the walk).
    ControlCpu(usize),
    /// Hot-remove of a CPU that is still online.
    StillOnline(usize),
    NoSuchState(u32),
    UnknownState(String),
    /// cpuhp's own states cannot be removed.
    StaticState(u32),
    /// STARTING callbacks cannot fail, so no failure can be injected there.
    StartingCannotFail(String),
    /// A state with no callback in that direction has nothing to fail.
    NothingToFail(String),
    NameTaken(String),
    BadName,
    TooManyStates,
    /// A walk failed at `state` and the CPU was rolled back.
    Failed {
        cpu: usize,
        dir: Direction,
        state: u32,
        name: String,
        why: Refusal,
    },
    /// A setup's startup failed on `cpu`; the CPUs already done were torn
    /// down and nothing was registered.
    SetupFailed {
        cpu: usize,
        name: String,
        why: Refusal,
    },
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::NoSuchCpu(c) => write!(f, "there is no cpu {c} (see `cpus`)"),
            Error::Absent(c) => write!(f, "cpu {c} is an empty slot; hot-add a CPU there first"),
            Error::Present(c) => write!(f, "cpu {c} is already present"),
            Error::AlreadyOnline(c) => write!(f, "cpu {c} is already online"),
            Error::AlreadyOffline(c) => write!(f, "cpu {c} is already offline"),
            Error::BootCpu(c) => write!(f, "cpu {c} is the boot CPU, which stays online"),
            Error::LastCpu(c) => write!(f, "cpu {c} is the last online CPU"),
            Error::ControlCpu(c) => write!(f, "cpu {c} runs this command; take it down from another CPU"),
            Error::StillOnline(c) => write!(f, "cpu {c} is online; offline it before removing it"),
            Error::NoSuchState(id) => write!(f, "no state with id {id} (see `cpu states`)"),
            Error::UnknownState(n) => write!(f, "no state `{n}` (see `cpu states`)"),
            Error::StaticState(id) => write!(f, "state {id} belongs to cpuhp and cannot be removed"),
            Error::StartingCannotFail(n) => write!(f, "`{n}` is a STARTING state, whose callbacks cannot fail"),
            Error::NothingToFail(n) => write!(f, "`{n}` has no callback in that direction"),
            Error::NameTaken(n) => write!(f, "a state named `{n}` exists already"),
            Error::BadName => write!(f, "state names are 1 to {NAME_LEN} bytes of `owner:what`"),
            Error::TooManyStates => write!(f, "all {MAX_DYNAMIC} dynamic state slots are taken"),
            Error::Failed { cpu, dir, name, why, .. } => write!(
                f,
                "cpu {cpu} {}: state `{name}` failed with {why}; rolled back, cpu {cpu} is {}",
                match dir {
                    Direction::Up => "bring-up",
                    Direction::Down => "tear-down",
                },
                match dir {
                    Direction::Up => "offline",
                    Direction::Down => "online",
                }
            ),
            Error::SetupFailed { cpu, name, why } => {
                write!(f, "setup of `{name}`: startup failed on cpu {cpu} with {why}; undone on the CPUs done")
            }
        }
    }
}

impl Error {
    /// The `cpuhp` interface's code for this error.
    pub fn code(&self) -> i32 {
        use Error as E;
        match self {
            E::NoSuchCpu(_) => code::NO_SUCH_CPU,
            E::Absent(_) => code::ABSENT,
            E::Present(_) => code::PRESENT,
            E::AlreadyOnline(_) => code::ALREADY_ONLINE,
            E::AlreadyOffline(_) => code::ALREADY_OFFLINE,
            E::BootCpu(_) => code::BOOT_CPU,
            E::LastCpu(_) => code::LAST_CPU,
            E::ControlCpu(_) => code::CONTROL_CPU,
            E::StillOnline(_) => code::STILL_ONLINE,
            E::NoSuchState(_) | E::UnknownState(_) => code::NO_SUCH_STATE,
            E::StaticState(_) => code::STATIC_STATE,
            E::StartingCannotFail(_) => code::STARTING_CANNOT_FAIL,
            E::NothingToFail(_) => code::NOTHING_TO_FAIL,
            E::NameTaken(_) => code::NAME_TAKEN,
            E::BadName => code::BAD_ARGUMENT,
            E::TooManyStates => code::TOO_MANY_STATES,
            E::Failed { .. } => code::FAILED,
            E::SetupFailed { .. } => code::SETUP_FAILED,
        }
    }
}
