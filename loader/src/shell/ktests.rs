//! The `shell` suite: run-time registration as the plugin runtime will use
//! it, and built-ins run through the same path as typed lines. The serial
//! side (editing, history, the receive interrupt) is tested from the host
//! by the runner's `shell-session` scenario.

use super::{execute, register, unregister_owner, Error};
use crate::ktest::{Failure, Test};
use crate::{check, check_eq, failure};
use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicUsize, Ordering};

crate::suite!(SUITE_SHELL, "shell", TESTS);
static TESTS: &[Test] = &[
    Test { name: "register-run-unregister", run: register_run_unregister },
    Test { name: "names-clash", run: names_clash },
    Test { name: "commands-register-commands", run: commands_register_commands },
    Test { name: "builtin-errors", run: builtin_errors },
];

const OWNER: u64 = 0x5e11;
const OTHER: u64 = 0x5e12;

/// `ctx` plus the length of the arguments of the last call.
static LAST: AtomicUsize = AtomicUsize::new(0);

fn record(ctx: usize, args: &str) -> Result<(), String> {
    if args == "fail" {
        return Err(format!("asked to fail (ctx {ctx})"));
    }
    LAST.store(ctx + args.len(), Ordering::Relaxed);
    Ok(())
}

fn register_run_unregister() -> Result<(), Failure> {
    register(OWNER, "selftest-a", "first\nmore", record, 1000).map_err(|e| failure!("register: {e}"))?;
    register(OWNER, "selftest-b", "second", record, 2000).map_err(|e| failure!("register: {e}"))?;
    execute("  selftest-a   four ").map_err(|e| failure!("run: {e}"))?;
    check_eq!(LAST.load(Ordering::Relaxed), 1004, "ctx + argument length seen by the handler");
    check_eq!(
        execute("selftest-b fail"),
        Err(Error::Failed { command: "selftest-b".into(), message: "asked to fail (ctx 2000)".into() }),
        "a failing plugin command"
    );
    check_eq!(unregister_owner(OWNER), 2, "commands removed");
    check_eq!(execute("selftest-a"), Err(Error::UnknownCommand("selftest-a".into())), "after unregistering");
    Ok(())
}

fn names_clash() -> Result<(), Failure> {
    check_eq!(
        register(OWNER, "mem", "", record, 0),
        Err(Error::NameTaken { name: "mem".into(), owner: None }),
        "a built-in name"
    );
    register(OWNER, "selftest-c", "", record, 0).map_err(|e| failure!("register: {e}"))?;
    let again = register(OTHER, "selftest-c", "", record, 0);
    unregister_owner(OWNER);
    check_eq!(again, Err(Error::NameTaken { name: "selftest-c".into(), owner: Some(OWNER) }), "another owner's name");
    check!(matches!(register(OWNER, "Bad Name", "", record, 0), Err(Error::BadName(_))), "a malformed name is refused");
    Ok(())
}

/// A handler that registers a command: `load` will do this, so the
/// registry must not be locked while a command runs.
fn registering(_: usize, _: &str) -> Result<(), String> {
    register(OTHER, "selftest-inner", "", record, 7).map_err(|e| format!("{e}"))
}

fn commands_register_commands() -> Result<(), Failure> {
    register(OWNER, "selftest-outer", "", registering, 0).map_err(|e| failure!("register: {e}"))?;
    let outer = execute("selftest-outer");
    let inner = execute("selftest-inner xy");
    let removed = (unregister_owner(OWNER), unregister_owner(OTHER));
    outer.map_err(|e| failure!("outer: {e}"))?;
    inner.map_err(|e| failure!("inner: {e}"))?;
    check_eq!(LAST.load(Ordering::Relaxed), 9, "the inner command ran");
    check_eq!(removed, (1, 1), "commands removed per owner");
    Ok(())
}

fn builtin_errors() -> Result<(), Failure> {
    check_eq!(execute("mem now"), Err(Error::Usage { command: "mem", usage: "mem" }), "mem with arguments");
    check!(matches!(execute("log chatty"), Err(Error::BadArgument { command: "log", .. })), "log with a bad level");
    check_eq!(execute("nosuch"), Err(Error::UnknownCommand("nosuch".into())), "unknown command");
    check_eq!(execute("   "), Ok(()), "a blank line");
    execute("echo from the shell suite").map_err(|e| failure!("echo: {e}"))?;
    execute("help help").map_err(|e| failure!("help help: {e}"))?;
    Ok(())
}
