//! x2APIC register numbers and the 256-bit vector sets (IRR, ISR, TMR).
//! SDM vol. 3A, "Extended xAPIC (x2APIC)": register at MMIO offset `off`
//! is MSR 0x800 + (off >> 4).

/// First and last MSR of the x2APIC range. 0x900-0xBFF are reserved for
/// the x2APIC too, but no register lives there.
pub const X2APIC_FIRST: u32 = 0x800;
pub const X2APIC_LAST: u32 = 0x8ff;

pub const MSR_ID: u32 = 0x802;
pub const MSR_VERSION: u32 = 0x803;
pub const MSR_TPR: u32 = 0x808;
pub const MSR_PPR: u32 = 0x80a;
pub const MSR_EOI: u32 = 0x80b;
pub const MSR_LDR: u32 = 0x80d;
pub const MSR_SVR: u32 = 0x80f;
/// ISR, TMR and IRR: eight 32-bit MSRs each, vectors 32n..32n+31 in MSR
/// base + n.
pub const MSR_ISR0: u32 = 0x810;
pub const MSR_TMR0: u32 = 0x818;
pub const MSR_IRR0: u32 = 0x820;
pub const MSR_ESR: u32 = 0x828;
pub const MSR_LVT_CMCI: u32 = 0x82f;
pub const MSR_ICR: u32 = 0x830;
pub const MSR_LVT_TIMER: u32 = 0x832;
pub const MSR_LVT_THERMAL: u32 = 0x833;
pub const MSR_LVT_PMC: u32 = 0x834;
pub const MSR_LVT_LINT0: u32 = 0x835;
pub const MSR_LVT_LINT1: u32 = 0x836;
pub const MSR_LVT_ERROR: u32 = 0x837;
pub const MSR_TIMER_INITIAL: u32 = 0x838;
pub const MSR_TIMER_CURRENT: u32 = 0x839;
pub const MSR_TIMER_DIVIDE: u32 = 0x83e;
pub const MSR_SELF_IPI: u32 = 0x83f;
/// IA32_TSC_DEADLINE (SDM vol. 3A "TSC-Deadline Mode"): outside the x2APIC
/// range but part of the APIC timer, so always the VMM's.
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;

/// Version register: version 0x14 (an integrated APIC, "1XH"), max LVT
/// entry 6 (seven LVTs, CMCI included), bit 24 clear: no EOI-broadcast
/// suppression, so SVR bit 12 stays reserved.
pub const VERSION: u32 = 0x0006_0014;

/// LVT bit 16 (all LVTs) and the vector field (SDM "Local Vector Table").
pub const LVT_MASKED: u32 = 1 << 16;
pub const LVT_VECTOR: u32 = 0xff;

/// SVR bit 8: APIC software enable (SDM "Spurious-Interrupt Vector
/// Register"). Bits 9 (focus checking) and 7:0 are writable as well.
pub const SVR_ENABLE: u32 = 1 << 8;
pub(crate) const SVR_WRITABLE: u32 = 0x3ff;
/// The SVR after reset: vector 0xFF, APIC software-disabled.
pub const SVR_RESET: u32 = 0xff;

/// ESR bits the virtual APIC can raise (SDM "Error Handling").
pub const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
pub const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;

/// Vectors 0-15 are reserved for exceptions; an APIC never accepts or
/// sends them as fixed interrupts (SDM "Valid Interrupt Vectors").
pub const FIRST_LEGAL_VECTOR: u8 = 16;

/// The LVTs other than the timer (which [`crate::vapic::Timer`] owns); the
/// discriminant indexes [`crate::vapic::Lapic`]'s array of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lvt {
    Cmci,
    Thermal,
    Pmc,
    Lint0,
    Lint1,
    Error,
}

impl Lvt {
    pub(crate) fn from_msr(msr: u32) -> Option<Lvt> {
        Some(match msr {
            MSR_LVT_CMCI => Lvt::Cmci,
            MSR_LVT_THERMAL => Lvt::Thermal,
            MSR_LVT_PMC => Lvt::Pmc,
            MSR_LVT_LINT0 => Lvt::Lint0,
            MSR_LVT_LINT1 => Lvt::Lint1,
            MSR_LVT_ERROR => Lvt::Error,
            _ => return None,
        })
    }

