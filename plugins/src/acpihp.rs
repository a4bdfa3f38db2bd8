//! Driver for QEMU's ACPI CPU hotplug register block, modern interface
//! (QEMU docs/specs/acpi_cpu_hotplug.rst; Debian ships it as
//! /usr/share/doc/qemu-system-data/specs/acpi_cpu_hotplug.rst.gz).
//!
//! It lives in the SDK because both sides need it: the loader's in-image
//! hotplug test and the cpuhp plugin drive the same block, and the SDK is
//! already `no_std` and linked by both. Port I/O goes
//! through [`PortIo`], so the protocol is host-tested against a model of the
//! block ([`tests`]); [`HwPorts`] is the real thing (ring 0 only).
//!
//! The block is 12 bytes at an I/O base the firmware declares in the DSDT
//! (`OperationRegion (PRST, SystemIO, base, 0x0C)`; 0x0cd8 on q35/ICH9,
//! 0xaf00 on pc/PIIX4): the loader finds it with [`find_in_dsdt`] and hands
//! it to plugins through `mv_acpi_cpu_hotplug_base`. QEMU signals events with
//! GPE0 bit [`GPE_BIT`] through the SCI.

use x86_64::instructions::port::Port;

/// The GPE0 bit QEMU raises for CPU hotplug events ("ACPI BIOS GPE.2
/// handler is dedicated for notifying OS about CPU hot-add and hot-remove
/// events").
pub const GPE_BIT: u32 = 2;

/// Length of the modern block (ACPI_CPU_HOTPLUG_REG_LEN).
pub const BLOCK_LEN: u16 = 12;

/// Register offsets (spec, "Modern ACPI CPU hotplug interface registers").
mod reg {
    /// Write: CPU selector (DWORD). Read: command data 2 (DWORD).
    pub const SELECTOR: u16 = 0x0;
    pub const DATA2: u16 = 0x0;
    /// Read: status fields; write: control fields (byte).
    pub const FLAGS: u16 = 0x4;
    /// Write: command field (byte).
    pub const COMMAND: u16 = 0x5;
    /// Command data (DWORD), read and write.
    pub const DATA: u16 = 0x8;
}

/// Status bits read at offset 4.
mod status {
    pub const ENABLED: u8 = 1 << 0;
    pub const INSERT: u8 = 1 << 1;
    pub const REMOVE: u8 = 1 << 2;
}

/// Control bits written at offset 4 (bit 0 and 5-7 must be written 0).
mod control {
    pub const CLEAR_INSERT: u8 = 1 << 1;
    pub const CLEAR_REMOVE: u8 = 1 << 2;
    pub const EJECT: u8 = 1 << 3;
}

/// Commands written at offset 5.
mod command {
    pub const NEXT_WITH_EVENT: u8 = 0;
    pub const OST_EVENT: u8 = 1;
    pub const OST_STATUS: u8 = 2;
    pub const CPU_ID: u8 = 3;
}

/// Port I/O as the driver needs it; accesses are little-endian as the
/// spec requires (x86 `in`/`out` are).
pub trait PortIo {
    fn read8(&mut self, port: u16) -> u8;
    fn read32(&mut self, port: u16) -> u32;
    fn write8(&mut self, port: u16, value: u8);
    fn write32(&mut self, port: u16, value: u32);
}

/// The machine's I/O ports. Ring 0 only (the loader and plugins run there).
pub struct HwPorts;

impl PortIo for HwPorts {
    fn read8(&mut self, port: u16) -> u8 {
        // SAFETY: `in` from the hotplug block has no effect on memory; the
        // driver only addresses the block it was given.
        unsafe { Port::<u8>::new(port).read() }
    }

    fn read32(&mut self, port: u16) -> u32 {
        // SAFETY: as in `read8`.
        unsafe { Port::<u32>::new(port).read() }
    }

    fn write8(&mut self, port: u16, value: u8) {
        // SAFETY: as in `read8`; the block's writes affect only the device.
        unsafe { Port::<u8>::new(port).write(value) }
    }

    fn write32(&mut self, port: u16, value: u32) {
        // SAFETY: as in `write8`.
        unsafe { Port::<u32>::new(port).write(value) }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The modern interface did not answer after the switch: the block is
    /// legacy-only or absent (spec, "Detecting and enabling modern CPU
    /// hotplug interface", step 4).
    NotModern,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::NotModern => write!(f, "the CPU hotplug block has no modern interface (legacy or absent)"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A CPU was plugged in (`device_add`): bring it up, then report with
    /// [`Ost::insert`] and clear with [`CpuHotplug::ack`].
    Insert,
    /// The host asks for the CPU back (`device_del`): tear it down, then
    /// [`CpuHotplug::eject`] it, or refuse with [`Ost::eject_refused`].
    Remove,
}

/// One CPU with a pending event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The block's CPU selector: QEMU's index among the possible CPUs.
    pub selector: u32,
    pub kind: EventKind,
    /// Architecture specific CPU id: the APIC id on x86.
    pub apic_id: u64,
}

/// An _OST report (ACPI 6.5, 6.3.5 "_OST (OSPM Status Indication)"): the
/// source event and the status code. QEMU forwards each as a QMP
/// `ACPI_DEVICE_OST` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ost {
    pub event: u32,
    pub status: u32,
}

