//! What can go wrong loading, unloading and swapping plugins, worded for
//! the shell user: each message says what to do next.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use loader_core::plugin::resolve::{Broken, Unmet};
use semver::Version;

#[derive(Debug)]
pub enum Error {
    NotInStore {
        name: String,
        version: Option<Version>,
    },
    BadVersion(String),
    Image(loader_core::plugin::elf::Error),
    NameMismatch {
        file: String,
        wanted: String,
    },
    AlreadyLoaded {
        name: String,
        version: Version,
    },
    NotLoaded(String),
    Unmet(Vec<Unmet>),
    DuplicateProvider {
        interface: String,
        existing: String,
    },
    MissingTable(String),
    InitFailed {
        name: String,
        code: i32,
    },
    Panicked {
        name: String,
        operation: &'static str,
        message: String,
    },
    HasDependents {
        name: String,
        dependents: Vec<String>,
    },
    BreaksConsumers(Vec<Broken>),
    StateExport {
        name: String,
        code: isize,
    },
    StateRefused {
        name: String,
        code: i32,
    },
    NoStateTransfer {
        name: String,
    },
    SameVersion {
        name: String,
        version: Version,
    },
    TwiceInSwap(String),
    WorldStop(crate::smp::Error),
    CommandExists(String),
    /// Another plugin describes CPUs for `cpus` already.
    DescriberTaken(String),
    /// Another plugin has the CPUs' idle work.
    IdleTaken(String),
    /// A CPU describer returned an error code.
    DescribeFailed {
        name: String,
        cpu: u32,
        code: i32,
    },
    /// The heap ledger cannot take the plugin (no account left).
    Heap(loader_core::plugin::heap::Error),
    /// The store refused the file (its manifest hash differs, or the CPU
    /// lacks what the plugin needs).
    Store(loader_core::plugin::store::Error),
}

impl From<loader_core::plugin::store::Error> for Error {
    fn from(e: loader_core::plugin::store::Error) -> Self {
        match e {
            // A file's own signature check fails as an image does.
            loader_core::plugin::store::Error::File(e) => Error::Image(e),
            e => Error::Store(e),
        }
    }
}

impl From<loader_core::plugin::elf::Error> for Error {
    fn from(e: loader_core::plugin::elf::Error) -> Self {
        Error::Image(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotInStore { name, version: Some(v) } => {
                write!(f, "{name} {v} is not in the plugin store; `store` lists what is")
            }
            Error::NotInStore { name, version: None } => {
                write!(f, "no version of {name} is in the plugin store; `store` lists what is")
            }
            Error::BadVersion(v) => write!(f, "`{v}` is not a version (expected e.g. 1.2.0)"),
            Error::Image(e) => write!(f, "{e}"),
            Error::Store(e) => write!(f, "{e}"),
            Error::NameMismatch { file, wanted } => write!(f, "the file holds plugin {file}, not {wanted}"),
            Error::AlreadyLoaded { name, version } => {
                write!(f, "{name} {version} is already loaded; use `swap {name} <version>` to change versions")
            }
            Error::NotLoaded(name) => write!(f, "{name} is not loaded; `plugins` lists what is"),
            Error::Unmet(list) => {
                write!(f, "unmet requirements: ")?;
                for (i, u) in list.iter().enumerate() {
                    write!(f, "{}{u}", if i == 0 { "" } else { ", " })?;
                }
                write!(f, "; load the providers first")
            }
            Error::DuplicateProvider { interface, existing } => {
                write!(f, "interface `{interface}` is already provided by {existing}; unload it first")
            }
            Error::MissingTable(i) => {
                write!(f, "the metadata promises interface `{i}` but the descriptor has no table for it")
            }
            Error::InitFailed { name, code } => {
                write!(f, "{name}'s init failed with code {code}; nothing of it stays loaded")
            }
            Error::Panicked { name, operation, message } => write!(f, "{name} panicked in {operation}: {message}"),
            Error::HasDependents { name, dependents } => write!(
                f,
                "{name} is required by {}; unload those first or use `unload -r {name}`",
                dependents.join(", ")
            ),
            Error::BreaksConsumers(list) => {
                write!(f, "the swap would break consumers: ")?;
                for (i, b) in list.iter().enumerate() {
                    write!(f, "{}{b}", if i == 0 { "" } else { "; " })?;
                }
                Ok(())
            }
            Error::StateExport { name, code } => write!(f, "{name} could not export its state (code {code})"),
            Error::StateRefused { name, code } => {
                write!(f, "the new {name} refused the old version's state (code {code}); the old version stays active")
            }
            Error::NoStateTransfer { name } => {
                write!(f, "{name} carries state but the new version cannot import it; the old version stays active")
            }
            Error::SameVersion { name, version } => write!(f, "{name} {version} is the version already running"),
            Error::TwiceInSwap(name) => write!(f, "{name} appears twice in one swap; name each plugin once"),
            Error::WorldStop(e) => write!(f, "could not stop the other CPUs for the swap: {e}"),
            Error::CommandExists(c) => write!(f, "a shell command `{c}` exists already"),
            Error::DescriberTaken(name) => write!(f, "{name} describes the CPUs for `cpus` already; unload it first"),
            Error::IdleTaken(name) => write!(f, "{name} runs the CPUs' idle work already; unload it first"),
            Error::DescribeFailed { name, cpu, code } => {
                write!(f, "{name} could not describe cpu {cpu} (error {code})")
            }
            Error::Heap(e) => write!(f, "{e}"),
        }
    }
}
