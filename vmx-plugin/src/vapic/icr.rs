//! The x2APIC ICR (MSR 0x830, 64 bits): decoding a write into an [`Ipi`]
//! and finding the vCPUs it targets. SDM vol. 3A, "Interrupt Command
//! Register (ICR)" and "Interrupt Command Register (ICR) in x2APIC Mode".

use super::regs::{logical_id, MSR_ICR};
use super::Fault;

/// Bits 13, 17:16 and 31:20 are reserved in x2APIC mode; a WRMSR setting
/// one faults ("Reserved Bit Checking").
const RESERVED: u64 = 1 << 13 | 0b11 << 16 | 0xfff << 20;
/// Bit 12, delivery status: read-only, and always idle here because the
/// VMM sends an IPI before the guest's WRMSR retires. Ignored on write,
/// as a guest may write back what it read.
pub(crate) const DELIVERY_STATUS: u64 = 1 << 12;

/// A destination of 0xFFFF_FFFF is a broadcast, in physical and in logical
/// mode alike ("x2APIC ... Logical Destination Mode").
pub const BROADCAST: u32 = 0xffff_ffff;

/// ICR bits 10:8. Everything but `Fixed` and `LowestPriority` is handed to
/// the VMM as is, which decides whether to emulate it (INIT/SIPI for AP
/// start-up, NMI) or to refuse it (SMI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    Fixed,
    /// Delivered like `Fixed` to the targets [`destinations`] yields: the
    /// SDM leaves lowest-priority arbitration model-specific ("Lowest
    /// Priority Delivery Mode"), so a VMM may as well pick the first.
    LowestPriority,
    Smi,
    Nmi,
    Init,
    /// Start-up IPI: the vector is the page of the AP's start address.
    StartUp,
}

/// ICR bit 11.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestMode {
    /// The destination is one x2APIC ID.
    Physical,
    /// The destination is a cluster (bits 31:16) and a 16-bit member mask
    /// (bits 15:0), matched against each target's derived LDR.
    Logical,
}

/// ICR bits 19:18; when not `None`, the destination field is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shorthand {
    None,
    SelfOnly,
    AllIncludingSelf,
    AllExcludingSelf,
}

/// ICR bit 15.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Edge,
    Level,
}

/// One decoded ICR write: what to send and to whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipi {
    pub vector: u8,
    pub mode: DeliveryMode,
    pub dest_mode: DestMode,
    pub shorthand: Shorthand,
    /// ICR bits 63:32.
    pub dest: u32,
    /// ICR bit 14: 1 asserts; 0 only makes sense for an INIT de-assert.
    pub assert: bool,
    pub trigger: Trigger,
}

impl Ipi {
    /// Decodes an ICR value; reserved bits or a reserved delivery mode
    /// (0b011, 0b111: the SDM defines no behaviour for them, so refusing
    /// is safer than guessing) fault.
    pub fn decode(icr: u64) -> Result<Ipi, Fault> {
        let reserved = Fault::Reserved { msr: MSR_ICR, value: icr };
        if icr & RESERVED != 0 {
            return Err(reserved);
        }
        let mode = match icr >> 8 & 7 {
            0 => DeliveryMode::Fixed,
            1 => DeliveryMode::LowestPriority,
            2 => DeliveryMode::Smi,
            4 => DeliveryMode::Nmi,
            5 => DeliveryMode::Init,
            6 => DeliveryMode::StartUp,
            _ => return Err(reserved),
        };
        let shorthand = match icr >> 18 & 3 {
            0 => Shorthand::None,
            1 => Shorthand::SelfOnly,
            2 => Shorthand::AllIncludingSelf,
            _ => Shorthand::AllExcludingSelf,
        };
        Ok(Ipi {
            vector: icr as u8,
            mode,
            dest_mode: if icr & 1 << 11 != 0 { DestMode::Logical } else { DestMode::Physical },
            shorthand,
            dest: (icr >> 32) as u32,
            assert: icr & 1 << 14 != 0,
            trigger: if icr & 1 << 15 != 0 { Trigger::Level } else { Trigger::Edge },
        })
    }

    /// A level-triggered INIT with level 0: the old "INIT level de-assert"
    /// that resynchronised arbitration IDs. Since the Pentium 4 it has no
    /// effect ("Interrupt Command Register (ICR)"), so nothing is sent.
    pub fn is_init_deassert(&self) -> bool {
        self.mode == DeliveryMode::Init && self.trigger == Trigger::Level && !self.assert
    }

    /// Whether the vector must be 16-255: only fixed and lowest-priority
    /// IPIs carry an interrupt vector (NMI/INIT ignore it, a SIPI's vector
    /// is a page number).
    pub fn needs_legal_vector(&self) -> bool {
        matches!(self.mode, DeliveryMode::Fixed | DeliveryMode::LowestPriority)
    }

    /// Whether the vCPU with x2APIC ID `id` receives this IPI sent by the
    /// vCPU with ID `sender`.
    pub fn targets(&self, sender: u32, id: u32) -> bool {
        match self.shorthand {
            Shorthand::SelfOnly => id == sender,
            Shorthand::AllIncludingSelf => true,
            Shorthand::AllExcludingSelf => id != sender,
            Shorthand::None if self.dest == BROADCAST => true,
            Shorthand::None => match self.dest_mode {
                DestMode::Physical => id == self.dest,
                DestMode::Logical => {
                    // Same cluster, and the member bit is in the mask.
                    let ldr = logical_id(id);
                    ldr >> 16 == self.dest >> 16 && ldr & self.dest & 0xffff != 0
                }
            },
        }
    }
}

/// The IDs among `all_ids` (every vCPU's x2APIC ID) that `ipi`, sent by
/// `sender`, targets, in the order given. A VMM delivers a fixed IPI to
/// each; for [`DeliveryMode::LowestPriority`] it may pick just one.
pub fn destinations(ipi: Ipi, sender: u32, all_ids: impl Iterator<Item = u32>) -> impl Iterator<Item = u32> {
    all_ids.filter(move |&id| ipi.targets(sender, id))
}
