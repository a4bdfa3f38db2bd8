//! The emulators, as the rest of the runner sees them: where a boot runs
//! (`layout`), the QEMU and Bochs command lines (`qemu`, `bochs`), the
//! guard every emulator process runs under (`process`), and how a boot
//! ended (`outcome`, `banner`). Nothing here knows what an image is beyond
//! the paths it is given.

pub mod banner;
pub mod bochs;
pub mod firmware;
pub mod layout;
pub mod outcome;
pub mod process;
pub mod qemu;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::out_dir;

/// Why an emulator could not be prepared or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or process operation failed; `context` says which.
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    /// The host lacks something the emulator needs, or the runner's own
    /// environment is unusable (e.g. a bad `ACCEL`).
    #[error("{0}")]
    Environment(String),
    /// A run would create more vCPUs than QEMU can over its life (see
    /// `qemu::check_plug_events`); the message has the arithmetic.
    #[error("{0}")]
    PlugBudget(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the guest's COM1 goes, in QEMU and in Bochs.
#[derive(Clone, Copy, Debug)]
pub enum Serial<'a> {
    File(&'a Path),
    /// The terminal: QEMU multiplexes it with its monitor (Ctrl-A C /
    /// Ctrl-A X); Bochs puts it in raw mode.
    Terminal,
    /// A unix socket QEMU listens on and the runner connects to (scripted
    /// shell sessions). QEMU starts the guest only once connected, so no
    /// output is lost. Bochs has no such mode.
    Socket(&'a Path),
}

/// A fresh directory for one run's files, kept afterwards for post-mortems.
pub fn fresh_run_dir(name: &str) -> Result<PathBuf> {
    let dir = out_dir().join("runs").join(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("clearing {}", dir.display()), e))?;
    }
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    Ok(dir)
}
