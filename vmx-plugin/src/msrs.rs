//! The guest MSR policy: how each MSR a guest may touch is handled, the
//! checks a guest write must pass, and the 4 KiB VMX MSR bitmap that
//! decides which RDMSR/WRMSR exit (SDM vol. 3C, "MSR-Bitmap Address").
//! Not to be confused with `msr`, the VMX capability MSRs of the host.
//!
//! Which MSRs exist follows the guest's CPUID ([`GuestFeatures`]): an MSR
//! whose feature the guest was not offered is [`Handling::Unknown`], and an
//! unknown MSR raises #GP in the guest, as on a CPU without it. Every
//! unknown MSR exits (its bitmap bit is set, or it lies outside the
//! bitmap), so Bochs's default `ignore_bad_msrs` (read as 0, no #GP) never
//! reaches a guest.

use core::fmt;

use crate::cpuid::GuestFeatures;
use crate::msr::IA32_FEATURE_CONTROL;

pub const IA32_TIME_STAMP_COUNTER: u32 = 0x10;
pub const IA32_APIC_BASE: u32 = 0x1b;
pub const IA32_BIOS_SIGN_ID: u32 = 0x8b;
pub const IA32_MTRRCAP: u32 = 0xfe;
pub const IA32_SYSENTER_CS: u32 = 0x174;
pub const IA32_SYSENTER_ESP: u32 = 0x175;
pub const IA32_SYSENTER_EIP: u32 = 0x176;
pub const IA32_MISC_ENABLE: u32 = 0x1a0;
pub const IA32_PAT: u32 = 0x277;
pub const IA32_MTRR_DEF_TYPE: u32 = 0x2ff;
pub const IA32_TSC_DEADLINE: u32 = 0x6e0;
/// The x2APIC registers, 0x800 + (xAPIC MMIO offset >> 4).
pub const X2APIC_FIRST: u32 = 0x800;
pub const X2APIC_LAST: u32 = 0x8ff;
pub const X2APIC_ICR: u32 = 0x830;
pub const IA32_EFER: u32 = 0xc000_0080;
pub const IA32_STAR: u32 = 0xc000_0081;
pub const IA32_LSTAR: u32 = 0xc000_0082;
pub const IA32_CSTAR: u32 = 0xc000_0083;
pub const IA32_FMASK: u32 = 0xc000_0084;
pub const IA32_FS_BASE: u32 = 0xc000_0100;
pub const IA32_GS_BASE: u32 = 0xc000_0101;
pub const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
pub const IA32_TSC_AUX: u32 = 0xc000_0103;

/// What a write to a VMCS-held MSR must satisfy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteCheck {
    /// A linear address: canonical (48-bit), else #GP.
    Canonical,
    /// Each byte a valid PAT memory type.
    Pat,
    /// Only known EFER bits; see [`efer_write`].
    Efer,
    /// Bits 31:0 are kept (IA32_SYSENTER_CS is a 32-bit field).
    Low32,
}

/// A guest-state VMCS field that holds the MSR (SDM vol. 3D appendix B).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmcsField {
    pub encoding: u32,
    pub check: WriteCheck,
}

pub const GUEST_IA32_PAT: VmcsField = VmcsField { encoding: 0x2804, check: WriteCheck::Pat };
pub const GUEST_IA32_EFER: VmcsField = VmcsField { encoding: 0x2806, check: WriteCheck::Efer };
pub const GUEST_SYSENTER_CS: VmcsField = VmcsField { encoding: 0x482a, check: WriteCheck::Low32 };
pub const GUEST_FS_BASE: VmcsField = VmcsField { encoding: 0x680e, check: WriteCheck::Canonical };
pub const GUEST_GS_BASE: VmcsField = VmcsField { encoding: 0x6810, check: WriteCheck::Canonical };
pub const GUEST_SYSENTER_ESP: VmcsField = VmcsField { encoding: 0x6824, check: WriteCheck::Canonical };
pub const GUEST_SYSENTER_EIP: VmcsField = VmcsField { encoding: 0x6826, check: WriteCheck::Canonical };

/// MSRs the CPU does not switch that the guest uses freely; the VMM saves
/// the guest's value after an exit and loads it before the entry whenever
/// the host or another vCPU may have changed it. Their accesses do not
/// exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saved {
    Star,
    Lstar,
    Cstar,
    Fmask,
    KernelGsBase,
    /// Only with RDTSCP offered.
    TscAux,
}

impl Saved {
    pub const ALL: [Saved; 6] =
        [Saved::Star, Saved::Lstar, Saved::Cstar, Saved::Fmask, Saved::KernelGsBase, Saved::TscAux];

