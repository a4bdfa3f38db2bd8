//! The local APIC, in xAPIC (MMIO) or x2APIC (MSR) mode: identification,
//! EOI, inter-processor interrupts and the timer. SDM Vol. 3A, chapter 11.

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use loader_core::boot::cmdline::ApicMode;
use raw_cpuid::CpuId;
use x86_64::registers::model_specific::Msr;

const IA32_APIC_BASE: u32 = 0x1b;
const BASE_ENABLE: u64 = 1 << 11;
const BASE_X2APIC: u64 = 1 << 10;

// Register offsets (xAPIC MMIO offset; the x2APIC MSR is 0x800 + off >> 4).
const ID: u32 = 0x20;
const TPR: u32 = 0x80;
const EOI: u32 = 0xb0;
const SVR: u32 = 0xf0;
const ESR: u32 = 0x280;
const ICR_LOW: u32 = 0x300;
const ICR_HIGH: u32 = 0x310;
const LVT_TIMER: u32 = 0x320;
const LVT_LINT0: u32 = 0x350;
const LVT_LINT1: u32 = 0x360;
const LVT_ERROR: u32 = 0x370;
const TIMER_INITIAL: u32 = 0x380;
const TIMER_CURRENT: u32 = 0x390;
const TIMER_DIVIDE: u32 = 0x3e0;

const LVT_MASKED: u32 = 1 << 16;
const ICR_PENDING: u32 = 1 << 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    XApic,
    X2Apic,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::XApic => "xAPIC",
            Mode::X2Apic => "x2APIC",
        }
    }
}

#[derive(Debug)]
pub enum Error {
    NoApic,
    X2ApicUnsupported,
    /// An IPI stayed pending in the ICR (xAPIC delivery status).
    IpiStuck {
        dest: u32,
    },
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::NoApic => write!(f, "this CPU has no local APIC"),
            Error::X2ApicUnsupported => {
                write!(f, "x2APIC mode was requested (apic=x2apic) but this CPU does not offer it")
            }
            Error::IpiStuck { dest } => write!(f, "IPI to APIC id {dest} was not accepted by the local APIC"),
        }
    }
}

/// 0: not chosen yet; then `Mode as u8 + 1`, the same on every CPU.
static MODE: AtomicU8 = AtomicU8::new(0);
static XAPIC_BASE: AtomicU64 = AtomicU64::new(0xfee0_0000);

pub fn mode() -> Mode {
    match MODE.load(Ordering::Relaxed) {
        2 => Mode::X2Apic,
        _ => Mode::XApic,
    }
}

/// Chooses the mode for every CPU, from what the boot CPU offers and what
/// the command line asks.
pub fn choose_mode(requested: ApicMode, mmio_base: u64) -> Result<Mode, Error> {
    let features = CpuId::new().get_feature_info().ok_or(Error::NoApic)?;
    if !features.has_apic() {
        return Err(Error::NoApic);
    }
    let mode = match (requested, features.has_x2apic()) {
        (ApicMode::XApic, _) | (ApicMode::Auto, false) => Mode::XApic,
        (ApicMode::X2Apic, false) => return Err(Error::X2ApicUnsupported),
        (_, true) => Mode::X2Apic,
    };
    XAPIC_BASE.store(mmio_base, Ordering::Relaxed);
    MODE.store(mode as u8 + 1, Ordering::Relaxed);
    Ok(mode)
}

