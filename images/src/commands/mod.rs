//! `runner`'s commands: the command line (`cli`) and one module per
//! command; `main` dispatches. `build` needs none of its own: it is
//! `build::builder::build_all`.

pub mod bench;
pub mod bochs;
pub mod cli;
pub mod goals;
pub mod hotplug;
pub mod profile;
pub mod run;
pub mod sizes;
pub mod swap;
pub mod symbols;
pub mod test;

use std::io;

use crate::{build, link, machine, scenarios};

/// Everything that can stop a runner command before it has a verdict.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command was asked for something that does not exist (a filter
    /// that matches nothing, a plugin version never built, a CPU QEMU does
    /// not have).
    #[error("{0}")]
    Usage(String),
    /// A console session's process or terminal failed; `context` says which.
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    /// What the command talks to is not there (no `runner run` going).
    #[error("{0}")]
    Environment(String),
    #[error(transparent)]
    Build(#[from] build::Error),
    #[error(transparent)]
    Machine(#[from] machine::Error),
    #[error(transparent)]
    Link(#[from] link::Error),
    #[error(transparent)]
    Scenarios(#[from] scenarios::Error),
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    /// Whether the user's words were wrong (exit status 2, and no
    /// `runner: error:` in front: the message names the command itself).
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Usage(_) | Error::Link(link::Error::Features { .. }))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
