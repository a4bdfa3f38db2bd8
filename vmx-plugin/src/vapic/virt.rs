//! How much of the x2APIC the CPU virtualizes for a vCPU, and which MSR
//! accesses must therefore exit to the VMM. SDM vol. 3C, "APIC
//! Virtualization and Virtual Interrupts" ("Virtualizing MSR-Based APIC
//! Accesses", "EOI Virtualization", "Self-IPI Virtualization") and
//! "MSR-Bitmap Address".
//!
//! The rule that shapes both intercept sets: with "virtualize x2APIC mode"
//! an x2APIC RDMSR/WRMSR the MSR bitmap lets through and the CPU does not
//! virtualize "operates normally", i.e. reaches the host's physical
//! x2APIC. So every access not virtualized must exit; without "virtualize
//! x2APIC mode" (emulation) that is every access.

use super::regs::*;
use super::Lapic;
use crate::config::{
    Control, VmxConfig, APIC_REGISTER_VIRTUALIZATION, USE_TPR_SHADOW, VIRTUALIZE_X2APIC_MODE,
    VIRTUAL_INTERRUPT_DELIVERY,
};

/// VMCS field encodings the Virtualized mode writes (SDM vol. 3D appendix
/// "Field Encoding in VMCS").
pub const VMCS_GUEST_INTERRUPT_STATUS: u32 = 0x0810;
pub const VMCS_EOI_EXIT_BITMAPS: [u32; 4] = [0x201c, 0x201e, 0x2020, 0x2022];

/// The APIC-virtualization controls a CPU offers modvisor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offered {
    pub tpr_shadow: bool,
    pub virtualize_x2apic_mode: bool,
    pub apic_register_virtualization: bool,
    pub virtual_interrupt_delivery: bool,
}

impl Offered {
    /// What `config` (already stripped of controls whose prerequisites are
    /// missing) offers.
    pub fn from_config(config: &VmxConfig) -> Offered {
        Offered {
            tpr_shadow: config.has(USE_TPR_SHADOW),
            virtualize_x2apic_mode: config.has(VIRTUALIZE_X2APIC_MODE),
            apic_register_virtualization: config.has(APIC_REGISTER_VIRTUALIZATION),
            virtual_interrupt_delivery: config.has(VIRTUAL_INTERRUPT_DELIVERY),
        }
    }
}

/// What the VMM insists on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Emulate every access even when the CPU could virtualize (to test
    /// the emulation path, or to work around a CPU or emulator bug).
    pub force_emulation: bool,
}

/// Why a vCPU's APIC is emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Forced,
    /// The first control of [`VIRTUALIZED_CONTROLS`] the CPU lacks.
    Missing(Control),
}

impl core::fmt::Display for Reason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Reason::Forced => f.write_str("x2APIC emulation forced by policy"),
            Reason::Missing(c) => write!(f, "x2APIC emulated: no {} control", c.name),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The CPU reads registers from the virtual-APIC page and virtualizes
    /// TPR writes, EOI and self-IPIs; the VMM handles the rest, above all
    /// the ICR (Bochs 2.7 has no IPI virtualization) and the timer. The
    /// VMM mirrors each write it handles into the virtual-APIC page, which
    /// the CPU reads from.
    Virtualized,
    /// Every x2APIC MSR access exits and [`Lapic`] handles it.
    Emulated(Reason),
}

/// The controls Virtualized mode sets, in the order [`decide`] checks
/// them. The VMCS must also keep "virtualize APIC accesses" 0 (it excludes
/// "virtualize x2APIC mode") and "external-interrupt exiting" 1 (virtual-
/// interrupt delivery requires it): SDM vol. 3C "Checks on VM-Execution
/// Control Fields".
pub const VIRTUALIZED_CONTROLS: [Control; 4] =
    [USE_TPR_SHADOW, VIRTUALIZE_X2APIC_MODE, APIC_REGISTER_VIRTUALIZATION, VIRTUAL_INTERRUPT_DELIVERY];

/// Virtualized when the CPU offers all of [`VIRTUALIZED_CONTROLS`] and the
/// policy allows; emulated otherwise. There is no middle mode: without
/// APIC-register virtualization every read must exit anyway, and without
/// virtual-interrupt delivery every EOI.
pub fn decide(offered: Offered, policy: Policy) -> Mode {
    if policy.force_emulation {
        return Mode::Emulated(Reason::Forced);
    }
    let has = [
        offered.tpr_shadow,
        offered.virtualize_x2apic_mode,
        offered.apic_register_virtualization,
        offered.virtual_interrupt_delivery,
    ];
    match VIRTUALIZED_CONTROLS.into_iter().zip(has).find(|(_, has)| !has) {
        Some((missing, _)) => Mode::Emulated(Reason::Missing(missing)),
        None => Mode::Virtualized,
    }
}

