//! The loader's decisions and formats that touch no hardware, tested on the
//! host. The kernel (`loader/src/`) applies them to the hardware, and its
//! folders mirror these: the same name means the same subsystem. The host
//! runner in `images/` uses [`power::exit`] and [`boot::cmdline`] so that
//! both sides agree on one definition. [`shell`] needs `alloc`: the kernel
//! provides its heap, the host std's.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod acpi;
pub mod boot;
pub mod interrupts;
pub mod memory;
pub mod plugin;
pub mod power;
pub mod seeded;
pub mod shell;
pub mod smp;
pub mod time;
