//! The per-CPU compatibility check that runs before a CPU enables VMX:
//! the CPU must have VMX, firmware must not have locked it off, its CR4
//! reserved bits must be the boot CPU's, and the configuration computed on
//! it must be the boot CPU's (a vCPU may run on any CPU). Pure: the plugin
//! reads CPUID and the MSRs on the CPU and acts on the answer.
//!
//! Order: as KVM's `vmx_check_processor_compat` (`kvm_is_vmx_supported`:
//! CPUID, then IA32_FEATURE_CONTROL; then the configuration), with the CR4
//! check of KVM's `kvm_x86_check_processor_compatibility` placed before the
//! configuration rather than first: CR4.VMXE is reserved without VMX, and
//! "VMX not supported" is the message a user can act on.

use crate::config::{ConfigError, VmxConfig};
use crate::msr::{FEATURE_CONTROL_LOCK, FEATURE_CONTROL_VMX_OUTSIDE_SMX};

/// The CPUID words the check reads: the VMX bit and the features that
/// decide which CR4 bits a CPU reserves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpuid {
    /// CPUID.1:ECX
    pub leaf1_ecx: u32,
    /// CPUID.(EAX=7,ECX=0):EBX
    pub leaf7_ebx: u32,
    /// CPUID.(EAX=7,ECX=0):ECX
    pub leaf7_ecx: u32,
    /// CPUID.(EAX=7,ECX=1):EAX
    pub leaf7_1_eax: u32,
}

/// CPUID.1:ECX bit 5.
const CPUID_VMX: u32 = 1 << 5;

/// Which CPUID word of [`Cpuid`] a feature bit is in.
#[derive(Clone, Copy)]
enum Word {
    Leaf1Ecx,
    Leaf7Ebx,
    Leaf7Ecx,
    Leaf7_1Eax,
}

/// The CR4 bits that exist only with a CPUID feature, as KVM's
/// `__cr4_reserved_bits` lists them: (CR4 bit, name, feature word, feature
/// bit). SDM vol. 3A "Control Registers", vol. 2A CPUID. The other CR4
/// bits are architectural or never used, the same on every CPU.
const CR4_FEATURES: [(u32, &str, Word, u32); 10] = [
    (11, "UMIP", Word::Leaf7Ecx, 2),
    (12, "LA57", Word::Leaf7Ecx, 16),
    (13, "VMXE", Word::Leaf1Ecx, 5),
    (16, "FSGSBASE", Word::Leaf7Ebx, 0),
    (17, "PCIDE", Word::Leaf1Ecx, 17),
    (18, "OSXSAVE", Word::Leaf1Ecx, 26),
    (20, "SMEP", Word::Leaf7Ebx, 7),
    (21, "SMAP", Word::Leaf7Ebx, 20),
    (22, "PKE", Word::Leaf7Ecx, 3),
    (28, "LAM_SUP", Word::Leaf7_1Eax, 26),
];

impl Cpuid {
    pub fn has_vmx(&self) -> bool {
        self.leaf1_ecx & CPUID_VMX != 0
    }

    /// The feature-dependent CR4 bits this CPU reserves (lacks the feature
    /// for).
    pub fn cr4_reserved(&self) -> u64 {
        CR4_FEATURES
            .iter()
            .filter(|&&(_, _, word, bit)| self.word(word) & 1 << bit == 0)
            .fold(0, |reserved, &(cr4_bit, ..)| reserved | 1 << cr4_bit)
    }

    fn word(&self, word: Word) -> u32 {
        match word {
            Word::Leaf1Ecx => self.leaf1_ecx,
            Word::Leaf7Ebx => self.leaf7_ebx,
            Word::Leaf7Ecx => self.leaf7_ecx,
            Word::Leaf7_1Eax => self.leaf7_1_eax,
        }
    }
}

/// The vmx plugin's errors: a CPU that cannot enable VMX, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// CPUID.1:ECX.VMX is clear.
    NotSupported { cpu: u32 },
    /// IA32_FEATURE_CONTROL is locked with VMX outside SMX off.
    DisabledByFirmware { cpu: u32 },
    /// A feature-dependent CR4 bit (the lowest that differs) is reserved on
    /// one of this CPU and the boot CPU only.
    Cr4Mismatch { cpu: u32, bit: u32, name: &'static str, reserved_here: bool },
    /// The configuration computed on this CPU differs from the boot CPU's.
    Inconsistent { cpu: u32, field: &'static str },
    /// This CPU's capabilities give no configuration at all.
    Config { cpu: u32, cause: ConfigError },
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Error::NotSupported { cpu } => write!(f, "VMX not supported by CPU {cpu}"),
            Error::DisabledByFirmware { cpu } => write!(f, "VMX disabled by firmware on CPU {cpu}"),
            Error::Cr4Mismatch { cpu, bit, name, reserved_here } => write!(
                f,
                "CR4 reserved bits of CPU {cpu} differ from the boot CPU's: {name} (bit {bit}) is reserved on {} only",
                if reserved_here { "this CPU" } else { "the boot CPU" }
            ),
            Error::Inconsistent { cpu, field } => write!(f, "inconsistent VMX configuration on CPU {cpu}: {field}"),
            Error::Config { cpu, cause } => write!(f, "VMX configuration failed on CPU {cpu}: {cause}"),
        }
    }
}