    pub const fn index(self) -> u32 {
        match self {
            Saved::Star => IA32_STAR,
            Saved::Lstar => IA32_LSTAR,
            Saved::Cstar => IA32_CSTAR,
            Saved::Fmask => IA32_FMASK,
            Saved::KernelGsBase => IA32_KERNEL_GS_BASE,
            Saved::TscAux => IA32_TSC_AUX,
        }
    }
}

/// The x2APIC at the architectural base, enabled (bit 11) in x2APIC mode
/// (bit 10); bit 8 marks the BSP. The guest starts in x2APIC mode: CPUID
/// offers it and there is no xAPIC MMIO page to fall back to.
pub const APIC_BASE_X2APIC: u64 = 0xfee0_0000 | 1 << 11 | 1 << 10;
pub const APIC_BASE_BSP: u64 = 1 << 8;
/// Fast strings (0) on; branch trace storage (11) and PEBS (12)
/// unavailable; EIST (16), MONITOR (18), limit-CPUID (22) and XD-disable
/// (34) clear, matching the CPUID view.
pub const MISC_ENABLE_VALUE: u64 = 1 << 0 | 1 << 11 | 1 << 12;

/// Emulated MSRs that hold no state of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fixed {
    /// IA32_APIC_BASE: reads [`APIC_BASE_X2APIC`]; a write must keep it.
    ApicBase,
    /// IA32_MISC_ENABLE: reads [`MISC_ENABLE_VALUE`]; a write must keep it.
    MiscEnable,
    /// Reads the value; writes #GP.
    ReadOnly(u64),
    /// Reads 0; writes are accepted and dropped.
    Discard,
}

impl Fixed {
    /// What RDMSR returns on the vCPU (`bsp`: it is the boot vCPU).
    pub const fn read(self, bsp: bool) -> u64 {
        match self {
            Fixed::ApicBase => APIC_BASE_X2APIC | if bsp { APIC_BASE_BSP } else { 0 },
            Fixed::MiscEnable => MISC_ENABLE_VALUE,
            Fixed::ReadOnly(value) => value,
            Fixed::Discard => 0,
        }
    }

    /// Whether WRMSR of `value` to MSR `index` is accepted (and dropped);
    /// an error is #GP for the guest. The BSP flag is read-only, so a
    /// write may carry either value of it.
    pub fn write(self, index: u32, value: u64, bsp: bool) -> Result<(), MsrError> {
        match self {
            Fixed::ApicBase if value & !APIC_BASE_BSP == APIC_BASE_X2APIC => Ok(()),
            Fixed::ApicBase => Err(MsrError::ApicModeChange { value }),
            Fixed::MiscEnable if value == self.read(bsp) => Ok(()),
            Fixed::MiscEnable => Err(MsrError::Reserved { index, value }),
            Fixed::ReadOnly(_) => Err(MsrError::ReadOnly { index }),
            Fixed::Discard => Ok(()),
        }
    }
}

/// MSRs the VMM answers itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulated {
    /// An x2APIC register of the virtual APIC, by its xAPIC MMIO offset
    /// ((index - 0x800) << 4); the virtual APIC decides which exist.
    X2Apic {
        offset: u32,
    },
    /// IA32_TSC_DEADLINE of the virtual APIC (with TSC deadline offered).
    TscDeadline,
    Fixed(Fixed),
}

/// How an MSR is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    /// Held in a guest-state VMCS field.
    Vmcs(VmcsField),
    Saved(Saved),
    Emulated(Emulated),
    /// Reads go to the CPU without an exit: RDMSR of IA32_TIME_STAMP_COUNTER
    /// applies the TSC offset as RDTSC does (SDM vol. 3C, "Time-Stamp
    /// Counter Offset"), and RDTSC is not intercepted either. Writes exit
    /// and are refused with #GP: a write would set the host's TSC.
    PassThrough,
    /// Not an MSR of this guest: #GP.
    Unknown,
}

