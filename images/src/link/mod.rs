//! Talking to a running guest: its shell on COM1 (`console`, the expect
//! engine every scripted run uses), QEMU's QMP socket (`qmp`) and plugin
//! uploads on COM2 (`com2`).

pub mod com2;
pub mod console;
pub mod qmp;

use std::io;

/// Why talking to the guest or to QEMU failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket operation failed; `context` says which.
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    /// QEMU refused a QMP command, or QMP itself went wrong.
    #[error("QMP: {0}")]
    Qmp(String),
    /// `FEATURES` (extra CPU properties) is not the body of a JSON object.
    #[error("FEATURES `{features}` is not `\"name\": value, ...`: {reason}")]
    Features { features: String, reason: String },
    /// The loader's COM2 reply was missing, cut short or malformed.
    #[error("{0}")]
    Com2(String),
    /// A payload too large for an upload frame's length field.
    #[error("a plugin of {0} bytes is too large to upload")]
    TooLarge(usize),
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