/// What the boot CPU decided, which every CPU must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reference {
    cr4_reserved: u64,
    config: VmxConfig,
}

impl Reference {
    /// The reference from the boot CPU `cpu` (at load): VMX must be there
    /// and give a configuration. IA32_FEATURE_CONTROL is left to [`check`],
    /// which runs on the boot CPU as on every other.
    pub fn new(cpu: u32, cpuid: Cpuid, config: Result<VmxConfig, ConfigError>) -> Result<Reference, Error> {
        if !cpuid.has_vmx() {
            return Err(Error::NotSupported { cpu });
        }
        let config = config.map_err(|cause| Error::Config { cpu, cause })?;
        Ok(Reference { cr4_reserved: cpuid.cr4_reserved(), config })
    }

    /// The global configuration.
    pub fn config(&self) -> &VmxConfig {
        &self.config
    }
}

/// What one CPU reports, read on that CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub cpu: u32,
    pub cpuid: Cpuid,
    /// IA32_FEATURE_CONTROL (any value when CPUID has no VMX: not looked at).
    pub feature_control: u64,
    /// [`VmxConfig::new`] on this CPU's capability MSRs (any error when
    /// CPUID has no VMX: not looked at).
    pub config: Result<VmxConfig, ConfigError>,
}

/// What the CPU must do before VMXON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// IA32_FEATURE_CONTROL already allows VMXON.
    Enable,
    /// IA32_FEATURE_CONTROL is unlocked (firmware left it so): write this
    /// value, locking it with VMX outside SMX on, then enable. VMXON
    /// raises #GP while the lock bit is clear.
    LockAndEnable { feature_control: u64 },
}

/// Whether the CPU `probe` describes may enable VMX. An unlocked
/// IA32_FEATURE_CONTROL is no refusal: the answer asks the caller to lock
/// it, and only after every check passed, so a refused CPU stays unchanged.
pub fn check(probe: &Probe, boot: &Reference) -> Result<Action, Error> {
    let cpu = probe.cpu;
    if !probe.cpuid.has_vmx() {
        return Err(Error::NotSupported { cpu });
    }
    let fc = probe.feature_control;
    let action = match (fc & FEATURE_CONTROL_LOCK != 0, fc & FEATURE_CONTROL_VMX_OUTSIDE_SMX != 0) {
        (true, true) => Action::Enable,
        (true, false) => return Err(Error::DisabledByFirmware { cpu }),
        (false, _) => {
            Action::LockAndEnable { feature_control: fc | FEATURE_CONTROL_LOCK | FEATURE_CONTROL_VMX_OUTSIDE_SMX }
        }
    };
    let reserved = probe.cpuid.cr4_reserved();
    if let Some(&(bit, name, ..)) = CR4_FEATURES.iter().find(|f| (reserved ^ boot.cr4_reserved) & 1 << f.0 != 0) {
        return Err(Error::Cr4Mismatch { cpu, bit, name, reserved_here: reserved & 1 << bit != 0 });
    }
    let config = probe.config.map_err(|cause| Error::Config { cpu, cause })?;
    match boot.config.first_difference(&config) {
        Some(field) => Err(Error::Inconsistent { cpu, field }),
        None => Ok(action),
    }
}

/// A control register value VMX operation does not allow, by
/// IA32_VMX_CRx_FIXED0/1 (SDM Vol. 3D, A.7 and A.8): VMXON raises #GP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedBits {
    /// Bits that must be 1 and are 0.
    pub missing: u64,
    /// Bits that must be 0 and are 1.
    pub extra: u64,
}

/// Whether `value` meets `fixed0` (bits that must be 1) and `fixed1` (bits
/// that may be 1).
pub fn fixed_bits(value: u64, fixed0: u64, fixed1: u64) -> Result<(), FixedBits> {
    let (missing, extra) = (fixed0 & !value, value & !fixed1);
    if missing | extra == 0 {
        Ok(())
    } else {
        Err(FixedBits { missing, extra })
    }
}