/// How MSR `index` is handled for a guest offered `features`.
pub fn handling(index: u32, features: GuestFeatures) -> Handling {
    use Handling::{Emulated as E, Saved as S, Vmcs as V};
    match index {
        IA32_TIME_STAMP_COUNTER => Handling::PassThrough,
        IA32_APIC_BASE => E(Emulated::Fixed(Fixed::ApicBase)),
        // Locked with VMX off, as CPUID hides VMX.
        IA32_FEATURE_CONTROL => E(Emulated::Fixed(Fixed::ReadOnly(1))),
        // A microcode-revision probe writes 0 and reads back: revision 0.
        IA32_BIOS_SIGN_ID => E(Emulated::Fixed(Fixed::Discard)),
        // No variable or fixed ranges, no WC; MTRRs disabled. With EPT the
        // guest's MTRRs would not apply anyway: the EPT memory type does.
        IA32_MTRRCAP => E(Emulated::Fixed(Fixed::ReadOnly(0))),
        IA32_MTRR_DEF_TYPE => E(Emulated::Fixed(Fixed::Discard)),
        IA32_MISC_ENABLE => E(Emulated::Fixed(Fixed::MiscEnable)),
        IA32_SYSENTER_CS => V(GUEST_SYSENTER_CS),
        IA32_SYSENTER_ESP => V(GUEST_SYSENTER_ESP),
        IA32_SYSENTER_EIP => V(GUEST_SYSENTER_EIP),
        IA32_PAT => V(GUEST_IA32_PAT),
        IA32_EFER => V(GUEST_IA32_EFER),
        IA32_FS_BASE => V(GUEST_FS_BASE),
        IA32_GS_BASE => V(GUEST_GS_BASE),
        IA32_TSC_DEADLINE if features.tsc_deadline => E(Emulated::TscDeadline),
        X2APIC_FIRST..=X2APIC_LAST => E(Emulated::X2Apic { offset: (index - X2APIC_FIRST) << 4 }),
        IA32_STAR => S(Saved::Star),
        IA32_LSTAR => S(Saved::Lstar),
        IA32_CSTAR => S(Saved::Cstar),
        IA32_FMASK => S(Saved::Fmask),
        IA32_KERNEL_GS_BASE => S(Saved::KernelGsBase),
        IA32_TSC_AUX if features.rdtscp => S(Saved::TscAux),
        _ => Handling::Unknown,
    }
}

/// Whether the access to MSR `index` (a write if `write`) exits under the
/// policy:
/// - VMCS-held MSRs the CPU always switches (FS/GS base, SYSENTER_*) do
///   not exit; the CPU checks a written value as it would outside VMX.
///   EFER and PAT exit both ways, since the CPU switches them only with
///   the load/save controls and EFER writes must update "IA-32e mode
///   guest"; the VMM serves them from the VMCS fields.
/// - Saved MSRs do not exit; emulated and unknown ones always do.
/// - The TSC exits on writes only.
pub fn policy_intercepts(index: u32, write: bool, features: GuestFeatures) -> bool {
    match handling(index, features) {
        Handling::Vmcs(field) => matches!(field.check, WriteCheck::Pat | WriteCheck::Efer),
        Handling::Saved(_) => false,
        Handling::PassThrough => write,
        Handling::Emulated(_) | Handling::Unknown => true,
    }
}

/// Why a guest WRMSR (or RDMSR) raises #GP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrError {
    /// No such MSR for this guest.
    Unknown {
        index: u32,
    },
    ReadOnly {
        index: u32,
    },
    /// The value sets reserved bits or an invalid encoding.
    Reserved {
        index: u32,
        value: u64,
    },
    /// A linear address that is not canonical.
    NonCanonical {
        index: u32,
        value: u64,
    },
    /// EFER.LME changed while paging is on.
    LongModeChange {
        value: u64,
    },
    /// An IA32_APIC_BASE write that would leave x2APIC mode, disable the
    /// APIC or move it.
    ApicModeChange {
        value: u64,
    },
}

impl fmt::Display for MsrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MsrError::Unknown { index } => write!(f, "MSR {index:#x} does not exist for this guest (#GP)"),
            MsrError::ReadOnly { index } => write!(f, "MSR {index:#x} is read-only (#GP)"),
            MsrError::Reserved { index, value } => {
                write!(f, "MSR {index:#x}: value {value:#x} sets reserved bits or an invalid encoding (#GP)")
            }
            MsrError::NonCanonical { index, value } => {
                write!(f, "MSR {index:#x}: address {value:#x} is not canonical (#GP)")
            }
            MsrError::LongModeChange { value } => {
                write!(f, "EFER {value:#x} changes LME while paging is on; turn paging off first (#GP)")
            }
            MsrError::ApicModeChange { value } => write!(
                f,
                "IA32_APIC_BASE {value:#x}: the virtual APIC stays enabled in x2APIC mode at 0xfee00000 (#GP)"
            ),
        }
    }
}

/// Whether `value` is a canonical 48-bit linear address (bits 63:47 equal).
pub const fn is_canonical(value: u64) -> bool {
    ((value as i64) << 16 >> 16) as u64 == value
}

/// Whether every byte of `value` is a PAT memory type: 0 UC, 1 WC, 4 WT,
/// 5 WP, 6 WB, 7 UC- (2, 3 and 8-255 are reserved; SDM vol. 3A, "IA32_PAT
/// MSR").
pub const fn is_valid_pat(value: u64) -> bool {
    let mut i = 0;
    while i < 8 {
        if !matches!((value >> (8 * i)) as u8, 0 | 1 | 4 | 5 | 6 | 7) {
            return false;
        }
        i += 1;
    }
    true
}

