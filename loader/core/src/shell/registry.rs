//! The shell's commands: a static table of built-ins and the commands that
//! owners (the plugin runtime, for itself and for each plugin) register
//! and unregister at run time. One namespace: a name may be used once.

use super::Error;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// Longest command name.
pub const MAX_NAME: usize = 32;

pub type BuiltinFn = fn(args: &str) -> Result<(), Error>;

/// A run-time command's handler; `ctx` is the value given at registration
/// (e.g. the plugin runtime's pointer to the plugin). The `String` is the
/// message shown after `error: <name>: `.
pub type Handler = fn(ctx: usize, args: &str) -> Result<(), String>;

pub struct Builtin {
    pub name: &'static str,
    /// `log [level]`: shown by `help` and in usage errors.
    pub usage: &'static str,
    /// One line for the `help` list.
    pub summary: &'static str,
    /// More lines for `help <name>` (may be empty).
    pub help: &'static str,
    pub run: BuiltinFn,
}

struct Dynamic {
    owner: u64,
    name: String,
    /// First line: the summary; the rest: shown by `help <name>`.
    help: String,
    handler: Handler,
    ctx: usize,
}

/// A command found by name, detached from the registry so that the caller
/// can drop its lock before running it: a command may itself register or
/// unregister commands (`load`, `unload`).
#[derive(Clone, Copy)]
pub enum Resolved {
    Builtin(BuiltinFn),
    Dynamic { handler: Handler, ctx: usize },
}

impl Resolved {
    /// Runs the command found under `name`.
    pub fn run(self, name: &str, args: &str) -> Result<(), Error> {
        match self {
            Resolved::Builtin(f) => f(args),
            Resolved::Dynamic { handler, ctx } => {
                handler(ctx, args).map_err(|message| Error::Failed { command: String::from(name), message })
            }
        }
    }
}

/// Run-time commands the table holds without growing: the loader's own and
/// those of a good many plugins.
const ROOM: usize = 32;

pub struct Registry {
    builtins: &'static [Builtin],
    /// Sorted by name.
    dynamic: Vec<Dynamic>,
}

impl Registry {
    pub const fn new(builtins: &'static [Builtin]) -> Self {
        Registry { builtins, dynamic: Vec::new() }
    }

    /// Adds a command owned by `owner`. Names are unique across built-ins
    /// and every owner: a clash is an error, never a silent override.
    pub fn register(&mut self, owner: u64, name: &str, help: &str, handler: Handler, ctx: usize) -> Result<(), Error> {
        if !valid_name(name) {
            return Err(Error::BadName(String::from(name)));
        }
        if self.builtins.iter().any(|b| b.name == name) {
            return Err(Error::NameTaken { name: String::from(name), owner: None });
        }
        match self.dynamic.binary_search_by(|d| d.name.as_str().cmp(name)) {
            Ok(i) => Err(Error::NameTaken { name: String::from(name), owner: Some(self.dynamic[i].owner) }),
            Err(i) => {
                let d = Dynamic { owner, name: String::from(name), help: String::from(help.trim()), handler, ctx };
                // Room for the usual commands at once: plugins that register
                // and unregister theirs then leave the heap as they found it,
                // instead of growing a table that keeps its size.
                if self.dynamic.capacity() == 0 {
                    self.dynamic.reserve_exact(ROOM);
                }
                self.dynamic.insert(i, d);
                Ok(())
            }
        }
    }

    /// Removes every command of `owner`; returns how many there were.
    pub fn unregister_owner(&mut self, owner: u64) -> usize {
        let before = self.dynamic.len();
        self.dynamic.retain(|d| d.owner != owner);
        before - self.dynamic.len()
    }

    pub fn resolve(&self, name: &str) -> Result<Resolved, Error> {
        if let Some(b) = self.builtins.iter().find(|b| b.name == name) {
            return Ok(Resolved::Builtin(b.run));
        }
        self.dynamic
            .iter()
            .find(|d| d.name == name)
            .map(|d| Resolved::Dynamic { handler: d.handler, ctx: d.ctx })
            .ok_or_else(|| Error::UnknownCommand(String::from(name)))
    }

    /// The `help` list: built-ins, then run-time commands if any.
    pub fn write_list(&self, w: &mut impl Write) -> core::fmt::Result {
        let width = self
            .builtins
            .iter()
            .map(|b| b.usage.len())
            .chain(self.dynamic.iter().map(|d| d.name.len()))
            .max()
            .unwrap_or(0);
        writeln!(w, "commands:")?;
        for b in self.builtins {
            writeln!(w, "  {:width$}  {}", b.usage, b.summary)?;
        }
        if !self.dynamic.is_empty() {
            writeln!(w, "plugin commands:")?;
        }
        for d in &self.dynamic {
            writeln!(w, "  {:width$}  {}", d.name, summary(&d.help))?;
        }
        writeln!(w, "`help <command>` describes one command.")
    }

    /// `help <name>`.
    pub fn write_help(&self, name: &str, w: &mut impl Write) -> Result<(), Error> {
        // A `fmt::Write` into memory does not fail; the kernel's writers
        // drop output rather than fail either.
        if let Some(b) = self.builtins.iter().find(|b| b.name == name) {
            let _ = writeln!(w, "usage: {}\n{}", b.usage, b.summary);
            if !b.help.is_empty() {
                let _ = writeln!(w, "{}", b.help);
            }
            return Ok(());
        }
        let d =
            self.dynamic.iter().find(|d| d.name == name).ok_or_else(|| Error::UnknownCommand(String::from(name)))?;
        let _ = writeln!(w, "{} (registered by owner {})", d.name, d.owner);
        if !d.help.is_empty() {
            let _ = writeln!(w, "{}", d.help);
        }
        Ok(())
    }
}