    /// The bits software may set. All: vector and mask; all but error:
    /// delivery mode 10:8; LINT0/1: polarity 13 and trigger mode 15.
    pub(crate) fn writable(self) -> u32 {
        const BASE: u32 = LVT_VECTOR | LVT_MASKED;
        const MODE: u32 = 0x700;
        match self {
            Lvt::Cmci | Lvt::Thermal | Lvt::Pmc => BASE | MODE,
            Lvt::Lint0 | Lvt::Lint1 => BASE | MODE | 1 << 13 | 1 << 15,
            Lvt::Error => BASE,
        }
    }

    /// Read-only status bits a write may carry (as read back) without a
    /// fault: delivery status 12, and remote IRR 14 on LINT0/1.
    pub(crate) fn status(self) -> u32 {
        match self {
            Lvt::Lint0 | Lvt::Lint1 => 1 << 12 | 1 << 14,
            _ => 1 << 12,
        }
    }
}

/// A set of the 256 interrupt vectors, laid out as the APIC's eight 32-bit
/// IRR/ISR/TMR registers: word n holds vectors 32n..32n+31.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VectorSet([u32; 8]);

impl VectorSet {
    pub const EMPTY: VectorSet = VectorSet([0; 8]);

    pub fn contains(&self, vector: u8) -> bool {
        self.0[usize::from(vector >> 5)] & 1 << (vector & 31) != 0
    }

    pub fn insert(&mut self, vector: u8) {
        self.0[usize::from(vector >> 5)] |= 1 << (vector & 31);
    }

    pub fn remove(&mut self, vector: u8) {
        self.0[usize::from(vector >> 5)] &= !(1 << (vector & 31));
    }

    /// The highest vector in the set: the one the APIC serves first, as
    /// priority rises with the vector number.
    pub fn highest(&self) -> Option<u8> {
        let (index, word) = self.0.iter().enumerate().rev().find(|(_, w)| **w != 0)?;
        Some((index * 32 + 31 - word.leading_zeros() as usize) as u8)
    }

    pub fn is_empty(&self) -> bool {
        self.0 == [0; 8]
    }

    /// The set whose register `n` is `words[n]`.
    pub fn from_words(words: [u32; 8]) -> VectorSet {
        VectorSet(words)
    }

    /// Register `n` (0-7) of the set, as RDMSR of base + n returns it.
    pub fn word(&self, n: usize) -> u32 {
        self.0[n]
    }

    /// The set as four 64-bit words, vector v in bit v % 64 of word v / 64:
    /// the layout of the VMCS EOI-exit bitmaps 0-3.
    pub fn to_u64s(&self) -> [u64; 4] {
        core::array::from_fn(|i| u64::from(self.0[2 * i]) | u64::from(self.0[2 * i + 1]) << 32)
    }
}

/// The x2APIC logical ID the LDR holds, derived from the x2APIC ID (SDM
/// "Logical Destination Mode in x2APIC Mode"): ID bits 19:4 (the
/// cluster) in bits 31:16, and in bits 15:0 one bit, numbered by ID bits
/// 3:0. Read-only in x2APIC mode.
pub fn logical_id(id: u32) -> u32 {
    (id >> 4 & 0xffff) << 16 | 1 << (id & 0xf)
}

/// How software may access an x2APIC register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    WriteOnly,
    ReadWrite,
}

/// The access an MSR of the x2APIC range allows; `None`: no register there
/// (both RDMSR and WRMSR fault). SDM vol. 3A table "Local APIC Register
/// Address Map Supported by x2APIC".
pub fn register_access(msr: u32) -> Option<Access> {
    match msr {
        MSR_ID | MSR_VERSION | MSR_PPR | MSR_LDR | MSR_TIMER_CURRENT => Some(Access::ReadOnly),
        MSR_ISR0..=0x827 => Some(Access::ReadOnly),
        MSR_EOI | MSR_SELF_IPI => Some(Access::WriteOnly),
        MSR_TPR | MSR_SVR | MSR_ESR | MSR_LVT_CMCI | MSR_ICR | MSR_TIMER_DIVIDE => Some(Access::ReadWrite),
        MSR_LVT_TIMER..=MSR_TIMER_INITIAL => Some(Access::ReadWrite),
        _ => None,
    }
}
