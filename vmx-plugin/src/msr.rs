//! The VMX MSRs and one CPU's raw capability values.
//!
//! Indices and bit meanings: Intel SDM vol. 4 (Model-Specific Registers,
//! table 2-2) and vol. 3D appendix A (VMX Capability Reporting Facility).

use crate::config::ConfigError;

/// Firmware's VMX enable and lock (SDM vol. 3C 24.7, "Enabling and
/// Entering VMX Operation"). VMXON raises #GP while it is unlocked, or when
/// it is locked with VMX outside SMX off.
pub const IA32_FEATURE_CONTROL: u32 = 0x3a;
/// Bit 0: writes are refused until the next reset.
pub const FEATURE_CONTROL_LOCK: u64 = 1 << 0;
/// Bit 2: VMXON allowed outside SMX (modvisor never enters SMX, so bit 1,
/// VMXON inside SMX, does not matter).
pub const FEATURE_CONTROL_VMX_OUTSIDE_SMX: u64 = 1 << 2;

pub const IA32_VMX_BASIC: u32 = 0x480;
pub const IA32_VMX_PINBASED_CTLS: u32 = 0x481;
pub const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
pub const IA32_VMX_EXIT_CTLS: u32 = 0x483;
pub const IA32_VMX_ENTRY_CTLS: u32 = 0x484;
pub const IA32_VMX_MISC: u32 = 0x485;
pub const IA32_VMX_CR0_FIXED0: u32 = 0x486;
pub const IA32_VMX_CR0_FIXED1: u32 = 0x487;
pub const IA32_VMX_CR4_FIXED0: u32 = 0x488;
pub const IA32_VMX_CR4_FIXED1: u32 = 0x489;
pub const IA32_VMX_VMCS_ENUM: u32 = 0x48a;
pub const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48b;
pub const IA32_VMX_EPT_VPID_CAP: u32 = 0x48c;
pub const IA32_VMX_TRUE_PINBASED_CTLS: u32 = 0x48d;
pub const IA32_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48e;
pub const IA32_VMX_TRUE_EXIT_CTLS: u32 = 0x48f;
pub const IA32_VMX_TRUE_ENTRY_CTLS: u32 = 0x490;
pub const IA32_VMX_VMFUNC: u32 = 0x491;
pub const IA32_VMX_PROCBASED_CTLS3: u32 = 0x492;

/// IA32_VMX_BASIC bit 55: the TRUE_* MSRs exist and report which "default1"
/// controls may in fact be 0 (SDM A.1, A.2).
pub const BASIC_TRUE_CTLS: u64 = 1 << 55;

/// IA32_VMX_EPT_VPID_CAP bits (SDM A.10) modvisor relies on.
pub const EPT_WALK_4_LEVELS: u64 = 1 << 6;
pub const EPT_MEMORY_TYPE_WB: u64 = 1 << 14;
pub const EPT_2M_PAGES: u64 = 1 << 16;
pub const EPT_INVEPT: u64 = 1 << 20;
pub const EPT_INVEPT_SINGLE_CONTEXT: u64 = 1 << 25;
pub const EPT_INVEPT_ALL_CONTEXT: u64 = 1 << 26;
pub const VPID_INVVPID: u64 = 1 << 32;
pub const VPID_INVVPID_INDIVIDUAL_ADDRESS: u64 = 1 << 40;
pub const VPID_INVVPID_SINGLE_CONTEXT: u64 = 1 << 41;
pub const VPID_INVVPID_ALL_CONTEXT: u64 = 1 << 42;
pub const VPID_INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS: u64 = 1 << 43;

/// The allowed settings of the four control families that have both
/// allowed-0 (bits 31:0: a 1 means the control must be 1) and allowed-1
/// settings (bits 63:32: a 0 means the control must be 0), SDM A.3-A.5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctls {
    pub pinbased: u64,
    pub procbased: u64,
    pub exit: u64,
    pub entry: u64,
}

