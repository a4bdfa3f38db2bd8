//! The ACPI SCI and deferred work. The SCI (FADT SCI_INT, with the MADT
//! override's trigger and polarity) is routed to [`VECTOR`] on the boot CPU.
//! Its handler only latches: for every GPE0 bit that is both raised and
//! enabled it clears the status bit (write 1, ACPI 6.5 4.8.4.1.1), so the
//! level-triggered SCI drops, and marks the GPE pending. The GPE's handler
//! then runs in thread context from [`run_pending`], which the shell calls
//! when idle (and tests call while they wait): handlers may take locks, send
//! IPIs and wait, as bringing up a CPU does. Plugins queue their own thread
//! context work the same way with `mv_defer`.
//!
//! No plugin code runs in interrupt context, so a swap never meets a plugin
//! frame inside an interrupt. The cost: a GPE is served only when the shell
//! idles, not while a command runs. QEMU's CPU hotplug events stay latched
//! in its register block until acknowledged, so nothing is lost meanwhile.

#[cfg(feature = "ktest")]
mod ktests;

use crate::interrupts::idt::TrapFrame;
use core::sync::atomic::{AtomicU64, Ordering};
use loader_core::acpi::sci::{Error as TableError, GpeTable, Queue, Work};
use plugins::acpihp::Gpe0;
use spin::{Mutex, Once};
use x86_64::instructions::interrupts::without_interrupts;
use x86_64::instructions::port::Port;

pub const VECTOR: u8 = 0x41;

/// A call to make in thread context.
#[derive(Clone, Copy)]
pub struct Call {
    pub f: extern "C" fn(usize),
    pub ctx: usize,
}

static GPE0: Once<Gpe0> = Once::new();
/// Handlers by GPE. Taken with interrupts off: `mv_defer` may be called
/// from interrupt context, and the table's lock sits beside the queue's.
static TABLE: Mutex<GpeTable<Call>> = Mutex::new(GpeTable::new(0));
static QUEUE: Mutex<Queue<Call, 64>> = Mutex::new(Queue::new());
/// GPEs whose status the SCI handler cleared and whose handler is due.
static PENDING: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
pub enum Error {
    NoGpe0,
    Irq(crate::interrupts::ioapic::Error),
    Vector(u8),
    Table(TableError),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::NoGpe0 => write!(f, "the FADT has no GPE0 block"),
            Error::Irq(e) => write!(f, "cannot route the SCI: {e}"),
            Error::Vector(v) => write!(f, "vector {v:#x} is taken"),
            Error::Table(e) => write!(f, "{e}"),
        }
    }
}

/// Disables and clears every GPE0 bit, then routes the SCI.
pub fn init(acpi: &crate::acpi::Acpi) -> Result<(), Error> {
    let gpe0 = acpi.gpe0.map(|g| Gpe0 { port: g.port, len: g.len }).ok_or(Error::NoGpe0)?;
    let half = gpe0.len as u16 / 2;
    for i in 0..half {
        // SAFETY: enable byte `i` of the FADT's GPE0 block; all off, so
        // nothing fires before someone handles it.
        unsafe { gpe_write(gpe0.port + half + i, 0) };
        // SAFETY: status byte `i` of the block; writing 1s clears every
        // bit, of GPEs that are all disabled now.
        unsafe { gpe_write(gpe0.port + i, 0xff) };
    }
    GPE0.call_once(|| gpe0);
    *TABLE.lock() = GpeTable::new(gpe0.count());
    crate::interrupts::idt::set_handler(VECTOR, sci).map_err(Error::Vector)?;
    let (gsi, trigger, polarity) = crate::interrupts::ioapic::sci(acpi);
    crate::interrupts::ioapic::route(acpi, gsi, VECTOR, crate::interrupts::apic::id(), trigger, polarity)
        .map_err(Error::Irq)
}

fn sci(_: &mut TrapFrame) {
    let Some(g) = GPE0.get() else { return };
    let half = g.len as u16 / 2;
    for i in 0..half {
        let (status, enable) = (g.port + i, g.port + half + i);
        // SAFETY: status byte `i` of the FADT's GPE0 block.
        let raised = unsafe { gpe_read(status) };
        // SAFETY: the matching enable byte.
        let raised = raised & unsafe { gpe_read(enable) };
        if raised != 0 {
            // SAFETY: the status byte again; writing the raised bits back
            // clears exactly those, of GPEs whose handlers are now due.
            unsafe { gpe_write(status, raised) };
        }
        PENDING.fetch_or((raised as u64) << (8 * i), Ordering::AcqRel);
    }
}

