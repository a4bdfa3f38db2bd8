//! IOAPIC routing of global system interrupts (GSIs) to vectors on a chosen
//! CPU, honouring the MADT's interrupt source overrides for ISA IRQs. The
//! legacy 8259 PICs are masked: all device interrupts come through here.
//! Register layout: Intel 82093AA datasheet, 3.2.

use crate::acpi::{Acpi, IoApic};
use spin::Mutex;
use x86_64::instructions::port::Port;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Edge,
    Level,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polarity {
    High,
    Low,
}

#[derive(Debug)]
pub enum Error {
    NoIoApicFor(u32),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::NoIoApicFor(gsi) => write!(f, "no IOAPIC serves GSI {gsi}"),
        }
    }
}

/// Serialises the select/window register pair.
static LOCK: Mutex<()> = Mutex::new(());

fn reg_read(io: &IoApic, reg: u32) -> u32 {
    select(io, reg);
    // SAFETY: IOWIN at +0x10 of the identity-mapped IOAPIC page, showing
    // register `reg`; callers hold LOCK so nobody selected another since.
    unsafe { core::ptr::read_volatile((io.address + 0x10) as *const u32) }
}

fn reg_write(io: &IoApic, reg: u32, value: u32) {
    select(io, reg);
    // SAFETY: as in `reg_read`; callers write only registers they own.
    unsafe { core::ptr::write_volatile((io.address + 0x10) as *mut u32, value) };
}

/// Points IOWIN at register `reg`. Callers hold LOCK up to their IOWIN
/// access.
fn select(io: &IoApic, reg: u32) {
    // SAFETY: IOREGSEL at +0 of the identity-mapped IOAPIC page; selecting
    // a register has no other effect.
    unsafe { core::ptr::write_volatile(io.address as *mut u32, reg) };
}

/// Number of redirection entries of `io` (IOAPICVER bits 23:16, plus one).
fn entries(io: &IoApic) -> u32 {
    let _g = LOCK.lock();
    ((reg_read(io, 1) >> 16) & 0xff) + 1
}

fn find(acpi: &Acpi, gsi: u32) -> Result<(IoApic, u32), Error> {
    acpi.ioapics
        .iter()
        .flatten()
        .find(|io| gsi >= io.gsi_base && gsi < io.gsi_base + entries(io))
        .map(|io| (*io, gsi - io.gsi_base))
        .ok_or(Error::NoIoApicFor(gsi))
}

/// Masks every redirection entry and both 8259 PICs.
pub fn init(acpi: &Acpi) {
    // SAFETY: OCW1 to the master PIC's data port masks all its lines.
    unsafe { Port::<u8>::new(0x21).write(0xff) };
    // SAFETY: likewise for the slave PIC.
    unsafe { Port::<u8>::new(0xa1).write(0xff) };
    for io in acpi.ioapics.iter().flatten() {
        for pin in 0..entries(io) {
            mask_pin(io, pin);
        }
    }
}

fn mask_pin(io: &IoApic, pin: u32) {
    let _g = LOCK.lock();
    let low = reg_read(io, 0x10 + 2 * pin);
    reg_write(io, 0x10 + 2 * pin, low | (1 << 16));
}

/// Routes `gsi` to `vector` on the CPU with APIC id `dest` (fixed delivery,
/// physical destination) and unmasks it.
pub fn route(acpi: &Acpi, gsi: u32, vector: u8, dest: u32, trigger: Trigger, polarity: Polarity) -> Result<(), Error> {
    let (io, pin) = find(acpi, gsi)?;
    let low = vector as u32
        | if polarity == Polarity::Low { 1 << 13 } else { 0 }
        | if trigger == Trigger::Level { 1 << 15 } else { 0 };
    let _g = LOCK.lock();
    // High half first, so the entry is never live with a stale destination.
    reg_write(&io, 0x11 + 2 * pin, dest << 24);
    reg_write(&io, 0x10 + 2 * pin, low);
    Ok(())
}

/// The redirection entry of `gsi`, high half in bits 63:32.
#[cfg(feature = "ktest")]
pub fn entry(acpi: &Acpi, gsi: u32) -> Result<u64, Error> {
    let (io, pin) = find(acpi, gsi)?;
    let _g = LOCK.lock();
    Ok((reg_read(&io, 0x11 + 2 * pin) as u64) << 32 | reg_read(&io, 0x10 + 2 * pin) as u64)
}

#[cfg(feature = "ktest")]
pub fn mask(acpi: &Acpi, gsi: u32) -> Result<(), Error> {
    let (io, pin) = find(acpi, gsi)?;
    mask_pin(&io, pin);
    Ok(())
}

/// The GSI, trigger and polarity of ISA IRQ `irq`: identity, edge, active
/// high, unless the MADT overrides it (MPS INTI flags, ACPI 6.5 5.2.12.5).
pub fn isa_irq(acpi: &Acpi, irq: u8) -> (u32, Trigger, Polarity) {
    match acpi.overrides.iter().flatten().find(|o| o.irq == irq) {
        None => (irq as u32, Trigger::Edge, Polarity::High),
        Some(o) => {
            let polarity = if o.flags & 0b11 == 0b11 { Polarity::Low } else { Polarity::High };
            let trigger = if (o.flags >> 2) & 0b11 == 0b11 { Trigger::Level } else { Trigger::Edge };
            (o.gsi, trigger, polarity)
        }
    }
}

/// The GSI, trigger and polarity of the ACPI SCI. ACPI 6.5, 5.2.9 (SCI_INT)
/// makes it level, active low; a MADT override of its IRQ may say otherwise
/// (QEMU's says active high), and an override field left at "conforms to the
/// bus" (0) keeps the SCI's own default, as Linux reads it too.
pub fn sci(acpi: &Acpi) -> (u32, Trigger, Polarity) {
    let irq = acpi.sci_gsi;
    match acpi.overrides.iter().flatten().find(|o| o.irq as u32 == irq) {
        None => (irq, Trigger::Level, Polarity::Low),
        Some(o) => {
            let polarity = if o.flags & 0b11 == 0b01 { Polarity::High } else { Polarity::Low };
            let trigger = if (o.flags >> 2) & 0b11 == 0b01 { Trigger::Edge } else { Trigger::Level };
            (o.gsi, trigger, polarity)
        }
    }
}