/// Reads APIC-register virtualization serves from the virtual-APIC page
/// with values that stay right without the VMM: those the CPU maintains
/// (TPR, PPR, ISR, IRR) or that change only by writes that exit, after
/// which the VMM updates the page. The ICR and the timer exit: the count
/// runs in [`Lapic`], not in the page.
const READ_THROUGH: [(u32, u32); 8] = [
    (MSR_ID, MSR_VERSION),
    (MSR_TPR, MSR_TPR),
    (MSR_PPR, MSR_PPR),
    (MSR_LDR, MSR_LDR),
    (MSR_SVR, MSR_SVR),
    (MSR_ISR0, MSR_ESR),
    (MSR_LVT_CMCI, MSR_LVT_CMCI),
    (MSR_LVT_THERMAL, MSR_LVT_ERROR),
];

/// Writes the CPU virtualizes: TPR, EOI and SELF IPI.
const WRITE_THROUGH: [u32; 3] = [MSR_TPR, MSR_EOI, MSR_SELF_IPI];

/// Which RDMSR/WRMSR of 0x800-0x8FF and IA32_TSC_DEADLINE exit. Other MSRs
/// are not this module's: [`Intercepts::covers`] is false for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intercepts {
    /// Bit (msr - 0x800) set: the access exits.
    read: [u64; 4],
    write: [u64; 4],
}

fn set_of(through: impl Fn(u32) -> bool) -> [u64; 4] {
    let mut set = [0; 4];
    for msr in X2APIC_FIRST..=X2APIC_LAST {
        if !through(msr) {
            let bit = msr - X2APIC_FIRST;
            set[bit as usize / 64] |= 1 << (bit % 64);
        }
    }
    set
}

impl Mode {
    /// The intercepts for this mode. IA32_TSC_DEADLINE always exits: let
    /// through, a guest write would program the host's timer.
    pub fn intercepts(&self) -> Intercepts {
        match self {
            Mode::Emulated(_) => Intercepts { read: [u64::MAX; 4], write: [u64::MAX; 4] },
            Mode::Virtualized => Intercepts {
                read: set_of(|msr| READ_THROUGH.iter().any(|&(lo, hi)| (lo..=hi).contains(&msr))),
                write: set_of(|msr| WRITE_THROUGH.contains(&msr)),
            },
        }
    }

    /// The APIC-virtualization controls the VMCS sets in this mode.
    pub fn controls(&self) -> &'static [Control] {
        match self {
            Mode::Virtualized => &VIRTUALIZED_CONTROLS,
            Mode::Emulated(_) => &[],
        }
    }
}

impl Intercepts {
    pub fn covers(msr: u32) -> bool {
        msr == MSR_TSC_DEADLINE || (X2APIC_FIRST..=X2APIC_LAST).contains(&msr)
    }

    fn test(set: &[u64; 4], msr: u32) -> bool {
        match msr {
            MSR_TSC_DEADLINE => true,
            X2APIC_FIRST..=X2APIC_LAST => {
                let bit = msr - X2APIC_FIRST;
                set[bit as usize / 64] & 1 << (bit % 64) != 0
            }
            _ => false,
        }
    }

    /// Whether RDMSR of `msr` exits (false for MSRs not covered).
    pub fn read(&self, msr: u32) -> bool {
        Intercepts::test(&self.read, msr)
    }

    /// Whether WRMSR of `msr` exits (false for MSRs not covered).
    pub fn write(&self, msr: u32) -> bool {
        Intercepts::test(&self.write, msr)
    }

    fn covered() -> impl Iterator<Item = u32> {
        core::iter::once(MSR_TSC_DEADLINE).chain(X2APIC_FIRST..=X2APIC_LAST)
    }

    /// The covered MSRs whose RDMSR exits, IA32_TSC_DEADLINE first.
    pub fn reads(&self) -> impl Iterator<Item = u32> + '_ {
        Intercepts::covered().filter(|&msr| self.read(msr))
    }

    /// The covered MSRs whose WRMSR exits, IA32_TSC_DEADLINE first.
    pub fn writes(&self) -> impl Iterator<Item = u32> + '_ {
        Intercepts::covered().filter(|&msr| self.write(msr))
    }

    /// Writes these intercepts into a VMX MSR bitmap, leaving the bits of
    /// MSRs not covered alone. Layout (SDM vol. 3C "MSR-Bitmap Address"):
    /// bytes 0-1023 read bitmap for MSRs 0-0x1FFF, 2048-3071 write bitmap
    /// for the same MSRs, one bit per MSR; a set bit exits.
    pub fn apply(&self, bitmap: &mut [u8; 4096]) {
        for msr in Intercepts::covered() {
            let (byte, bit) = (msr as usize / 8, msr % 8);
            for (base, exits) in [(0, self.read(msr)), (2048, self.write(msr))] {
                if exits {
                    bitmap[base + byte] |= 1 << bit;
                } else {
                    bitmap[base + byte] &= !(1 << bit);
                }
            }
        }
    }
}