fn set_enable(gpe: u32, on: bool) {
    let Some((port, mask)) = GPE0.get().and_then(|g| g.enable(gpe)) else { return };
    // Interrupts are off so that the SCI handler does not split the
    // read-modify-write.
    without_interrupts(|| {
        // SAFETY: the GPE's enable byte in the FADT's GPE0 block.
        let v = unsafe { gpe_read(port) };
        // SAFETY: the same byte, changed only in the GPE's own bit, which
        // its registration (or its removal) asks for.
        unsafe { gpe_write(port, if on { v | mask } else { v & !mask }) };
    });
}

/// Reads a byte of the GPE0 block.
///
/// # Safety
/// `port` must be a status or enable byte of the FADT's GPE0 block: reading
/// either has no side effects.
unsafe fn gpe_read(port: u16) -> u8 {
    // SAFETY: a GPE0 register (caller contract), read without side effects.
    unsafe { Port::<u8>::new(port).read() }
}

/// Writes a byte of the GPE0 block: on a status byte the 1s of `v` clear
/// those status bits, on an enable byte `v` is the new set of enabled GPEs.
///
/// # Safety
/// `port` must be a status or enable byte of the FADT's GPE0 block, and the
/// caller must mean that effect: a GPE is enabled only once something
/// handles it, and a status bit is cleared only when its GPE is disabled or
/// its handler is due.
unsafe fn gpe_write(port: u16, v: u8) {
    // SAFETY: a GPE0 register with a value the caller stands for.
    unsafe { Port::<u8>::new(port).write(v) }
}

/// Runs `call` in thread context each time `gpe` fires, and enables it.
/// A status bit already raised fires at once.
pub fn register(owner: u64, gpe: u32, call: Call) -> Result<(), Error> {
    without_interrupts(|| TABLE.lock().register(gpe, Work { owner, payload: call })).map_err(Error::Table)?;
    set_enable(gpe, true);
    Ok(())
}

pub fn unregister(owner: u64, gpe: u32) -> Result<(), Error> {
    without_interrupts(|| TABLE.lock().unregister(gpe, owner)).map_err(Error::Table)?;
    set_enable(gpe, false);
    Ok(())
}

/// Queues `call` for thread context; callable from interrupt context.
pub fn defer(owner: u64, call: Call) -> Result<(), Error> {
    without_interrupts(|| QUEUE.lock().push(Work { owner, payload: call })).map_err(Error::Table)
}

/// Forgets everything `owner` registered or queued (it is going away).
pub fn drop_owner(owner: u64) {
    let gpes = without_interrupts(|| {
        QUEUE.lock().drop_owner(owner);
        TABLE.lock().drop_owner(owner)
    });
    for gpe in (0..64).filter(|g| gpes & 1 << g != 0) {
        set_enable(gpe, false);
    }
}

/// Runs the handlers of pending GPEs, then queued work, in thread context.
pub fn run_pending() {
    let mut pending = PENDING.swap(0, Ordering::AcqRel);
    while pending != 0 {
        let gpe = pending.trailing_zeros();
        pending &= pending - 1;
        if let Some(w) = without_interrupts(|| TABLE.lock().handler(gpe)) {
            call(w);
        }
    }
    while let Some(w) = without_interrupts(|| QUEUE.lock().pop()) {
        call(w);
    }
}

fn call(w: Work<Call>) {
    let Call { f, ctx } = w.payload;
    if w.owner == 0 {
        f(ctx);
        return;
    }
    let Some(name) = crate::plugin::registry::active_name(w.owner) else { return };
    crate::smp::enter_unstoppable();
    let r = crate::plugin::guard::call(w.owner, &name, || f(ctx));
    crate::smp::exit_unstoppable();
    if let Err(message) = r {
        log::error!("{name} panicked in deferred work: {message}; its GPE handlers and queued work are dropped");
        drop_owner(w.owner);
    }
}