/// One CPU's VMX capability MSRs, as read; `None` for an MSR this CPU does
/// not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub basic: u64,
    pub ctls: Ctls,
    /// IA32_VMX_TRUE_*_CTLS, present when IA32_VMX_BASIC bit 55 is set.
    pub true_ctls: Option<Ctls>,
    /// IA32_VMX_PROCBASED_CTLS2, present when "activate secondary controls"
    /// may be 1.
    pub procbased2: Option<u64>,
    /// IA32_VMX_PROCBASED_CTLS3 (allowed-1 settings only), present when
    /// "activate tertiary controls" may be 1.
    pub procbased3: Option<u64>,
    /// IA32_VMX_EPT_VPID_CAP, present when "enable EPT" or "enable VPID"
    /// may be 1.
    pub ept_vpid_cap: Option<u64>,
    pub cr0_fixed0: u64,
    pub cr0_fixed1: u64,
    pub cr4_fixed0: u64,
    pub cr4_fixed1: u64,
}

/// Primary processor-based allowed-1 bits that make further MSRs exist
/// (SDM A.3.2): "activate tertiary controls" (17), "activate secondary
/// controls" (31).
const PROCBASED_MAY_ACTIVATE_TERTIARY: u64 = 1 << (32 + 17);
const PROCBASED_MAY_ACTIVATE_SECONDARY: u64 = 1 << (32 + 31);
/// Secondary allowed-1 bits that make IA32_VMX_EPT_VPID_CAP exist (SDM
/// A.10): "enable EPT" (1), "enable VPID" (5).
const PROCBASED2_MAY_ENABLE_EPT_OR_VPID: u64 = (1 << (32 + 1)) | (1 << (32 + 5));

impl Caps {
    /// Reads the MSRs through `rdmsr`, which returns `None` when the read
    /// faults. Asks only for the MSRs that exist by the rules of SDM
    /// appendix A, so on a CPU with VMX (CPUID.1:ECX.VMX) every read must
    /// succeed; one that does not is reported.
    pub fn read(mut rdmsr: impl FnMut(u32) -> Option<u64>) -> Result<Caps, ConfigError> {
        let mut read = |index| rdmsr(index).ok_or(ConfigError::UnreadableMsr(index));
        let basic = read(IA32_VMX_BASIC)?;
        let ctls = Ctls {
            pinbased: read(IA32_VMX_PINBASED_CTLS)?,
            procbased: read(IA32_VMX_PROCBASED_CTLS)?,
            exit: read(IA32_VMX_EXIT_CTLS)?,
            entry: read(IA32_VMX_ENTRY_CTLS)?,
        };
        let true_ctls = match basic & BASIC_TRUE_CTLS {
            0 => None,
            _ => Some(Ctls {
                pinbased: read(IA32_VMX_TRUE_PINBASED_CTLS)?,
                procbased: read(IA32_VMX_TRUE_PROCBASED_CTLS)?,
                exit: read(IA32_VMX_TRUE_EXIT_CTLS)?,
                entry: read(IA32_VMX_TRUE_ENTRY_CTLS)?,
            }),
        };
        // Appendix A states each rule on the plain MSR's allowed-1 bits.
        let may = |bit| ctls.procbased & bit != 0;
        let procbased2 = may(PROCBASED_MAY_ACTIVATE_SECONDARY).then(|| read(IA32_VMX_PROCBASED_CTLS2)).transpose()?;
        let procbased3 = may(PROCBASED_MAY_ACTIVATE_TERTIARY).then(|| read(IA32_VMX_PROCBASED_CTLS3)).transpose()?;
        let ept_vpid_cap = (procbased2.unwrap_or(0) & PROCBASED2_MAY_ENABLE_EPT_OR_VPID != 0)
            .then(|| read(IA32_VMX_EPT_VPID_CAP))
            .transpose()?;
        Ok(Caps {
            basic,
            ctls,
            true_ctls,
            procbased2,
            procbased3,
            ept_vpid_cap,
            cr0_fixed0: read(IA32_VMX_CR0_FIXED0)?,
            cr0_fixed1: read(IA32_VMX_CR0_FIXED1)?,
            cr4_fixed0: read(IA32_VMX_CR4_FIXED0)?,
            cr4_fixed1: read(IA32_VMX_CR4_FIXED1)?,
        })
    }

    /// The control capabilities to decide with: the TRUE_* MSRs when the
    /// CPU has them, since the plain ones report every "default1" control
    /// as must-be-1 even where the CPU lets it be 0 (SDM A.2).
    pub fn effective_ctls(&self) -> &Ctls {
        self.true_ctls.as_ref().unwrap_or(&self.ctls)
    }
}
