//! Plugin upload over COM2: the host sends `plugins::upload` frames; the
//! receive interrupt only moves bytes into a ring, and `poll` (called by the
//! shell when idle) decodes, verifies and stores them, then replies on COM2.
//! A corrupt, unsigned or otherwise bad upload is refused and changes
//! nothing.

use crate::plugin::{registry, store};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicUsize, Ordering};
use plugins::upload::{Command, Decoder, Event, Loaded, REPLY_END};
use spin::Mutex;
use uart_16550::SerialPort;
use x86_64::instructions::port::PortReadOnly;

const COM2: u16 = 0x2f8;
const ISA_IRQ: u8 = 3;
pub const VECTOR: u8 = 0x40;
/// Largest plugin file accepted.
const MAX_UPLOAD: u32 = 4 << 20;

/// Bytes received by the interrupt handler and not yet decoded. The
/// handler is the only writer of `HEAD`, `poll` the only writer of `TAIL`.
const RING: usize = 64 * 1024;
static mut RING_BUF: [u8; RING] = [0; RING];
static HEAD: AtomicUsize = AtomicUsize::new(0);
static TAIL: AtomicUsize = AtomicUsize::new(0);

struct Receiver {
    port: SerialPort,
    decoder: Decoder,
    payload: Vec<u8>,
}

static RX: Mutex<Option<Receiver>> = Mutex::new(None);

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
    *RX.lock() = Some(Receiver { port, decoder: Decoder::new(MAX_UPLOAD), payload: Vec::new() });
    crate::interrupts::idt::set_handler(VECTOR, receive).map_err(Error::Vector)?;
    let (gsi, trigger, polarity) = crate::interrupts::ioapic::isa_irq(acpi, ISA_IRQ);
    crate::interrupts::ioapic::route(acpi, gsi, VECTOR, crate::interrupts::apic::id(), trigger, polarity)
        .map_err(Error::Irq)
}

/// Receive interrupt: drain the UART into the ring.
fn receive(_: &mut crate::interrupts::idt::TrapFrame) {
    // SAFETY: LSR bit 0 says a byte waits; reading RBR takes it.
    let ready = || unsafe { PortReadOnly::<u8>::new(COM2 + 5).read() } & 1 != 0;
    while ready() {
        // SAFETY: as above.
        let b = unsafe { PortReadOnly::<u8>::new(COM2).read() };
        let head = HEAD.load(Ordering::Relaxed);
        let next = (head + 1) % RING;
        // A full ring drops the byte; the frame's CRC then fails and the
        // host is told to send again.
        if next != TAIL.load(Ordering::Acquire) {
            let ring = &raw mut RING_BUF;
            // SAFETY: only this handler writes slot `head`, which `poll`
            // does not read until HEAD moves past it.
            unsafe { (*ring)[head] = b };
            HEAD.store(next, Ordering::Release);
        }
    }
}

fn take_byte() -> Option<u8> {
    let tail = TAIL.load(Ordering::Relaxed);
    if tail == HEAD.load(Ordering::Acquire) {
        return None;
    }
    let ring = &raw const RING_BUF;
    // SAFETY: the slot at `tail` was published by the handler (HEAD past it).
    let b = unsafe { (*ring)[tail] };
    TAIL.store((tail + 1) % RING, Ordering::Release);
    Some(b)
}

/// Decodes what arrived; completes uploads. Called from thread context.
pub fn poll() {
    let mut guard = RX.lock();
    let Some(rx) = guard.as_mut() else { return };
    while let Some(b) = take_byte() {
        match rx.decoder.feed(b) {
            Event::Pending => {}
            Event::Start { len, .. } => {
                rx.payload = Vec::with_capacity(len as usize);
            }
            Event::Data(b) => rx.payload.push(b),
            Event::Done { command } => {
                let payload = core::mem::take(&mut rx.payload);
                let reply = complete(command, payload);
                send(&mut rx.port, &reply);
            }
            Event::Error(e) => {
                rx.payload = Vec::new();
                send(&mut rx.port, &alloc::format!("error: {e}\n"));
            }
        }
    }
}

fn send(port: &mut SerialPort, text: &str) {
    for b in text.bytes() {
        port.send_raw(b);
    }
}

/// Verifies and stores an upload, then loads or swaps it if asked. The
/// reply lists every loaded plugin with its load address (for debuggers).
fn complete(command: Command, file: Vec<u8>) -> String {
    // Signature, ELF structure, metadata note, ABI and relocation types are
    // checked without mapping anything; linking is checked when it loads.
    let checked = loader_core::plugin::elf::verify(&file, &loader_core::plugin::elf::SIGNING_KEY)
        .and_then(loader_core::plugin::elf::Plan::parse)
        .map(|plan| (plan.metadata.name.to_string(), plan.metadata.version.to_string()));
    let (name, version) = match checked {
        Ok(nv) => nv,
        Err(e) => return alloc::format!("error: upload refused: {e}\n"),
    };
    let Ok(parsed) = semver::Version::parse(&version) else {
        return alloc::format!("error: upload refused: version `{version}` is not semver\n");
    };
    store::add_uploaded(name.clone(), parsed, file);
    log::info!("received {name} {version} on COM2");
    let done = match command {
        Command::Store => Ok(alloc::format!("stored {name} {version}")),
        Command::StoreAndSwap if registry::version_of(&name).is_some() => {
            registry::swap(&name, &version).map(|()| alloc::format!("swapped {name} to {version}"))
        }
        Command::StoreAndSwap => {
            registry::load(&name, Some(&version)).map(|_| alloc::format!("loaded {name} {version}"))
        }
    };
    match done {
        Err(e) => alloc::format!("error: {name} {version} is stored but: {e}\n"),
        Ok(summary) => {
            let mut out = alloc::format!("ok {summary}\n");
            for p in registry::list() {
                let path = alloc::format!("plugins/{}-{}.mvp", p.name, p.version);
                let version = p.version.to_string();
                let line = Loaded { name: &p.name, version: &version, load_address: p.base, path: &path };
                let _ = writeln!(out, "{line}");
            }
            out.push_str(REPLY_END);
            out.push('\n');
            out
        }
    }
}
