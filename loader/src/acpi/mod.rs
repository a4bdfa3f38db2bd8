//! ACPI tables through the `acpi` crate: MADT (CPUs, IOAPICs, interrupt
//! source overrides) and FADT (SCI, PM1, GPE0, PM timer, reset register),
//! plus the S5 sleep type from the DSDT for power-off.

use ::acpi::address::{AddressSpace, GenericAddress};
use ::acpi::fadt::Fadt;
use ::acpi::madt::{Madt, MadtEntry};
use ::acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use core::ptr::NonNull;
use loader_core::acpi::madt::CpuList;
use loader_core::acpi::s5::SleepType;
use spin::Once;
use x86_64::instructions::port::Port;

#[cfg(feature = "ktest")]
mod ktests;
pub mod sci;

/// All physical memory the loader touches is identity-mapped.
#[derive(Clone, Copy)]
struct IdentityMapped;

impl AcpiHandler for IdentityMapped {
    /// # Safety
    /// As the trait says: `phys..phys + size` must be a region the ACPI
    /// tables point at.
    unsafe fn map_physical_region<T>(&self, phys: usize, size: usize) -> PhysicalMapping<Self, T> {
        // SAFETY: the loader identity-maps RAM and the ACPI table areas, and
        // the crate asks only for ranges the tables point at.
        unsafe { PhysicalMapping::new(phys, NonNull::new(phys as *mut T).unwrap(), size, size, *self) }
    }

    fn unmap_physical_region<T>(_: &PhysicalMapping<Self, T>) {}
}

#[derive(Clone, Copy, Debug)]
pub struct IoApic {
    pub address: u64,
    pub gsi_base: u32,
}

/// An ISA IRQ that is not wired to the GSI of the same number.
#[derive(Clone, Copy, Debug)]
pub struct Override {
    pub irq: u8,
    pub gsi: u32,
    /// MPS INTI flags: polarity (bits 1:0) and trigger mode (bits 3:2).
    pub flags: u16,
}

#[derive(Clone, Copy, Debug)]
pub struct IoPort {
    pub port: u16,
    /// Length in bytes.
    pub len: u8,
}

pub struct Acpi {
    pub cpus: CpuList,
    pub lapic_address: u64,
    pub ioapics: [Option<IoApic>; 4],
    pub overrides: [Option<Override>; 16],
    pub sci_gsi: u32,
    pub pm1a_control: u16,
    pub pm1b_control: Option<u16>,
    pub gpe0: Option<IoPort>,
    /// ACPI PM timer port and whether it counts 32 bits (else 24).
    pub pm_timer: Option<(u16, bool)>,
    pub reset: Option<(GenericAddress, u8)>,
    pub s5: Option<SleepType>,
    /// I/O base of QEMU's CPU hotplug block, as the DSDT declares it.
    pub cpu_hotplug: Option<u16>,
}

#[derive(Debug)]
pub enum Error {
    Tables(::acpi::AcpiError),
    Madt(loader_core::acpi::madt::Error),
    NotIoSpace(&'static str),
    TooMany(&'static str),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Tables(e) => write!(f, "ACPI tables: {e:?}"),
            Error::Madt(e) => write!(f, "MADT: {e}"),
            Error::NotIoSpace(what) => write!(f, "FADT {what} is not in I/O space, which the loader requires"),
            Error::TooMany(what) => write!(f, "MADT lists more {what} than the loader supports"),
        }
    }
}

impl From<::acpi::AcpiError> for Error {
    fn from(e: ::acpi::AcpiError) -> Self {
        Error::Tables(e)
    }
}

static ACPI: Once<Acpi> = Once::new();

pub fn get() -> Option<&'static Acpi> {
    ACPI.get()
}

/// Finds the RSDP in the BIOS areas (the EBDA, whose segment is stored at
/// 0x40e, and 0xe0000-0xfffff; ACPI 6.5, 5.2.5.1). Must run while page 0 is
/// still mapped, i.e. before `memory::init` installs the loader's page tables.
pub fn search_bios_rsdp() -> Result<u64, Error> {
    // SAFETY: the boot page tables identity-map the first MiB; the crate
    // checks signature and checksum of what it finds.
    let rsdp = unsafe { ::acpi::rsdp::Rsdp::search_for_on_bios(IdentityMapped)? };
    Ok(rsdp.physical_start() as u64)
}

/// Parses the tables once, from the RSDP at `rsdp`.
pub fn init(rsdp: u64) -> Result<&'static Acpi, Error> {
    // SAFETY: identity mapping covers the RSDP and the tables; the crate
    // validates signatures and checksums.
    let tables = unsafe { AcpiTables::from_rsdp(IdentityMapped, rsdp as usize)? };
    let acpi = parse(&tables)?;
    enable_acpi_mode(&tables);
    Ok(ACPI.call_once(|| acpi))
}

