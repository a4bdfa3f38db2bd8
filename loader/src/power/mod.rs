//! Leaving the machine: test exit statuses, ACPI power-off and reboot, each
//! with a fallback that always ends the run.

use loader_core::power::exit::{Status, DEBUG_EXIT_PORT};
use x86_64::instructions::port::Port;

#[cfg(feature = "ktest")]
mod ktests;
pub mod system;

/// Prints the exit marker, then tells the emulator to stop with `status`.
pub fn exit(status: Status) -> ! {
    crate::println!("{status}");
    crate::console::flush();
    if status == Status::PowerOff {
        poweroff();
    }
    // SAFETY: QEMU's isa-debug-exit device ends the process; on machines
    // without it the port is unused and the write goes nowhere.
    unsafe { Port::<u32>::new(DEBUG_EXIT_PORT).write(status as u32) };
    bochs_shutdown();
    crate::acpi::poweroff();
    halt_forever("the emulator did not exit; it is safe to turn off")
}

/// ACPI S5 after the plugins' shutdown; without ACPI or if it does not
/// take, halts every CPU.
pub fn poweroff() -> ! {
    log::info!("powering off");
    crate::power::system::shut_down(plugins::system_state::POWER_OFF);
    crate::console::flush();
    crate::acpi::poweroff();
    bochs_shutdown();
    halt_forever("ACPI power-off did not take; it is safe to turn off")
}

/// The plugins' shutdown, then [`reset`].
pub fn reboot() -> ! {
    log::info!("rebooting");
    crate::power::system::shut_down(plugins::system_state::RESTART);
    reset()
}

/// ACPI reset register, then the 8042 pulse, then a triple fault. Each
/// fallback announces itself, so the log shows which path reset the machine.
pub fn reset() -> ! {
    crate::console::flush();
    crate::acpi::reset();
    log::warn!("no reset through the ACPI reset register; pulsing the 8042 reset line");
    crate::console::flush();
    // SAFETY: 0xfe to the keyboard controller pulses the CPU reset line.
    unsafe { Port::<u8>::new(0x64).write(0xfe) };
    crate::time::delay_us(50_000);
    log::warn!("the 8042 did not reset the machine; triple-faulting");
    crate::console::flush();
    crate::cpu::triple_fault()
}

/// Bochs' shutdown port: the string "Shutdown" written to 0x8900.
fn bochs_shutdown() {
    for b in b"Shutdown" {
        // SAFETY: only Bochs decodes this port; elsewhere writes go nowhere.
        unsafe { Port::<u8>::new(0x8900).write(*b) };
    }
}

pub fn halt_forever(why: &str) -> ! {
    crate::println!("modvisor: {why}");
    crate::console::flush();
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
