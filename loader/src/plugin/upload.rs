//! Plugin upload over COM2: the host sends `plugins::upload` frames; the
//! receive interrupt only moves bytes into a ring, and `poll` (called by the
//! shell when idle) reassembles frames (`loader_core::plugin::upload`),
//! verifies and stores them, and answers each one on COM2. A corrupt,
//! unsigned or otherwise bad upload is refused, changes nothing, and the
//! refusal is logged on COM1 too.
//!
//! Flow control: when the ring is full the interrupt handler leaves the
//! byte in the UART and turns the receive interrupt off until `poll` has
//! made room. QEMU's 16550 takes bytes from its chardev only while its
//! receive FIFO has room, so the host's writes wait and no byte is lost
//! (RTS/CTS would not help there: QEMU passes modem lines only to host
//! serial ports, not to sockets, and its 16550 has no automatic flow
//! control). A real UART without flow control overruns instead; the
//! handler reads the loss from the line status and the frame it hit is
//! refused with a request to send it again.

use crate::plugin::{registry, store};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::{Display, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use loader_core::plugin::upload::{Byte, Limits, Output, Receiver, Stats};
use plugins::upload::{Command, Loaded, Refusal, MAX_PAYLOAD, REPLY_END, REPLY_ERROR};
use spin::Mutex;
use uart_16550::SerialPort;
use x86_64::instructions::port::{PortReadOnly, PortWriteOnly};

const COM2: u16 = 0x2f8;
const ISA_IRQ: u8 = 3;
pub const VECTOR: u8 = 0x40;
/// A frame that pauses this long is refused. The host writes a frame in
/// one go, so a pause means it was cut off; well above any scheduling
/// hiccup of an emulator on a busy host.
const FRAME_TIMEOUT_US: u64 = 2_000_000;

/// Line status register bits.
const LSR_DATA_READY: u8 = 0x01;
/// Overrun, parity, framing error and break: bytes lost or garbled.
const LSR_ERRORS: u8 = 0x1e;
/// Interrupt enable register: received data available.
const IER_RECEIVED_DATA: u8 = 0x01;

/// Bytes received by the interrupt handler and not yet decoded; bit 8 of
/// an entry says the UART lost or garbled bytes before or at it. The
/// handler is the only writer of `HEAD`, `poll` the only writer of `TAIL`.
const RING: usize = 64 * 1024;
const DAMAGED: u16 = 1 << 8;
static mut RING_BUF: [u16; RING] = [0; RING];
static HEAD: AtomicUsize = AtomicUsize::new(0);
static TAIL: AtomicUsize = AtomicUsize::new(0);
/// The handler found the ring full and turned the receive interrupt off.
static STOPPED: AtomicBool = AtomicBool::new(false);
/// The line status reported a loss that no byte has carried yet.
static LOSS_SEEN: AtomicBool = AtomicBool::new(false);
/// How often the handler found the ring full, and the most it held.
static HELD_BACK: AtomicU64 = AtomicU64::new(0);
static RING_HIGH: AtomicUsize = AtomicUsize::new(0);
/// `upload hold`: `poll` decodes nothing until `upload release`.
static HOLDING: AtomicBool = AtomicBool::new(false);

struct Uplink {
    port: SerialPort,
    receiver: Receiver,
    /// Frames answered `ok` and `error: ...`, bytes skipped.
    taken: u32,
    refused: u32,
    skipped: u64,
}

static RX: Mutex<Option<Uplink>> = Mutex::new(None);

#[derive(Debug)]
pub enum Error {
    Irq(crate::interrupts::ioapic::Error),
    Vector(u8),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Irq(e) => write!(f, "cannot route COM2's interrupt: {e}"),
            Error::Vector(v) => write!(f, "vector {v:#x} is taken"),
        }
    }
}

/// Sets up COM2 with its receive interrupt routed to the boot CPU.
pub fn init(acpi: &crate::acpi::Acpi) -> Result<(), Error> {
    // SAFETY: COM2 is the standard second 16550 port; only this module
    // drives it. `init` enables its receive-data interrupt.
    let mut port = unsafe { SerialPort::new(COM2) };
    port.init();
    let limits = Limits { max_len: MAX_PAYLOAD, timeout_us: FRAME_TIMEOUT_US };
    let receiver = Receiver::new(limits, crate::time::uptime_us());
    *RX.lock() = Some(Uplink { port, receiver, taken: 0, refused: 0, skipped: 0 });
    crate::interrupts::idt::set_handler(VECTOR, receive).map_err(Error::Vector)?;
    let (gsi, trigger, polarity) = crate::interrupts::ioapic::isa_irq(acpi, ISA_IRQ);
    crate::interrupts::ioapic::route(acpi, gsi, VECTOR, crate::interrupts::apic::id(), trigger, polarity)
        .map_err(Error::Irq)
}

