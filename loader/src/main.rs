//! modvisor's loader: the microkernel that boots, owns memory, interrupts,
//! APICs and the SMP mechanism, and runs in-image test suites.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod acpi;
mod boot;
mod console;
mod cpu;
mod mem;
mod percpu;
mod power;
mod tests;
mod time;

use loader::cmdline::{self, CommandLine};
use loader::exit::Status;
use spin::Once;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The first Rust code, called by `boot/entry.S` on the boot CPU in long
/// mode with the boot stack.
#[no_mangle]
extern "C" fn kernel_entry(protocol: u32, info: u64) -> ! {
    time::mark_boot();
    console::init(log::LevelFilter::Info);
    // SAFETY: `entry.S` passes the protocol and the untouched %ebx value,
    // and identity-maps the first 4 GiB.
    let boot = match unsafe { boot::parse(protocol, info) } {
        Ok(b) => b,
        Err(e) => panic!("cannot read the boot information: {e}"),
    };
    let cl = match CommandLine::parse(boot.cmdline) {
        Ok(cl) => cl,
        Err(e) => {
            println!("error: {e}\naccepted arguments:\n{}", cmdline::HELP);
            power::exit(Status::BadCommandLine);
        }
    };
    if let Err(unknown) = tests::validate(cl.suites()) {
        println!("error: unknown test suite `{unknown}`; known suites:");
        tests::list().for_each(|s| println!("  {s}"));
        power::exit(Status::BadCommandLine);
    }
    console::set_level(cl.log_level);
    println!("modvisor {VERSION} loader, booted via {}", boot.protocol.name());
    if let Err(e) = mem::init(&boot) {
        panic!("memory setup failed: {e}");
    }
    let stack = match mem::Stack::new(BOOT_CPU_STACK_PAGES) {
        Ok(s) => s,
        Err(e) => panic!("cannot allocate the boot CPU's stack: {e}"),
    };
    CMDLINE.call_once(|| cl);
    mem::switch_stack(stack, boot_cpu_main)
}

/// The boot CPU's stack after `kernel_entry`: guarded, unlike the boot stack.
const BOOT_CPU_STACK_PAGES: u64 = 32;

/// What `kernel_entry` hands across the stack switch.
static CMDLINE: Once<CommandLine<'static>> = Once::new();

/// The rest of the boot CPU's work, on its guarded stack.
extern "C" fn boot_cpu_main() -> ! {
    let cl = CMDLINE.get().expect("kernel_entry stores the command line before switching stacks");
    if cl.tests.is_some() {
        power::exit(tests::run(cl.suites()));
    }
    power::exit(Status::Pass);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    x86_64::instructions::interrupts::disable();
    if console::enter_panic() {
        println!("panic on cpu {}: {info}", percpu::current_id());
        power::exit(Status::Panic);
    }
    power::halt_forever("nested panic")
}

// --- Branch `mem` only: `tests::run` pets the watchdog, which lives on main.
// Drop this module when merging.
mod watchdog {
    /// No watchdog on this branch, so nothing to pet.
    pub fn pet() {}
}
