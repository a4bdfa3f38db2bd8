//! The debug shell's decisions: the line editor, the command registry and
//! the receive queue, all pure and host-tested.
//!
//! The kernel's `shell` module owns the registry instance, the built-in
//! commands, the COM1 loop and the boot commands.

pub mod editor;
pub mod registry;
pub mod ring;

use alloc::string::String;
use core::fmt;

/// Printed before each line the shell reads, always at the start of a line
/// (the runner's scripted session relies on both).
pub const PROMPT: &str = "modvisor> ";
/// Printed once when the interactive shell starts, after the boot commands.
pub const GREETING: &str = "type `help` for commands";

/// Everything a shell command or the shell itself can fail with. Shown to
/// the user as `error: <message>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    UnknownCommand(String),
    /// Arguments that do not fit the command's usage line.
    Usage {
        command: &'static str,
        usage: &'static str,
    },
    /// One argument is not among the accepted values.
    BadArgument {
        command: &'static str,
        argument: String,
        expected: &'static str,
    },
    LineTooLong {
        max: usize,
    },
    /// The receive path dropped bytes of the line.
    InputLost,
    /// A plugin command returned an error.
    Failed {
        command: String,
        message: String,
    },
    /// `register` with a name a built-in or another owner already has.
    NameTaken {
        name: String,
        owner: Option<u64>,
    },
    BadName(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownCommand(c) => write!(f, "unknown command `{c}`; type `help`"),
            Error::Usage { command, usage } => write!(f, "usage: {usage} (see `help {command}`)"),
            Error::BadArgument { command, argument, expected } => {
                write!(f, "{command}: `{argument}` is not valid here; expected {expected}")
            }
            Error::LineTooLong { max } => write!(f, "line too long (max {max} characters)"),
            Error::InputLost => write!(f, "input was lost (the receive buffer overflowed); type the line again"),
            Error::Failed { command, message } => write!(f, "{command}: {message}"),
            Error::NameTaken { name, owner: None } => {
                write!(f, "command `{name}` is built in; pick another name")
            }
            Error::NameTaken { name, owner: Some(o) } => {
                write!(
                    f,
                    "command `{name}` is already registered by owner {o}; pick another name or unregister it first"
                )
            }
            Error::BadName(n) => write!(
                f,
                "`{n}` is not a command name: use 1 to {} of a-z, 0-9, `-` and `_`, starting with a letter",
                registry::MAX_NAME
            ),
        }
    }
}

/// Splits a line into the command name and the rest (trimmed); `None` for
/// a blank line.
pub fn split(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    Some(match line.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((name, args)) => (name, args.trim()),
        None => (line, ""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn lines_split_into_name_and_arguments() {
        assert_eq!(split("  "), None);
        assert_eq!(split("mem"), Some(("mem", "")));
        assert_eq!(split(" log   debug  "), Some(("log", "debug")));
        assert_eq!(split("echo a  b"), Some(("echo", "a  b")));
        assert_eq!(split("echo\ta"), Some(("echo", "a")));
    }

    #[test]
    fn messages_say_what_to_do() {
        assert_eq!(Error::UnknownCommand("x".into()).to_string(), "unknown command `x`; type `help`");
        assert_eq!(Error::LineTooLong { max: 256 }.to_string(), "line too long (max 256 characters)");
        assert_eq!(
            Error::Usage { command: "log", usage: "log [level]" }.to_string(),
            "usage: log [level] (see `help log`)"
        );
        assert!(Error::NameTaken { name: "mem".into(), owner: None }.to_string().contains("built in"));
        assert!(Error::NameTaken { name: "x".into(), owner: Some(7) }.to_string().contains("owner 7"));
    }
}
