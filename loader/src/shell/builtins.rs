//! The loader's own shell commands. The plugin runtime adds its commands
//! at run time through `shell::register`.

use super::{Error, REGISTRY};
use crate::println;
use alloc::string::{String, ToString};
use loader_core::power::exit::Status;
use loader_core::shell::registry::Builtin;

pub static BUILTINS: [Builtin; 7] = [
    Builtin {
        name: "help",
        usage: "help [command]",
        summary: "list the commands, or describe one",
        help: "",
        run: help,
    },
    Builtin {
        name: "log",
        usage: "log [level]",
        summary: "show or set the log level",
        help: "levels: off, error, warn, info, debug, trace (`log=` on the kernel command line sets it at boot)",
        run: log_level,
    },
    Builtin {
        name: "mem",
        usage: "mem",
        summary: "frame and heap usage",
        help: "frames are 4 KiB pages of physical memory; the heap is the loader's own allocator, of which loaded plugins hold a share (each plugin's is in `plugins`); leaks are what plugins left behind when they went, kept the part that could not be freed safely",
        run: mem,
    },
    Builtin {
        name: "cpus",
        usage: "cpus",
        summary: "one row per possible CPU: `cpu N apic A <state> <origin>`",
        help: "with cpuhp-plugin loaded, the lifecycle state (online, offline, absent) and origin (boot, hot-added, `-` for an empty slot) as cpuhp sees them; without it, the loader's view: run state (offline, starting, online, parked) and MADT class (boot, hot-pluggable)",
        run: cpus,
    },
    Builtin {
        name: "echo",
        usage: "echo [text]",
        summary: "print the text (for scripts and logs)",
        help: "",
        run: echo,
    },
    Builtin {
        name: "reboot",
        usage: "reboot",
        summary: "reset the machine (ACPI reset register, then fallbacks)",
        help: "",
        run: reboot,
    },
    Builtin {
        name: "poweroff",
        usage: "poweroff",
        summary: "ACPI power-off (ends QEMU)",
        help: "prints the `poweroff` exit marker first, as test runs expect",
        run: poweroff,
    },
];

/// Refuses arguments for commands that take none.
fn no_args(args: &str, command: &'static str) -> Result<(), Error> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(Error::Usage { command, usage: command })
    }
}

fn help(args: &str) -> Result<(), Error> {
    let mut text = String::new();
    {
        let registry = REGISTRY.lock();
        match args {
            "" => {
                // Writing into a String does not fail.
                let _ = registry.write_list(&mut text);
            }
            name if !name.contains(' ') => registry.write_help(name, &mut text)?,
            _ => return Err(Error::Usage { command: "help", usage: "help [command]" }),
        }
    }
    // Printed after the lock is gone: output is slow, registration is not.
    crate::console::write_fmt(format_args!("{text}"));
    Ok(())
}

fn log_level(args: &str) -> Result<(), Error> {
    if args.is_empty() {
        println!("log level: {}", log::max_level().as_str().to_ascii_lowercase());
        return Ok(());
    }
    let level = args.parse::<log::LevelFilter>().map_err(|_| Error::BadArgument {
        command: "log",
        argument: String::from(args),
        expected: "off, error, warn, info, debug or trace",
    })?;
    crate::console::set_level(level);
    println!("log level: {}", level.as_str().to_ascii_lowercase());
    Ok(())
}

fn mem(args: &str) -> Result<(), Error> {
    no_args(args, "mem")?;
    let s = crate::memory::stats();
    println!(
        "frames: {} of {} free ({} MiB of {} MiB); heap: {} of {} bytes used",
        s.frames_free,
        s.frames_total,
        s.frames_free >> 8,
        s.frames_total >> 8,
        s.heap_used,
        s.heap_bytes
    );
    let h = crate::plugin::heap::figures();
    println!("plugins hold {}; leaks since boot: {} in {} plugins, {} of it kept", h.held, h.leaked, h.leaks, h.kept);
    Ok(())
}

/// One row per MADT CPU, described by the plugin that owns the CPU
/// lifecycle (cpuhp) when one is loaded: lifecycle is policy, which the
/// loader leaves to plugins.
fn cpus(args: &str) -> Result<(), Error> {
    no_args(args, "cpus")?;
    let Some(acpi) = crate::acpi::get() else {
        println!("no ACPI tables were read, so no CPU list");
        return Ok(());
    };
    let mut loader_view = false;
    for (id, c) in acpi.cpus.iter().enumerate() {
        let row = |state: &str, origin: &str| println!("cpu {id} apic {} {state} {origin}", c.apic_id);
        match crate::plugin::registry::describe_cpu(id as u32) {
            Some(Ok(l)) => row(l.state(), l.origin()),
            Some(Err(e)) => return Err(Error::Failed { command: "cpus".into(), message: e.to_string() }),
            None => {
                loader_view = true;
                row(crate::smp::state(id).name(), c.class.name());
            }
        }
    }
    if loader_view {
        println!("(the loader's view: run state and MADT class; lifecycle states and origins come from cpuhp-plugin: `load cpuhp`)");
    }
    Ok(())
}

fn echo(args: &str) -> Result<(), Error> {
    println!("{args}");
    Ok(())
}

fn reboot(args: &str) -> Result<(), Error> {
    no_args(args, "reboot")?;
    crate::power::reboot()
}

fn poweroff(args: &str) -> Result<(), Error> {
    no_args(args, "poweroff")?;
    crate::power::exit(Status::PowerOff)
}