fn line_status() -> u8 {
    // SAFETY: reading COM2's LSR only clears its error bits, which this
    // module alone reads.
    unsafe { PortReadOnly::<u8>::new(COM2 + 5).read() }
}

fn read_received() -> u8 {
    // SAFETY: reading RBR takes the byte that LSR said waits.
    unsafe { PortReadOnly::<u8>::new(COM2).read() }
}

fn set_receive_interrupt(on: bool) {
    let ier = if on { IER_RECEIVED_DATA } else { 0 };
    // SAFETY: COM2's IER; this module enables no other interrupt of it.
    unsafe { PortWriteOnly::<u8>::new(COM2 + 1).write(ier) };
}

/// Receive interrupt: move the UART's bytes into the ring while it has room.
fn receive(_: &mut crate::interrupts::idt::TrapFrame) {
    loop {
        let status = line_status();
        if status & LSR_ERRORS != 0 {
            LOSS_SEEN.store(true, Ordering::Relaxed);
        }
        if status & LSR_DATA_READY == 0 {
            return;
        }
        let head = HEAD.load(Ordering::Relaxed);
        let next = (head + 1) % RING;
        if next == TAIL.load(Ordering::Acquire) {
            // Full: the byte stays in the UART, which then holds the
            // sender back (see the module comment); `poll` turns the
            // interrupt on again once it has made room.
            set_receive_interrupt(false);
            STOPPED.store(true, Ordering::Release);
            HELD_BACK.fetch_add(1, Ordering::Relaxed);
            RING_HIGH.store(RING - 1, Ordering::Relaxed);
            return;
        }
        let entry = read_received() as u16 | if LOSS_SEEN.swap(false, Ordering::Relaxed) { DAMAGED } else { 0 };
        let ring = &raw mut RING_BUF;
        // SAFETY: only this handler writes slot `head`, which `poll`
        // does not read until HEAD moves past it.
        unsafe { (*ring)[head] = entry };
        HEAD.store(next, Ordering::Release);
        RING_HIGH.fetch_max((next + RING - TAIL.load(Ordering::Relaxed)) % RING, Ordering::Relaxed);
    }
}

fn take_byte() -> Option<Byte> {
    let tail = TAIL.load(Ordering::Relaxed);
    let head = HEAD.load(Ordering::Acquire);
    if tail == head {
        return None;
    }
    let ring = &raw const RING_BUF;
    // SAFETY: the slot at `tail` was published by the handler (HEAD past it).
    let entry = unsafe { (*ring)[tail] };
    TAIL.store((tail + 1) % RING, Ordering::Release);
    // Half the ring free before the handler takes bytes again, so that
    // the interrupt is not toggled for every byte.
    let free = RING - 1 - (head + RING - tail - 1) % RING;
    if STOPPED.load(Ordering::Acquire) && free >= RING / 2 {
        // Without interrupts: the handler must not stop reception between
        // the flag and the register.
        x86_64::instructions::interrupts::without_interrupts(|| {
            STOPPED.store(false, Ordering::Relaxed);
            set_receive_interrupt(true);
        });
    }
    Some(Byte { value: entry as u8, damaged: entry & DAMAGED != 0 })
}

/// Decodes what arrived; answers every frame; refuses a frame that
/// stopped. Called from thread context when the shell is idle.
pub fn poll() {
    if HOLDING.load(Ordering::Acquire) {
        return;
    }
    let mut guard = RX.lock();
    let Some(up) = guard.as_mut() else { return };
    loop {
        let out = match up.receiver.next(&mut take_byte, crate::time::uptime_us) {
            Some(out) => out,
            None => match up.receiver.idle(crate::time::uptime_us()) {
                Some(out) => out,
                None => return,
            },
        };
        answer(up, out);
    }
}

/// `upload hold`: stop decoding; the ring, then the UART, then the sender
/// keep what comes.
pub fn hold() {
    HOLDING.store(true, Ordering::Release);
}

/// `upload release`: decode again, from what waited.
pub fn release() {
    if let Some(up) = RX.lock().as_mut() {
        up.receiver.restart_clock(crate::time::uptime_us());
    }
    HOLDING.store(false, Ordering::Release);
}