/// _OST source events (ACPI 6.5, table 6.13): the Notify values QEMU's AML
/// sends, and OSPM's ejection processing.
pub mod ost_event {
    pub const DEVICE_CHECK: u32 = 0x01;
    pub const EJECT_REQUEST: u32 = 0x03;
    pub const EJECT_PROCESSING: u32 = 0x103;
}

/// _OST status codes (ACPI 6.5, tables 6.14-6.16).
pub mod ost_status {
    pub const SUCCESS: u32 = 0x0;
    pub const FAILURE: u32 = 0x1;
    /// For an eject request.
    pub const EJECT_NOT_SUPPORTED: u32 = 0x80;
    pub const DEVICE_IN_USE: u32 = 0x81;
    pub const DEVICE_BUSY: u32 = 0x82;
    pub const EJECT_DEPENDENCY_BUSY: u32 = 0x83;
    pub const EJECT_IN_PROGRESS: u32 = 0x84;
    /// For a device check (insertion).
    pub const INSERT_IN_PROGRESS: u32 = 0x80;
    pub const DRIVER_LOAD_FAILURE: u32 = 0x81;
    pub const INSERT_NOT_SUPPORTED: u32 = 0x82;
}

impl Ost {
    /// The outcome of an insertion: success, or `status` (e.g.
    /// [`ost_status::DRIVER_LOAD_FAILURE`] when bring-up failed).
    pub const fn insert(status: u32) -> Ost {
        Ost { event: ost_event::DEVICE_CHECK, status }
    }

    /// The CPU was torn down and ejected (what Linux reports after _EJ0).
    pub const EJECTED: Ost = Ost { event: ost_event::EJECT_PROCESSING, status: ost_status::SUCCESS };

    /// The eject request is refused with `status` (e.g.
    /// [`ost_status::DEVICE_BUSY`] when a teardown refused).
    pub const fn eject_refused(status: u32) -> Ost {
        Ost { event: ost_event::EJECT_REQUEST, status }
    }
}

/// The driver: one block at `base`. Not `Sync` on purpose: the selector is
/// shared state of the block, so one owner (with its own lock) drives it.
pub struct CpuHotplug<P: PortIo> {
    io: P,
    base: u16,
}

impl<P: PortIo> CpuHotplug<P> {
    /// Switches the block to the modern interface and checks that it
    /// answers (spec, "Detecting and enabling modern CPU hotplug
    /// interface"). Idempotent: after the switch, the first write is an
    /// ordinary selector write.
    pub fn modern(io: P, base: u16) -> Result<CpuHotplug<P>, Error> {
        let mut hp = CpuHotplug { io, base };
        // 1. A 0 written to the legacy bitmap's first DWORD switches modes.
        hp.select(0);
        // 2. Again, to leave a valid selector in the modern block.
        hp.select(0);
        // 3-4. Command 0 makes 'command data 2' read 0 in modern mode; the
        //      legacy bitmap reads bit 0 set (the boot CPU), none reads ~0.
        hp.command(command::NEXT_WITH_EVENT);
        if hp.io.read32(base + reg::DATA2) != 0 {
            return Err(Error::NotModern);
        }
        Ok(hp)
    }

    fn select(&mut self, selector: u32) {
        self.io.write32(self.base + reg::SELECTOR, selector);
    }

    fn command(&mut self, c: u8) {
        self.io.write8(self.base + reg::COMMAND, c);
    }

    /// The next CPU with a pending insert or remove event, if any (spec,
    /// "Get a cpu with pending event"). An insert is reported before a
    /// remove of the same CPU. The event stays pending until [`Self::ack`].
    pub fn next_event(&mut self) -> Option<Event> {
        self.select(0);
        self.command(command::NEXT_WITH_EVENT);
        let flags = self.io.read8(self.base + reg::FLAGS);
        let kind = if flags & status::INSERT != 0 {
            EventKind::Insert
        } else if flags & status::REMOVE != 0 {
            EventKind::Remove
        } else {
            return None;
        };
        let selector = self.io.read32(self.base + reg::DATA);
        Some(Event { selector, kind, apic_id: self.arch_id(selector) })
    }

    /// The APIC id of the CPU at `selector` (command 3).
    pub fn arch_id(&mut self, selector: u32) -> u64 {
        self.select(selector);
        self.command(command::CPU_ID);
        let low = self.io.read32(self.base + reg::DATA) as u64;
        let high = self.io.read32(self.base + reg::DATA2) as u64;
        low | high << 32
    }

    /// Whether a CPU is plugged in at `selector` (status bit 0).
    pub fn is_enabled(&mut self, selector: u32) -> bool {
        self.select(selector);
        self.io.read8(self.base + reg::FLAGS) & status::ENABLED != 0
    }

