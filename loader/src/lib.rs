//! The host-testable half of the loader: decisions and formats that do not
//! touch hardware. `main.rs` (built only for `x86_64-unknown-none`) holds the
//! hardware paths and uses these modules; the host runner in `images/` uses
//! [`exit`] and [`cmdline`] so that both sides agree on one definition.
//! [`shell`] needs `alloc`: the kernel provides its heap, the host std's.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod cmdline;
pub mod deferred;
pub mod elf;
pub mod exit;
pub mod extable;
pub mod frames;
pub mod madt;
pub mod memmap;
pub mod memory;
pub mod resolve;
pub mod s5;
pub mod shell;
