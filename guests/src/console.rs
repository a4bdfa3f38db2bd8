//! Console output on port 0xE9, a byte per `out`. A line goes out under a
//! lock with interrupts off, so lines of several vCPUs never interleave
//! and a handler on the same vCPU cannot wait for a lock its interrupted
//! code holds.

use core::fmt::{self, Write};
use core::hint::spin_loop;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::{abi, cpu};

static BUSY: AtomicBool = AtomicBool::new(false);

struct Port;

impl Write for Port {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            cpu::out8(abi::CONSOLE_PORT, b);
        }
        Ok(())
    }
}

/// Runs `f` holding the console, interrupts off; gives up waiting after
/// `patience` tries when that is `Some` (then prints anyway).
fn locked(patience: Option<u64>, f: impl FnOnce(&mut Port)) {
    let were_on = cpu::interrupts_enabled();
    cpu::cli();
    let mut tries = 0u64;
    let mut held = false;
    while !held {
        held = BUSY.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok();
        tries += 1;
        if !held && patience.is_some_and(|p| tries >= p) {
            break;
        }
        spin_loop();
    }
    f(&mut Port);
    if held {
        BUSY.store(false, Ordering::Release);
    }
    if were_on {
        cpu::sti();
    }
}

/// `print!`'s body.
#[doc(hidden)]
pub fn print(args: fmt::Arguments<'_>) {
    locked(None, |port| {
        let _ = port.write_fmt(args);
    });
}

/// `println!`'s body: the text and its newline under one hold.
#[doc(hidden)]
pub fn print_line(args: fmt::Arguments<'_>) {
    locked(None, |port| {
        let _ = port.write_fmt(args);
        let _ = port.write_str("\n");
    });
}

/// A last line (a panic, an unexpected exception): the code that holds the
/// console may be what failed, so this waits a while, not forever.
pub fn print_fatal(args: fmt::Arguments<'_>) {
    locked(Some(1 << 20), |port| {
        let _ = port.write_fmt(args);
        let _ = port.write_str("\n");
    });
}

/// Prints to the guest console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// Prints a line to the guest console.
#[macro_export]
macro_rules! println {
    () => { $crate::console::print_line(format_args!("")) };
    ($($arg:tt)*) => { $crate::console::print_line(format_args!($($arg)*)) };
}
