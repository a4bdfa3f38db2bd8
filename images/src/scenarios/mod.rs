//! Scripted runs, each data plus pure checks plus thin plumbing: the shell
//! and upload sessions (`session`), the QMP-driven hotplug runs
//! (`hotplug`), and the cpuhp scenario they play on `cpuhp-qmp`
//! (`cpuhp_qmp`).

pub mod cpuhp_qmp;
pub mod hotplug;
pub mod session;

use std::io;

use crate::{build, link, machine};

/// Why a scripted run could not be played to its end.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Build(#[from] build::Error),
    #[error(transparent)]
    Machine(#[from] machine::Error),
    #[error(transparent)]
    Link(#[from] link::Error),
    /// A process or socket operation failed; `context` says which.
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    /// The scenario's script cannot go on (the guest stopped answering, or
    /// the script asked for something the machine does not have).
    #[error("QMP: {0}")]
    Script(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