fn summary(help: &str) -> &str {
    match help.lines().next() {
        Some(s) if !s.trim().is_empty() => s,
        _ => "(no description)",
    }
}

fn valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;
    use core::sync::atomic::{AtomicUsize, Ordering};

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    #[test]
    fn plugins_coming_and_going_leave_the_table_as_it_was() {
        let mut r = Registry::new(&[]);
        for n in 0..7 {
            r.register(0, &format!("loader{n}"), "", plugin, 0).unwrap();
        }
        let room = r.dynamic.capacity();
        for round in 0..3 {
            for n in 0..5 {
                r.register(1 + round, &format!("p{round}c{n}"), "", plugin, 0).unwrap();
            }
            assert_eq!(r.unregister_owner(1 + round), 5);
            assert_eq!(r.dynamic.capacity(), room, "round {round}");
        }
    }

    fn count(_: &str) -> Result<(), Error> {
        CALLS.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn refuse(args: &str) -> Result<(), Error> {
        Err(Error::BadArgument { command: "log", argument: args.to_string(), expected: "a level" })
    }

    fn plugin(ctx: usize, args: &str) -> Result<(), String> {
        if args == "fail" {
            Err(format!("failed with ctx {ctx}"))
        } else {
            Ok(())
        }
    }

    static BUILTINS: [Builtin; 2] = [
        Builtin { name: "mem", usage: "mem", summary: "memory counters", help: "", run: count },
        Builtin {
            name: "log",
            usage: "log [level]",
            summary: "show or set the log level",
            help: "levels: off, error",
            run: refuse,
        },
    ];

    #[test]
    fn builtins_resolve_and_run() {
        let r = Registry::new(&BUILTINS);
        let before = CALLS.load(Ordering::Relaxed);
        r.resolve("mem").unwrap().run("mem", "").unwrap();
        assert_eq!(CALLS.load(Ordering::Relaxed), before + 1);
        assert!(matches!(r.resolve("log").unwrap().run("log", "x"), Err(Error::BadArgument { .. })));
        assert_eq!(r.resolve("nope").err(), Some(Error::UnknownCommand("nope".into())));
    }

    #[test]
    fn dynamic_commands_register_run_and_go_with_their_owner() {
        let mut r = Registry::new(&BUILTINS);
        r.register(1, "plugins", "list plugins\nwith details", plugin, 11).unwrap();
        assert_eq!(r.dynamic.capacity(), ROOM, "room reserved at the first registration");
        r.register(2, "counter", "count things", plugin, 22).unwrap();
        r.register(2, "counter-reset", "", plugin, 23).unwrap();
        r.resolve("plugins").unwrap().run("plugins", "").unwrap();
        assert_eq!(
            r.resolve("counter").unwrap().run("counter", "fail"),
            Err(Error::Failed { command: "counter".into(), message: "failed with ctx 22".into() })
        );
        assert_eq!(r.unregister_owner(2), 2);
        assert_eq!(r.unregister_owner(2), 0);
        assert!(r.resolve("counter").is_err());
        assert!(r.resolve("plugins").is_ok());
        // The name is free again.
        r.register(3, "counter", "again", plugin, 0).unwrap();
    }

    #[test]
    fn clashes_and_bad_names_are_errors() {
        let mut r = Registry::new(&BUILTINS);
        assert_eq!(r.register(1, "mem", "", plugin, 0), Err(Error::NameTaken { name: "mem".into(), owner: None }));
        r.register(1, "load", "", plugin, 0).unwrap();
        assert_eq!(r.register(2, "load", "", plugin, 0), Err(Error::NameTaken { name: "load".into(), owner: Some(1) }));
        assert_eq!(r.register(1, "load", "", plugin, 0), Err(Error::NameTaken { name: "load".into(), owner: Some(1) }));
        for bad in ["", "Load", "1st", "a b", "x;y", &"a".repeat(MAX_NAME + 1)] {
            assert_eq!(r.register(1, bad, "", plugin, 0), Err(Error::BadName(bad.into())), "{bad:?}");
        }
        r.register(1, &"a".repeat(MAX_NAME), "", plugin, 0).unwrap();
    }

    #[test]
    fn help_lists_and_describes() {
        let mut r = Registry::new(&BUILTINS);
        let mut list = String::new();
        r.write_list(&mut list).unwrap();
        assert_eq!(
            list,
            "commands:\n  mem          memory counters\n  log [level]  show or set the log level\n`help <command>` describes one command.\n"
        );
        r.register(4, "swap", "replace a plugin\nusage: swap <name> <version>", plugin, 0).unwrap();
        r.register(4, "info", "", plugin, 0).unwrap();
        let mut list = String::new();
        r.write_list(&mut list).unwrap();
        assert!(
            list.contains("plugin commands:\n  info         (no description)\n  swap         replace a plugin\n"),
            "{list}"
        );
        let mut h = String::new();
        r.write_help("log", &mut h).unwrap();
        assert_eq!(h, "usage: log [level]\nshow or set the log level\nlevels: off, error\n");
        let mut h = String::new();
        r.write_help("swap", &mut h).unwrap();
        assert_eq!(h, "swap (registered by owner 4)\nreplace a plugin\nusage: swap <name> <version>\n");
        assert_eq!(r.write_help("nope", &mut h), Err(Error::UnknownCommand("nope".into())));
    }
}
