//! The debug shell on COM1. The line editor, the registry and the error
//! type are `loader_core::shell` (host-tested); this module owns the
//! registry instance, runs the boot commands and the prompt loop, and offers
//! run-time registration to the plugin runtime.

use crate::console::{self, Raw};
use crate::println;
use loader_core::shell::editor::{Editor, Entered};
use loader_core::shell::registry::Registry;
use loader_core::shell::ring::Item;
use spin::Mutex;

pub use loader_core::shell::registry::Handler;
pub use loader_core::shell::Error;
use loader_core::shell::{GREETING, PROMPT};

mod builtins;
#[cfg(feature = "ktest")]
mod ktests;

static REGISTRY: Mutex<Registry> = Mutex::new(Registry::new(&builtins::BUILTINS));

/// Why plugins of the boot's `load=` list did not load: an unknown command
/// may be one of theirs (`vm` under QEMU, which has no VMX), so the error
/// names them.
static NOT_LOADED: Mutex<alloc::vec::Vec<alloc::string::String>> = Mutex::new(alloc::vec::Vec::new());

/// Records that a boot plugin did not load, and why.
pub fn note_not_loaded(why: alloc::string::String) {
    NOT_LOADED.lock().push(why);
}

/// Adds the command `name`, owned by `owner`, that runs `handler(ctx, args)`.
/// `help`'s first line is the summary `help` lists; all of it is shown by
/// `help <name>`. Both strings are copied. A name that a built-in or any
/// owner already uses is refused (`Error::NameTaken`), as is a malformed
/// one (`Error::BadName`).
pub fn register(owner: u64, name: &str, help: &str, handler: Handler, ctx: usize) -> Result<(), Error> {
    REGISTRY.lock().register(owner, name, help, handler, ctx)
}

/// Removes every command `owner` registered; returns how many.
pub fn unregister_owner(owner: u64) -> usize {
    REGISTRY.lock().unregister_owner(owner)
}

/// Runs one command line.
pub fn execute(line: &str) -> Result<(), Error> {
    let Some((name, args)) = loader_core::shell::split(line) else {
        return Ok(());
    };
    // The lock is dropped before the command runs: commands may register
    // or unregister others, or print `help` from the registry.
    let command = REGISTRY.lock().resolve(name)?;
    command.run(name, args)
}

fn report(result: Result<(), Error>) {
    if let Err(e) = result {
        println!("error: {e}");
        if matches!(e, Error::UnknownCommand(_)) {
            for why in NOT_LOADED.lock().iter() {
                println!("  (not loaded at boot: {why})");
            }
        }
    }
    console::end_line();
}

/// Runs the `sh=` commands, each echoed after a prompt so that the log
/// reads like a session. A failing command is reported and the next runs.
pub fn run_boot_commands<'a>(commands: impl Iterator<Item = &'a str>) {
    for command in commands {
        println!("{PROMPT}{command}");
        report(execute(command));
    }
}

/// The interactive shell, until a command ends the machine.
pub fn run() -> ! {
    // Without the interrupt, `next_input` polls at each tick: enough for a
    // person typing, lossy for pasted lines (and then the line is refused).
    if let Some(acpi) = crate::acpi::get() {
        if let Err(e) = console::start_input(acpi) {
            log::warn!("{e}; polling COM1 at each timer tick instead, so fast input may be refused as lost");
        }
    }
    println!("{GREETING}");
    let mut editor = Editor::new(PROMPT);
    editor.prompt(&mut Raw);
    loop {
        // Waiting for input is progress; only a command that hangs starves
        // the watchdog (when one is armed with `watchdog=`).
        crate::time::watchdog::pet();
        let entered = match console::next_input() {
            None => {
                crate::plugin::upload::poll();
                crate::acpi::sci::run_pending();
                // Idle work bound to this CPU (vCPUs) runs a slice per
                // round, so the shell keeps answering while it runs.
                let cpu = crate::cpu::percpu::current_id();
                if !x86_64::instructions::interrupts::without_interrupts(|| crate::plugin::registry::idle::run(cpu)) {
                    console::wait_for_input();
                }
                continue;
            }
            Some(Item::Lost) => {
                editor.input_lost();
                continue;
            }
            Some(Item::Byte(b)) => match editor.feed(b, &mut Raw) {
                Some(entered) => entered,
                None => continue,
            },
        };
        match entered {
            Entered::Line(line) => report(execute(&line)),
            Entered::Cancelled => {}
            Entered::Refused(e) => report(Err(e)),
        }
        editor.prompt(&mut Raw);
    }
}