    /// Clears the event `e` reported (control bit 1 or 2).
    pub fn ack(&mut self, e: &Event) {
        self.select(e.selector);
        let bit = match e.kind {
            EventKind::Insert => control::CLEAR_INSERT,
            EventKind::Remove => control::CLEAR_REMOVE,
        };
        self.io.write8(self.base + reg::FLAGS, bit);
    }

    /// Ejects the CPU at `selector` (control bit 3): QEMU unplugs it at
    /// once, so it must be parked first. QEMU ignores an eject of the first
    /// CPU or of an empty slot; [`Self::is_enabled`] tells afterwards.
    pub fn eject(&mut self, selector: u32) {
        self.select(selector);
        self.io.write8(self.base + reg::FLAGS, control::EJECT);
    }

    /// Reports `ost` for the CPU at `selector` (commands 1 and 2; the
    /// status write is what makes QEMU emit `ACPI_DEVICE_OST`).
    pub fn ost(&mut self, selector: u32, ost: Ost) {
        self.select(selector);
        self.command(command::OST_EVENT);
        self.io.write32(self.base + reg::DATA, ost.event);
        self.command(command::OST_STATUS);
        self.io.write32(self.base + reg::DATA, ost.status);
    }

    /// How many CPU slots the block has (`max_cpus`; spec, "Enumerate CPUs
    /// present/non present CPUs"): a selector past the last makes every
    /// register read 0, so command data stops echoing it.
    pub fn slots(&mut self) -> u32 {
        self.select(0);
        self.command(command::NEXT_WITH_EVENT);
        let mut n = 1;
        loop {
            self.select(n);
            if self.io.read32(self.base + reg::DATA) != n {
                break;
            }
            n += 1;
        }
        self.select(0);
        n
    }
}

/// GPE0 as the FADT describes it (ACPI 6.5, 4.8.4.1): the status half
/// first, then the enable half, each `len / 2` bytes; status bits are
/// cleared by writing 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gpe0 {
    pub port: u16,
    pub len: u8,
}

impl Gpe0 {
    /// Number of GPEs in the block.
    pub const fn count(&self) -> u32 {
        self.len as u32 / 2 * 8
    }

    /// The status byte's port and the bit's mask, if `gpe` is in the block.
    pub const fn status(&self, gpe: u32) -> Option<(u16, u8)> {
        if gpe >= self.count() {
            return None;
        }
        Some((self.port + (gpe / 8) as u16, 1 << (gpe % 8)))
    }

    /// The enable byte's port and the bit's mask.
    pub const fn enable(&self, gpe: u32) -> Option<(u16, u8)> {
        match self.status(gpe) {
            Some((p, m)) => Some((p + self.len as u16 / 2, m)),
            None => None,
        }
    }
}

/// Finds the CPU hotplug block's I/O base in a DSDT's AML: QEMU declares
/// `OperationRegion (PRST, SystemIO, base, len)` (hw/acpi/cpu.c,
/// build_cpus_aml), encoded as ExtOpPrefix 0x5B, OpRegionOp 0x80, the
/// NameSeg, RegionSpace 0x01 and two integers (ACPI 6.5, 20.2.5.2; 20.2.3
/// for the integer prefixes). Reading the firmware's own description avoids
/// guessing the machine: it gives 0x0cd8 on q35 and 0xaf00 on pc, and
/// nothing on machines without the block. A region shorter than the modern
/// block is refused.
pub fn find_in_dsdt(aml: &[u8]) -> Option<u16> {
    block_at(aml, aml.windows(PRST_HEAD.len()).position(|w| w == PRST_HEAD)?)
}

/// The start of the block's OperationRegion in AML, up to its integers.
pub const PRST_HEAD: [u8; 7] = [0x5b, 0x80, b'P', b'R', b'S', b'T', 0x01];

/// The block's I/O base from the OperationRegion at `pos` (where
/// [`PRST_HEAD`] starts), for scanners that look for several things in one
/// pass over the DSDT.
pub fn block_at(aml: &[u8], pos: usize) -> Option<u16> {
    let at = pos + PRST_HEAD.len();
    let (base, used) = aml_integer(aml.get(at..)?)?;
    let (len, _) = aml_integer(&aml[at + used..])?;
    if len < BLOCK_LEN as u64 || base > u16::MAX as u64 - BLOCK_LEN as u64 {
        return None;
    }
    Some(base as u16)
}

/// An AML integer constant and its encoded length: Zero, One, or a Byte,
/// Word or DWord prefix and the value.
fn aml_integer(b: &[u8]) -> Option<(u64, usize)> {
    let le = |n: usize| -> Option<(u64, usize)> {
        let bytes = b.get(1..1 + n)?;
        Some((bytes.iter().rev().fold(0u64, |v, &x| v << 8 | x as u64), 1 + n))
    };
    match *b.first()? {
        0x00 => Some((0, 1)),
        0x01 => Some((1, 1)),
        0x0a => le(1),
        0x0b => le(2),
        0x0c => le(4),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
