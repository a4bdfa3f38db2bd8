//! COM1: the `log` facade's output (`[time cpu level target] message`),
//! raw output for the shell's line editor, and the receive path (interrupt,
//! queue) that feeds the shell.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};
use loader_core::shell::ring::{Item, Ring};
use spin::Mutex;
use uart_16550::SerialPort;
use x86_64::instructions::port::{Port, PortReadOnly};

#[cfg(feature = "ktest")]
pub mod capture;

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
        #[cfg(feature = "ktest")]
        capture::note(s);
        note_line_end(s);
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

/// Called by the emergency round once the other CPUs have halted for good:
/// one may have stopped while holding the console lock.
pub fn claim_from_stopped_cpus() {
    if PORT.is_locked() {
        // SAFETY: whoever holds the lock has stopped for good, and the
        // caller holds no console lock itself; the port stays valid.
        unsafe { PORT.force_unlock() };
    }
}

/// Waits until the UART has shifted out every byte (LSR bit 6, TEMT), so
/// that nothing is lost when the emulator exits right after.
pub fn flush() {
    // SAFETY: reading the line status register of COM1 has no side effects
    // but clearing its error bits (a lost overrun report at worst, while the
    // machine is going down).
    while unsafe { PortReadOnly::<u8>::new(COM1 + 5).read() } & 0x40 == 0 {
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
        let cpu = crate::cpu::percpu::current_id();
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

/// Writes bytes exactly as given (no `\n` translation): the shell's line
/// editor emits terminal sequences itself.
pub struct Raw;

impl Write for Raw {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        with_port(|p| {
            // `send` would expand backspace and DEL into `\x08 \x08`.
            s.bytes().for_each(|b| p.send_raw(b));
        });
        note_line_end(s);
        Ok(())
    }
}

/// Whether the last byte written ended a line: the shell starts a prompt
/// on a fresh line even after a command whose output did not end with one.
static AT_LINE_START: AtomicBool = AtomicBool::new(true);

fn note_line_end(s: &str) {
    if let Some(last) = s.bytes().last() {
        AT_LINE_START.store(last == b'\n', Ordering::Relaxed);
    }
}

/// Ends the current output line unless it is already ended.
pub fn end_line() {
    if !AT_LINE_START.load(Ordering::Relaxed) {
        write_fmt(format_args!("\n"));
    }
}

/// Received bytes waiting for the shell; 4 KiB is minutes of typing, and
/// what does not fit is reported as lost rather than dropped silently.
static RX: Mutex<Ring<4096>> = Mutex::new(Ring::new());

/// Vector of the COM1 receive interrupt.
pub const RX_VECTOR: u8 = 0x31;
/// COM1's ISA IRQ.
const COM1_IRQ: u8 = 4;

/// Moves every byte the UART holds into `RX`, noting overruns (LSR bit 1:
/// the 16-byte receive FIFO was full and a byte was lost).
fn drain_uart() {
    with_port(|_| {
        let mut rx = RX.lock();
        loop {
            // SAFETY: reading LSR only clears its error bits, which are
            // handled here. The PORT lock keeps other CPUs' transmit
            // polling off LSR meanwhile.
            let lsr = unsafe { PortReadOnly::<u8>::new(COM1 + 5).read() };
            // SAFETY: reading RBR when LSR bit 0 says a byte waits consumes
            // exactly that byte.
            let byte = (lsr & 1 != 0).then(|| unsafe { PortReadOnly::<u8>::new(COM1).read() });
            if lsr & 2 != 0 {
                rx.mark_lost();
            }
            match byte {
                Some(b) => rx.push(b),
                None => break,
            }
        }
    });
}

fn rx_interrupt(_: &mut crate::interrupts::idt::TrapFrame) {
    drain_uart();
}

#[derive(Debug)]
pub enum Error {
    Vector(u8),
    Route(crate::interrupts::ioapic::Error),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Vector(v) => write!(f, "the COM1 receive vector {v:#x} is already taken"),
            Error::Route(e) => write!(f, "cannot route COM1's IRQ {COM1_IRQ}: {e}"),
        }
    }
}

/// Takes COM1's receive interrupt (ISA IRQ 4 through the IOAPIC) on this
/// CPU. Polling at the 100 Hz tick alone would lose bytes: the receive FIFO
/// holds 16 bytes, about 1.4 ms of input at 115200 baud.
pub fn start_input(acpi: &crate::acpi::Acpi) -> Result<(), Error> {
    crate::interrupts::idt::set_handler(RX_VECTOR, rx_interrupt).map_err(Error::Vector)?;
    let (gsi, trigger, polarity) = crate::interrupts::ioapic::isa_irq(acpi, COM1_IRQ);
    crate::interrupts::ioapic::route(acpi, gsi, RX_VECTOR, crate::interrupts::apic::id(), trigger, polarity)
        .map_err(Error::Route)?;
    // SAFETY: IER bit 0 enables the "received data available" and
    // character-timeout interrupts only; `init` already set MCR.OUT2, which
    // gates the UART's interrupt line.
    unsafe { Port::<u8>::new(COM1 + 1).write(0x01) };
    Ok(())
}

/// The next received item. Also drains the UART itself: that is the whole
/// input path when the interrupt could not be routed, and it un-sticks the
/// edge-triggered IRQ if data was already pending when it was unmasked.
pub fn next_input() -> Option<Item> {
    drain_uart();
    x86_64::instructions::interrupts::without_interrupts(|| RX.lock().pop())
}

/// Sleeps until an interrupt (the receive interrupt or the next tick).
pub fn wait_for_input() {
    x86_64::instructions::interrupts::disable();
    if RX.lock().is_empty() {
        // `sti; hlt` as one: an interrupt that arrives in between still
        // ends the `hlt` (STI's one-instruction interrupt shadow).
        x86_64::instructions::interrupts::enable_and_hlt();
    } else {
        x86_64::instructions::interrupts::enable();
    }
}
