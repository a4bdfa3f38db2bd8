//! modvisor's image recipes and the host side of testing them.
//!
//! The `runner` binary (src/main.rs) only parses its arguments and calls
//! into this library. Everything that decides something — which image has
//! which command line, which layouts a test runs on, how an emulator's exit
//! is judged, whether a banner fits its layout — is pure and unit-tested
//! here; the few functions that spawn processes or touch files stay thin.

pub mod banner;
pub mod bench;
pub mod builder;
pub mod cli;
pub mod cpuhp_qmp;
pub mod emulator;
pub mod hotplug;
pub mod layout;
pub mod outcome;
pub mod plugin_build;
pub mod plugin_elf;
pub mod qmp;
pub mod recipes;
pub mod session;
pub mod signing;
pub mod swap;
pub mod testrun;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Everything that can stop a runner command before it has a verdict.
#[derive(Debug)]
pub enum Error {
    /// The command line of the runner itself was wrong.
    Usage(String),
    /// A file or process operation failed; `context` says which.
    Io { context: String, source: io::Error },
    /// An external tool (cargo, grub-mkrescue, qemu) ran and failed.
    Tool { command: String, detail: String },
    /// A recipe in the table is inconsistent (caught before anything boots).
    Recipe(String),
    /// The runner's own environment is unusable (e.g. a bad `ACCEL`).
    Environment(String),
    /// QEMU refused a QMP command, or QMP itself went wrong.
    Qmp(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "{m}"),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Tool { command, detail } => write!(f, "`{command}` failed: {detail}"),
            Error::Recipe(m) => write!(f, "bad image recipe: {m}"),
            Error::Environment(m) => write!(f, "{m}"),
            Error::Qmp(m) => write!(f, "QMP: {m}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The workspace root. The runner is always built from this workspace, so
/// the compile-time manifest path is the one place that knows where it is,
/// whatever the current directory of the caller.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the images crate lives one level below the workspace root")
}

/// Where built images, ISOs and the logs of test runs go (git-ignored).
pub fn out_dir() -> PathBuf {
    workspace_root().join("images").join("out")
}

/// The message of a serial line: the text after the loader's log prefix
/// (`[   0.123456 0 INFO  loader_core::x] `) when it has one, else the line.
pub fn log_message(line: &str) -> &str {
    match line.find("] ") {
        Some(i) if line.trim_start().starts_with('[') => line[i + 2..].trim(),
        _ => line.trim(),
    }
}

/// A log file as text, whatever bytes the guest wrote; empty if missing
/// (an emulator that failed to start writes none).
pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_keeps_the_tail() {
        assert_eq!(last_lines("a\nb\nc\n", 2), ["b", "c"]);
        assert_eq!(last_lines("a", 40), ["a"]);
        assert!(last_lines("", 3).is_empty());
    }

    #[test]
    fn log_prefix_is_stripped() {
        assert_eq!(log_message("[   0.123456 0 INFO  loader_core::x] cpus: 1"), "cpus: 1");
        assert_eq!(log_message("cpus: 1\r"), "cpus: 1");
        assert_eq!(log_message("a] b"), "a] b");
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(out_dir().ends_with("images/out"));
    }
}