impl VmcsField {
    /// The value to store for a guest WRMSR of `value` to MSR `index`
    /// held in this field; EFER goes through [`efer_write`] instead, which
    /// needs the current state.
    pub fn write_value(self, index: u32, value: u64) -> Result<u64, MsrError> {
        match self.check {
            WriteCheck::Canonical if is_canonical(value) => Ok(value),
            WriteCheck::Canonical => Err(MsrError::NonCanonical { index, value }),
            WriteCheck::Pat if is_valid_pat(value) => Ok(value),
            WriteCheck::Low32 => Ok(value & 0xffff_ffff),
            WriteCheck::Pat | WriteCheck::Efer => Err(MsrError::Reserved { index, value }),
        }
    }
}

const EFER_SCE: u64 = 1 << 0;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;

/// The guest EFER after WRMSR of `value` when it is `old` and guest
/// CR0.PG is `paging`. Only SCE, LME, LMA and NXE exist (CPUID offers
/// SYSCALL, long mode and NX; not AMD's bits); LMA is set by the CPU, so
/// the written bit is ignored and the old one kept; LME cannot change
/// while paging is on. The VMM stores the result in [`GUEST_IA32_EFER`]
/// and keeps the "IA-32e mode guest" entry control equal to its LMA.
pub fn efer_write(old: u64, value: u64, paging: bool) -> Result<u64, MsrError> {
    if value & !(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE) != 0 {
        return Err(MsrError::Reserved { index: IA32_EFER, value });
    }
    if paging && (old ^ value) & EFER_LME != 0 {
        return Err(MsrError::LongModeChange { value });
    }
    Ok(value & !EFER_LMA | old & EFER_LMA)
}

/// The VMX MSR bitmap: one 4 KiB page, bit set = the access exits.
pub const MSR_BITMAP_SIZE: usize = 4096;
pub type MsrBitmap = [u8; MSR_BITMAP_SIZE];

/// The MSRs the bitmap covers: 0-0x1FFF and 0xC000_0000-0xC000_1FFF.
const LOW: core::ops::RangeInclusive<u32> = 0..=0x1fff;
const HIGH: core::ops::RangeInclusive<u32> = 0xc000_0000..=0xc000_1fff;

/// Where the bit for MSR `index` lies: (byte offset, bit mask), or `None`
/// for an MSR outside both ranges (its accesses always exit). Reads of the
/// low range at bytes 0-1023, of the high range at 1024-2047, writes at
/// 2048-3071 and 3072-4095 (SDM vol. 3C, "MSR-Bitmap Address").
pub const fn bitmap_position(index: u32, write: bool) -> Option<(usize, u8)> {
    let (base, number) = match index {
        0..=0x1fff => (0, index),
        0xc000_0000..=0xc000_1fff => (1024, index - 0xc000_0000),
        _ => return None,
    };
    let base = if write { base + 2048 } else { base };
    Some((base + number as usize / 8, 1 << (number % 8)))
}

/// Whether `bitmap` makes the access exit.
pub fn bitmap_intercepts(bitmap: &MsrBitmap, index: u32, write: bool) -> bool {
    bitmap_position(index, write).is_none_or(|(byte, mask)| bitmap[byte] & mask != 0)
}

/// Fills `bitmap` from the two decisions. A WRMSR to the x2APIC ICR exits
/// whatever they say: without IPI virtualization only TPR, EOI and
/// SELF IPI writes are virtualized, so an ICR write the bitmap lets
/// through reaches the physical local APIC and sends a real IPI (SDM vol.
/// 3C, "Virtualizing MSR-Based APIC Accesses"); Bochs 2.7 does exactly
/// that.
pub fn fill_msr_bitmap(
    bitmap: &mut MsrBitmap,
    intercept_read: impl Fn(u32) -> bool,
    intercept_write: impl Fn(u32) -> bool,
) {
    bitmap.fill(0);
    for index in LOW.chain(HIGH) {
        for (write, exits) in [(false, intercept_read(index)), (true, intercept_write(index) || index == X2APIC_ICR)] {
            if let (true, Some((byte, mask))) = (exits, bitmap_position(index, write)) {
                bitmap[byte] |= mask;
            }
        }
    }
}

/// A new bitmap from the two decisions; see [`fill_msr_bitmap`].
pub fn msr_bitmap(intercept_read: impl Fn(u32) -> bool, intercept_write: impl Fn(u32) -> bool) -> MsrBitmap {
    let mut bitmap = [0; MSR_BITMAP_SIZE];
    fill_msr_bitmap(&mut bitmap, intercept_read, intercept_write);
    bitmap
}

/// The bitmap of [`policy_intercepts`] for a guest offered `features`.
pub fn policy_bitmap(features: GuestFeatures) -> MsrBitmap {
    msr_bitmap(|index| policy_intercepts(index, false, features), |index| policy_intercepts(index, true, features))
}

#[cfg(test)]
mod tests;