fn parse(tables: &AcpiTables<IdentityMapped>) -> Result<Acpi, Error> {
    let madt = tables.find_table::<Madt>()?;
    let mut cpus = CpuList::default();
    let mut ioapics = [None; 4];
    let mut overrides = [None; 16];
    let (mut nio, mut nov) = (0, 0);
    let mut lapic_address = madt.get().local_apic_address as u64;
    let revision = madt.get().header.revision;
    for e in madt.get().entries() {
        match e {
            MadtEntry::LocalApic(l) => cpus.add(l.apic_id as u32, l.flags, revision).map_err(Error::Madt)?,
            MadtEntry::LocalX2Apic(l) => cpus.add(l.x2apic_id, l.flags, revision).map_err(Error::Madt)?,
            MadtEntry::IoApic(io) => {
                *ioapics.get_mut(nio).ok_or(Error::TooMany("IOAPICs"))? =
                    Some(IoApic { address: io.io_apic_address as u64, gsi_base: io.global_system_interrupt_base });
                nio += 1;
            }
            MadtEntry::InterruptSourceOverride(o) => {
                *overrides.get_mut(nov).ok_or(Error::TooMany("interrupt source overrides"))? =
                    Some(Override { irq: o.irq, gsi: o.global_system_interrupt, flags: o.flags });
                nov += 1;
            }
            MadtEntry::LocalApicAddressOverride(o) => lapic_address = o.local_apic_address,
            _ => {}
        }
    }

    let fadt = tables.find_table::<Fadt>()?;
    let io = |g: GenericAddress, what| match g.address_space {
        AddressSpace::SystemIo => Ok(IoPort { port: g.address as u16, len: g.bit_width / 8 }),
        _ => Err(Error::NotIoSpace(what)),
    };
    let pm1a_control = io(fadt.pm1a_control_block()?, "PM1a control block")?.port;
    let pm1b_control = match fadt.pm1b_control_block()? {
        Some(g) => Some(io(g, "PM1b control block")?.port),
        None => None,
    };
    let gpe0 = match fadt.gpe0_block()? {
        Some(g) => Some(io(g, "GPE0 block")?),
        None => None,
    };
    let flags = { fadt.flags };
    let pm_timer = match fadt.pm_timer_block()? {
        Some(g) => Some((io(g, "PM timer")?.port, flags.pm_timer_is_32_bit())),
        None => None,
    };
    let reset =
        if flags.supports_system_reset_via_fadt() { Some((fadt.reset_register()?, fadt.reset_value)) } else { None };
    let dsdt = tables.dsdt().ok().map(|d| {
        // SAFETY: the crate found the DSDT at this address with this length.
        unsafe { core::slice::from_raw_parts(d.address as *const u8, d.length as usize) }
    });
    let loader_core::acpi::dsdt::Found { s5, cpu_hotplug } =
        dsdt.map(loader_core::acpi::dsdt::scan).unwrap_or_default();
    Ok(Acpi {
        cpus,
        lapic_address,
        ioapics,
        overrides,
        sci_gsi: fadt.sci_interrupt as u32,
        pm1a_control,
        pm1b_control,
        gpe0,
        pm_timer,
        reset,
        s5,
        cpu_hotplug,
    })
}

/// Hands the ACPI hardware to the OS (SCI_EN), as the SCI and the GPE
/// blocks need. ACPI 6.5, 16.3.1: write `acpi_enable` to SMI_CMD and wait.
fn enable_acpi_mode(tables: &AcpiTables<IdentityMapped>) {
    let Ok(fadt) = tables.find_table::<Fadt>() else { return };
    let Ok(cnt) = fadt.pm1a_control_block() else { return };
    let mut pm1a_cnt = Port::<u16>::new(cnt.address as u16);
    // SAFETY: reading PM1a_CNT has no side effects.
    if unsafe { pm1a_cnt.read() } & 1 != 0 {
        return;
    }
    let (smi, value) = (fadt.smi_cmd_port, fadt.acpi_enable);
    if smi == 0 || value == 0 {
        log::warn!("ACPI mode is off and the FADT gives no way to turn it on");
        return;
    }
    // SAFETY: SMI_CMD with the FADT's enable value is the documented switch.
    unsafe { Port::<u8>::new(smi as u16).write(value) };
    for _ in 0..1_000_000 {
        // SAFETY: reading PM1a_CNT has no side effects.
        if unsafe { pm1a_cnt.read() } & 1 != 0 {
            return;
        }
        core::hint::spin_loop();
    }
    log::warn!("ACPI mode did not come on after writing {value:#x} to SMI_CMD {smi:#x}");
}

/// Enters S5 through PM1x_CNT (SLP_TYP in bits 12:10, SLP_EN bit 13).
/// Returns only if it did not take (no ACPI, no `_S5_`).
pub fn poweroff() {
    let Some(a) = get() else { return };
    let Some(s5) = a.s5 else {
        log::warn!("no \\_S5 sleep type in the DSDT: cannot power off through ACPI");
        return;
    };
    let slp = |t: u8| ((t as u16 & 7) << 10) | (1 << 13);
    if let Some(b) = a.pm1b_control {
        // SAFETY: SLP_TYP|SLP_EN in PM1b control is half of ACPI's
        // power-off; the machine sleeps once PM1a gets it too.
        unsafe { Port::<u16>::new(b).write(slp(s5.b)) };
    }
    // SAFETY: writing SLP_TYP|SLP_EN to PM1a control is ACPI's power-off.
    unsafe { Port::<u16>::new(a.pm1a_control).write(slp(s5.a)) };
    crate::time::delay_us(100_000);
}

/// Writes the FADT reset value to the reset register (I/O space only).
pub fn reset() {
    let Some((reg, value)) = get().and_then(|a| a.reset) else { return };
    if reg.address_space == AddressSpace::SystemIo {
        // SAFETY: the FADT names this port as the system reset register.
        unsafe { Port::<u8>::new(reg.address as u16).write(value) };
        crate::time::delay_us(100_000);
    }
}