/// The figures `upload` shows.
pub fn stats() -> Stats {
    let (taken, refused, skipped) = RX.lock().as_ref().map_or((0, 0, 0), |up| (up.taken, up.refused, up.skipped));
    let used = (HEAD.load(Ordering::Acquire) + RING - TAIL.load(Ordering::Acquire)) % RING;
    Stats {
        taken,
        refused,
        skipped,
        ring_used: used,
        ring_size: RING - 1,
        ring_high: RING_HIGH.load(Ordering::Relaxed),
        held_back: HELD_BACK.load(Ordering::Relaxed),
        holding: HOLDING.load(Ordering::Acquire),
    }
}

fn answer(up: &mut Uplink, out: Output) {
    let port = &mut up.port;
    match out {
        Output::Frame { number, command, payload } => match complete(number, command, payload) {
            Ok(reply) => {
                up.taken += 1;
                send(port, &reply)
            }
            Err(reason) => {
                up.refused += 1;
                refuse(port, number, reason)
            }
        },
        Output::Refused { number, error, .. } => {
            up.refused += 1;
            refuse(port, number, Refusal(&error))
        }
        Output::Skipped { bytes, lost } => {
            up.skipped += bytes as u64;
            if lost {
                log::warn!("upload: skipped {bytes} bytes outside any frame, and the UART lost bytes after them")
            } else {
                log::warn!("upload: skipped {bytes} bytes outside any frame")
            }
        }
    }
}

/// Logs the refusal on COM1 before answering it on COM2, so that a host
/// holding the answer finds the log line already written.
fn refuse(port: &mut SerialPort, number: u32, reason: impl Display) {
    let reason = reason.to_string();
    log::warn!("upload: refused frame {number}: {reason}");
    send(port, &alloc::format!("{REPLY_ERROR}{reason}\n"));
}

fn send(port: &mut SerialPort, text: &str) {
    for b in text.bytes() {
        port.send_raw(b);
    }
}

/// Keeps guest file upload `number` (`uploads/<name>` for VMs).
fn complete_guest(number: u32, payload: &[u8]) -> Result<String, String> {
    let (name, file) = plugins::upload::guest_file(payload).map_err(|e| alloc::format!("{e}"))?;
    log::info!("upload: frame {number}: received guest file {name} ({} bytes)", file.len());
    super::guest_files::add(name, file);
    Ok(alloc::format!("ok stored guest file uploads/{name} ({} bytes)\n{REPLY_END}\n", file.len()))
}

/// Takes upload `number`. A plugin's reply lists every loaded plugin with its load address (for
/// debuggers); a refusal is its reason.
fn complete(number: u32, command: Command, file: Vec<u8>) -> Result<String, String> {
    match command {
        Command::GuestFile => complete_guest(number, &file),
        Command::Store => complete_plugin(number, false, file),
        Command::StoreAndSwap => complete_plugin(number, true, file),
    }
}

/// Verifies and stores plugin upload `number`, then (`swap`) loads it or
/// swaps it in for the loaded version.
fn complete_plugin(number: u32, swap: bool, file: Vec<u8>) -> Result<String, String> {
    // Signature, ELF structure, metadata note, ABI and relocation types are
    // checked without mapping anything; linking is checked when it loads.
    let (name, version) = loader_core::plugin::elf::verify(&file, &loader_core::plugin::elf::SIGNING_KEY)
        .and_then(loader_core::plugin::elf::Plan::parse)
        .map(|plan| (plan.metadata.name.to_string(), plan.metadata.version.to_string()))
        .map_err(|e| alloc::format!("upload refused: {e}"))?;
    let parsed = semver::Version::parse(&version)
        .map_err(|_| alloc::format!("upload refused: version `{version}` is not semver"))?;
    log::info!("upload: frame {number}: received {name} {version} ({} bytes)", file.len());
    store::add_uploaded(name.clone(), parsed, file);
    let summary = match swap {
        false => Ok(alloc::format!("stored {name} {version}")),
        true if registry::version_of(&name).is_some() => {
            registry::swap(&name, &version).map(|()| alloc::format!("swapped {name} to {version}"))
        }
        true => registry::load(&name, Some(&version)).map(|_| alloc::format!("loaded {name} {version}")),
    }
    .map_err(|e| alloc::format!("{name} {version} is stored but: {e}"))?;
    let mut out = alloc::format!("ok {summary}\n");
    for p in registry::list() {
        let path = alloc::format!("plugins/{}-{}.mvp", p.name, p.version);
        let version = p.version.to_string();
        let line = Loaded { name: &p.name, version: &version, load_address: p.base, path: &path };
        let _ = writeln!(out, "{line}");
    }
    out.push_str(REPLY_END);
    out.push('\n');
    Ok(out)
}
