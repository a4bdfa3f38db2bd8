//! The hypervisor's CPUID leaves (0x40000000 and 0x40000010) and the
//! feature bits of leaf 1 the guests look at.

use core::fmt;

use crate::abi::{HV_FREQUENCY_LEAF, HV_LEAF, HV_SIGNATURE};
use crate::cpu::cpuid;

/// CPUID.1:ECX bits.
pub const LEAF1_ECX_VMX: u32 = 1 << 5;
pub const LEAF1_ECX_X2APIC: u32 = 1 << 21;
pub const LEAF1_ECX_TSC_DEADLINE: u32 = 1 << 24;
pub const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;

/// Leaf 0x40000000.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vendor {
    /// The highest hypervisor leaf (EAX).
    pub max_leaf: u32,
    /// EBX, ECX, EDX as bytes.
    pub bytes: [u8; 12],
}

impl Vendor {
    pub fn from_registers(eax: u32, ebx: u32, ecx: u32, edx: u32) -> Vendor {
        let mut bytes = [0; 12];
        bytes[..4].copy_from_slice(&ebx.to_le_bytes());
        bytes[4..8].copy_from_slice(&ecx.to_le_bytes());
        bytes[8..].copy_from_slice(&edx.to_le_bytes());
        Vendor { max_leaf: eax, bytes }
    }

    /// Whether EBX:ECX say "modvisor".
    pub fn is_modvisor(&self) -> bool {
        self.bytes[..8] == HV_SIGNATURE
    }

    /// The signature bytes (EBX, ECX), printable.
    pub fn signature(&self) -> Shown<'_> {
        Shown(&self.bytes[..8])
    }

    /// Whether leaf 0x40000010 is offered.
    pub fn has_frequencies(&self) -> bool {
        self.is_modvisor() && self.max_leaf >= HV_FREQUENCY_LEAF
    }
}

/// Bytes as a quoted string, non-printable ones as `\xNN`.
pub struct Shown<'a>(pub &'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for &b in self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        f.write_str("\"")
    }
}

/// Leaf 0x40000000 of this vCPU.
pub fn vendor() -> Vendor {
    let r = cpuid(HV_LEAF, 0);
    Vendor::from_registers(r.eax, r.ebx, r.ecx, r.edx)
}

/// Leaf 0x40000010.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frequencies {
    pub tsc_khz: u32,
    pub apic_khz: u32,
}

impl Frequencies {
    /// TSC ticks in `us` microseconds.
    pub fn tsc_ticks(&self, us: u64) -> u64 {
        u64::from(self.tsc_khz) * us / 1000
    }

    /// Microseconds in `ticks` TSC ticks.
    pub fn tsc_us(&self, ticks: u64) -> u64 {
        ticks.saturating_mul(1000) / u64::from(self.tsc_khz.max(1))
    }

    /// APIC timer ticks (at divide-by-1) in `us` microseconds.
    pub fn apic_ticks(&self, us: u64) -> u64 {
        u64::from(self.apic_khz) * us / 1000
    }
}

/// Leaf 0x40000010, when the hypervisor is modvisor and offers it.
pub fn frequencies() -> Option<Frequencies> {
    if !vendor().has_frequencies() {
        return None;
    }
    let r = cpuid(HV_FREQUENCY_LEAF, 0);
    Some(Frequencies { tsc_khz: r.eax, apic_khz: r.ebx })
}

/// CPUID.1:ECX.
pub fn leaf1_ecx() -> u32 {
    cpuid(1, 0).ecx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_ebx_and_ecx() {
        let ebx = u32::from_le_bytes(*b"modv");
        let ecx = u32::from_le_bytes(*b"isor");
        let v = Vendor::from_registers(0x4000_0010, ebx, ecx, 0x1234);
        assert!(v.is_modvisor() && v.has_frequencies());
        assert_eq!(v.signature().to_string(), "\"modvisor\"");
        assert!(!Vendor::from_registers(0x4000_0001, ebx, ecx, 0).has_frequencies());
        let kvm = Vendor::from_registers(0x4000_0001, u32::from_le_bytes(*b"KVMK"), u32::from_le_bytes(*b"VMKV"), 0);
        assert!(!kvm.is_modvisor());
        assert_eq!(Shown(&[b'a', 0, 0x7f]).to_string(), "\"a\\x00\\x7f\"");
    }

    #[test]
    fn conversions() {
        let f = Frequencies { tsc_khz: 2_000_000, apic_khz: 25_000 };
        assert_eq!(f.tsc_ticks(10_000), 20_000_000);
        assert_eq!(f.tsc_us(20_000_000), 10_000);
        assert_eq!(f.apic_ticks(10_000), 250_000);
        assert_eq!(Frequencies { tsc_khz: 0, apic_khz: 0 }.tsc_us(5), 5000);
    }
}
