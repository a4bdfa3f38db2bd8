//! modvisor's loader: the microkernel that boots, owns memory, interrupts,
//! APICs and the SMP mechanism, and runs in-image test suites.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

mod acpi;
mod boot;
mod console;
mod cpu;
mod percpu;
mod power;
mod time;

use loader::cmdline::{self, CommandLine};
use loader::exit::Status;

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
    console::set_level(cl.log_level);
    println!("modvisor {VERSION} loader, booted via {}", boot.protocol.name());
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