/// The VMCS guest interrupt status (SDM vol. 3C "Guest Non-Register
/// State"): RVI in bits 7:0, the highest requested vector; SVI in bits
/// 15:8, the highest in-service vector; 0 for none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestInterruptStatus {
    pub rvi: u8,
    pub svi: u8,
}

impl GuestInterruptStatus {
    /// The status for `lapic`'s IRR and ISR, to load before the first
    /// entry in Virtualized mode (or after the VMM changed them).
    pub fn of(lapic: &Lapic) -> GuestInterruptStatus {
        GuestInterruptStatus { rvi: lapic.irr().highest().unwrap_or(0), svi: lapic.isr().highest().unwrap_or(0) }
    }

    pub fn from_u16(value: u16) -> GuestInterruptStatus {
        GuestInterruptStatus { rvi: value as u8, svi: (value >> 8) as u8 }
    }

    pub fn to_u16(self) -> u16 {
        u16::from(self.rvi) | u16::from(self.svi) << 8
    }

    /// After the VMM sets `vector` in the virtual-APIC page's IRR: RVI
    /// rises to it if higher, so the CPU evaluates it at the next entry
    /// (SDM vol. 3C "Evaluation of Pending Virtual Interrupts").
    pub fn request(self, vector: u8) -> GuestInterruptStatus {
        GuestInterruptStatus { rvi: self.rvi.max(vector), ..self }
    }
}

/// The four EOI-exit bitmaps: a set bit makes the guest's EOI of that
/// vector exit after EOI virtualization, so the VMM can tell an I/O APIC
/// a level-triggered interrupt was served (SDM vol. 3C "EOI
/// Virtualization"). Pass the level-triggered vectors, e.g. the TMR; for
/// edge-only use all four are 0.
pub fn eoi_exit_bitmap(level_triggered: &VectorSet) -> [u64; 4] {
    level_triggered.to_u64s()
}

/// The virtual-APIC page as 32-bit words: what the CPU reads registers
/// from and keeps IRR, ISR, TPR and PPR in while the guest runs (SDM vol.
/// 3C "Virtual-APIC Page"). The VMM's side is volatile memory; host tests
/// use an array.
pub trait PageWords {
    fn get(&self, offset: usize) -> u32;
    fn set(&mut self, offset: usize, value: u32);
}

impl PageWords for [u32; 1024] {
    fn get(&self, offset: usize) -> u32 {
        self[offset / 4]
    }

    fn set(&mut self, offset: usize, value: u32) {
        self[offset / 4] = value;
    }
}

/// The byte offset of x2APIC register `msr` in the virtual-APIC page: the
/// xAPIC MMIO offset of the same register (SDM "Virtualizing MSR-Based
/// APIC Accesses").
pub const fn page_offset(msr: u32) -> usize {
    ((msr - X2APIC_FIRST) << 4) as usize
}

/// Writes `lapic` into the page: every register the CPU reads without an
/// exit (`READ_THROUGH`), IRR, ISR and TPR included. Done whenever the
/// VMM changed the APIC, before the next entry; the guest interrupt
/// status must follow ([`GuestInterruptStatus::of`]).
pub fn publish(lapic: &Lapic, page: &mut impl PageWords) {
    for (first, last) in READ_THROUGH {
        for msr in first..=last {
            // Every register of READ_THROUGH is readable and 32 bits wide
            // (the 64-bit ICR exits); none depends on the time.
            page.set(page_offset(msr), lapic.register(msr, 0).unwrap_or(0) as u32);
        }
    }
}

/// Takes into `lapic` what the CPU changes in the page while the guest
/// runs: IRR (self-IPIs, delivery), ISR (delivery, virtualized EOI) and
/// TPR (virtualized writes). PPR follows from them. Done before the VMM
/// reads or changes the APIC after the guest ran.
pub fn absorb(lapic: &mut Lapic, page: &impl PageWords) {
    let words = |first: u32| core::array::from_fn(|n| page.get(page_offset(first + n as u32)));
    lapic.irr = VectorSet::from_words(words(MSR_IRR0));
    lapic.isr = VectorSet::from_words(words(MSR_ISR0));
    lapic.tpr = page.get(page_offset(MSR_TPR)) as u8;
}