/// Enables this CPU's local APIC in the chosen mode with every local
/// interrupt source masked.
pub fn init_this_cpu() {
    let mut base = Msr::new(IA32_APIC_BASE);
    // The writes follow the documented state changes (SDM 11.12.5, Figure
    // 11-27): leaving x2APIC goes through disabled, and x2APIC is entered
    // from xAPIC, so EN is set before EXTD.
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC (checked in
    // `choose_mode`); reading it has no side effects.
    let v = unsafe { base.read() };
    let want = match mode() {
        Mode::XApic => (v & !BASE_X2APIC) | BASE_ENABLE,
        Mode::X2Apic => v | BASE_ENABLE | BASE_X2APIC,
    };
    if v & BASE_X2APIC != 0 && want & BASE_X2APIC == 0 {
        // SAFETY: x2APIC to disabled, the only way out of x2APIC; nothing
        // uses this CPU's APIC while it is being set up.
        unsafe { base.write(v & !(BASE_ENABLE | BASE_X2APIC)) };
    }
    if v & BASE_ENABLE == 0 {
        // SAFETY: disabled to xAPIC, the step before x2APIC.
        unsafe { base.write((v | BASE_ENABLE) & !BASE_X2APIC) };
    }
    // SAFETY: xAPIC to the chosen mode (or no change), which `choose_mode`
    // checked the CPU supports.
    unsafe { base.write(want) };
    for lvt in [LVT_TIMER, LVT_LINT0, LVT_LINT1, LVT_ERROR] {
        write(lvt, LVT_MASKED);
    }
    write(TPR, 0);
    write(ESR, 0);
    write(SVR, 0x100 | crate::interrupts::idt::SPURIOUS as u32);
}

fn read(reg: u32) -> u32 {
    match mode() {
        // SAFETY: x2APIC registers are MSRs 0x800 + reg/16 (SDM 11.12.1.2).
        Mode::X2Apic => unsafe { Msr::new(0x800 + (reg >> 4)).read() as u32 },
        // SAFETY: the xAPIC page is identity-mapped MMIO; `reg` is a
        // register offset from this file.
        Mode::XApic => unsafe {
            core::ptr::read_volatile((XAPIC_BASE.load(Ordering::Relaxed) + reg as u64) as *const u32)
        },
    }
}

fn write(reg: u32, value: u32) {
    match mode() {
        // SAFETY: as in `read`.
        Mode::X2Apic => unsafe { Msr::new(0x800 + (reg >> 4)).write(value as u64) },
        // SAFETY: as in `read`.
        Mode::XApic => unsafe {
            core::ptr::write_volatile((XAPIC_BASE.load(Ordering::Relaxed) + reg as u64) as *mut u32, value)
        },
    }
}

/// The running CPU's APIC id.
pub fn id() -> u32 {
    match mode() {
        Mode::X2Apic => read(ID),
        Mode::XApic => read(ID) >> 24,
    }
}

pub fn eoi() {
    write(EOI, 0);
}

/// The kinds of inter-processor interrupt the loader sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipi {
    Fixed(u8),
    Nmi,
    /// INIT assert (level, SDM 11.6.1).
    Init,
    /// Start-up IPI: the AP begins in real mode at `page << 12`.
    Startup(u8),
}

impl Ipi {
    fn icr_low(self) -> u32 {
        const ASSERT: u32 = 1 << 14;
        match self {
            Ipi::Fixed(v) => ASSERT | v as u32,
            Ipi::Nmi => ASSERT | (0b100 << 8),
            Ipi::Init => ASSERT | (0b101 << 8),
            Ipi::Startup(page) => ASSERT | (0b110 << 8) | page as u32,
        }
    }
}

/// Sends `ipi` to the CPU with APIC id `dest` (physical destination mode).
pub fn send_ipi(dest: u32, ipi: Ipi) -> Result<(), Error> {
    let low = ipi.icr_low();
    match mode() {
        // SAFETY: one write to the x2APIC ICR sends the IPI (SDM 11.12.9).
        Mode::X2Apic => unsafe { Msr::new(0x830).write(((dest as u64) << 32) | low as u64) },
        Mode::XApic => {
            // Interrupts off: a handler sending its own IPI between the two
            // ICR writes would change the destination under us.
            x86_64::instructions::interrupts::without_interrupts(|| {
                write(ICR_HIGH, dest << 24);
                write(ICR_LOW, low);
            });
            // Delivery status: the xAPIC clears it once the IPI left.
            let mut spins = 0u32;
            while read(ICR_LOW) & ICR_PENDING != 0 {
                spins += 1;
                if spins > 10_000_000 {
                    return Err(Error::IpiStuck { dest });
                }
                core::hint::spin_loop();
            }
        }
    }
    Ok(())
}

/// The timer counts down at the bus clock divided by 16.
const TIMER_DIVIDE_BY_16: u32 = 0b0011;

/// Starts the timer counting down from `count` with its interrupt masked
/// (for calibration).
pub fn timer_start_masked(count: u32) {
    write(TIMER_DIVIDE, TIMER_DIVIDE_BY_16);
    write(LVT_TIMER, LVT_MASKED);
    write(TIMER_INITIAL, count);
}

pub fn timer_current() -> u32 {
    read(TIMER_CURRENT)
}

/// Periodic timer interrupt on `vector` every `count` timer ticks.
pub fn timer_periodic(vector: u8, count: u32) {
    write(TIMER_DIVIDE, TIMER_DIVIDE_BY_16);
    write(LVT_TIMER, (1 << 17) | vector as u32);
    write(TIMER_INITIAL, count);
}

pub fn timer_stop() {
    write(LVT_TIMER, LVT_MASKED);
    write(TIMER_INITIAL, 0);
}
