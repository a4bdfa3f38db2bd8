//! COM1 console behind the `log` facade: `[time cpu level target] message`.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Mutex;
use uart_16550::SerialPort;

const COM1: u16 = 0x3f8;

static PORT: Mutex<Option<SerialPort>> = Mutex::new(None);
static PANICKING: AtomicBool = AtomicBool::new(false);

struct Logger;
static LOGGER: Logger = Logger;

pub fn init(level: log::LevelFilter) {
    // SAFETY: COM1 is the standard 16550 port on PC platforms, and only this
    // module drives it.
    let mut port = unsafe { SerialPort::new(COM1) };
    port.init();
    *PORT.lock() = Some(port);
    // A second init (only the level changes) keeps the logger installed.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

pub fn set_level(level: log::LevelFilter) {
    log::set_max_level(level);
}

/// Writes to COM1 without any prefix.
pub fn write_fmt(args: core::fmt::Arguments) {
    with_port(|p| {
        let _ = Crlf(p).write_fmt(args);
    });
}

/// Turns `\n` into `\r\n`: a serial terminal needs both to start a new line.
struct Crlf<'a>(&'a mut SerialPort);

impl Write for Crlf<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for (i, line) in s.split('\n').enumerate() {
            if i > 0 {
                self.0.write_str("\r\n")?;
            }
            self.0.write_str(line)?;
        }
        Ok(())
    }
}

fn with_port(f: impl FnOnce(&mut SerialPort)) {
    // Interrupts are masked while the lock is held, so a handler that logs on
    // this CPU can never spin on a lock its own CPU holds.
    x86_64::instructions::interrupts::without_interrupts(|| {
        if let Some(p) = PORT.lock().as_mut() {
            f(p)
        }
    })
}

/// Called once by the panic path: from now on the console lock may be held
/// by a CPU that will never release it (it is being stopped), so it is
/// broken open. Output of two CPUs may interleave; losing the panic message
/// would be worse.
pub fn enter_panic() -> bool {
    let first = !PANICKING.swap(true, Ordering::SeqCst);
    if first {
        // SAFETY: see above; the port itself stays valid.
        unsafe { PORT.force_unlock() };
    }
    first
}

/// Waits until the UART has shifted out every byte (LSR bit 6, TEMT), so
/// that nothing is lost when the emulator exits right after.
pub fn flush() {
    // SAFETY: reading the line status register of COM1 has no side effects.
    while unsafe { x86_64::instructions::port::PortReadOnly::<u8>::new(COM1 + 5).read() } & 0x40 == 0 {
        core::hint::spin_loop();
    }
}

#[macro_export]
macro_rules! println {
    () => { $crate::console::write_fmt(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let us = crate::time::uptime_us();
        let cpu = crate::percpu::current_id();
        write_fmt(format_args!(
            "[{:5}.{:06} {} {:5} {}] {}\n",
            us / 1_000_000,
            us % 1_000_000,
            cpu,
            r.level(),
            r.target(),
            r.args()
        ));
    }

    fn flush(&self) {
        flush()
    }
}

/// Takes a received byte, if any.
fn try_receive() -> Option<u8> {
    // SAFETY: LSR bit 0 says a byte waits in the receive buffer; reading
    // the buffer then consumes exactly that byte.
    unsafe {
        let lsr = x86_64::instructions::port::PortReadOnly::<u8>::new(COM1 + 5).read();
        (lsr & 1 != 0).then(|| x86_64::instructions::port::PortReadOnly::<u8>::new(COM1).read())
    }
}

const PROMPT: &str = "modvisor> ";

/// The boot console: a few commands on COM1 until the machine goes down.
/// Polls the UART at each timer tick; `hlt` sleeps in between.
pub fn run() -> ! {
    let mut line = [0u8; 128];
    let mut len = 0;
    write_fmt(format_args!("type `help` for commands\n{PROMPT}"));
    loop {
        let Some(b) = try_receive() else {
            crate::upload::poll();
            x86_64::instructions::hlt();
            continue;
        };
        match b {
            b'\r' | b'\n' => {
                write_fmt(format_args!("\n"));
                let cmd = core::str::from_utf8(&line[..len]).unwrap_or("");
                command(cmd.trim());
                len = 0;
                write_fmt(format_args!("{PROMPT}"));
            }
            0x08 | 0x7f if len > 0 => {
                len -= 1;
                write_fmt(format_args!("\x08 \x08"));
            }
            0x20..=0x7e if len < line.len() => {
                line[len] = b;
                len += 1;
                write_fmt(format_args!("{}", b as char));
            }
            _ => {}
        }
    }
}

fn command(cmd: &str) {
    match cmd {
        "" => {}
        "help" => crate::println!(
            "commands:\n  help      this list\n  cpus      CPUs from the MADT and their classification\n  mem       memory usage counters\n  poweroff  ACPI power-off\n  reboot    ACPI reset"
        ),
        "cpus" => crate::print_cpus(),
        "mem" => {
            let s = crate::mem::stats();
            crate::println!(
                "frames: {} of {} free ({} MiB of {} MiB); heap: {} of {} bytes used",
                s.frames_free,
                s.frames_total,
                s.frames_free >> 8,
                s.frames_total >> 8,
                s.heap_used,
                s.heap_bytes
            )
        }
        "poweroff" => crate::power::exit(loader::exit::Status::PowerOff),
        "reboot" => crate::power::reboot(),
        other => {
            let (name, args) = other.split_once(' ').unwrap_or((other, ""));
            match crate::plugin::commands::run(name, args) {
                Some(Ok(())) => {}
                Some(Err(e)) => crate::println!("error: {e}"),
                None => crate::println!("error: unknown command `{other}`; type `help` for the list"),
            }
        }
    }
}
