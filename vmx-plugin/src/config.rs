//! The VMX configuration: which VM-execution, VM-exit and VM-entry controls
//! modvisor uses, decided from one CPU's capability MSRs, plus the values
//! every VMXON region and VMCS depends on. Pure: the same [`Caps`] give the
//! same [`VmxConfig`], so configurations computed on two CPUs can be
//! compared field by field.
//!
//! The choice follows KVM's `setup_vmcs_config` (arch/x86/kvm/vmx/vmx.c):
//! a required set whose absence refuses the CPU, an optional set used when
//! the CPU allows it, each adjusted to the allowed-0/allowed-1 settings
//! (SDM vol. 3D A.3-A.5). Like KVM's, the configuration is what the CPU
//! offers modvisor; a VMCS later picks from it (e.g. "virtualize APIC
//! accesses" and "virtualize x2APIC mode" exclude each other in one VMCS).

use crate::msr::{self, Caps};

/// A family of VMX controls, each its own VMCS field (SDM vol. 3C,
/// "VM-Execution Control Fields", "VM-Exit Control Fields", "VM-Entry
/// Control Fields").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pin,
    Primary,
    Secondary,
    Tertiary,
    Exit,
    Entry,
}

impl core::fmt::Display for Kind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Kind::Pin => "pin-based VM-execution",
            Kind::Primary => "primary processor-based VM-execution",
            Kind::Secondary => "secondary processor-based VM-execution",
            Kind::Tertiary => "tertiary processor-based VM-execution",
            Kind::Exit => "VM-exit",
            Kind::Entry => "VM-entry",
        })
    }
}

/// One control: its family, its bit in that family's field, and the SDM's
/// name for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    pub kind: Kind,
    pub bit: u32,
    pub name: &'static str,
}

const fn control(kind: Kind, bit: u32, name: &'static str) -> Control {
    Control { kind, bit, name }
}

pub const EXTERNAL_INTERRUPT_EXITING: Control = control(Kind::Pin, 0, "external-interrupt exiting");
pub const NMI_EXITING: Control = control(Kind::Pin, 3, "NMI exiting");
pub const VIRTUAL_NMIS: Control = control(Kind::Pin, 5, "virtual NMIs");
pub const ACTIVATE_PREEMPTION_TIMER: Control = control(Kind::Pin, 6, "activate VMX-preemption timer");
pub const POSTED_INTERRUPTS: Control = control(Kind::Pin, 7, "process posted interrupts");

pub const INTERRUPT_WINDOW_EXITING: Control = control(Kind::Primary, 2, "interrupt-window exiting");
pub const USE_TSC_OFFSETTING: Control = control(Kind::Primary, 3, "use TSC offsetting");
pub const HLT_EXITING: Control = control(Kind::Primary, 7, "HLT exiting");
pub const INVLPG_EXITING: Control = control(Kind::Primary, 9, "INVLPG exiting");
pub const MWAIT_EXITING: Control = control(Kind::Primary, 10, "MWAIT exiting");
pub const RDPMC_EXITING: Control = control(Kind::Primary, 11, "RDPMC exiting");
pub const CR3_LOAD_EXITING: Control = control(Kind::Primary, 15, "CR3-load exiting");
pub const CR3_STORE_EXITING: Control = control(Kind::Primary, 16, "CR3-store exiting");
pub const ACTIVATE_TERTIARY_CONTROLS: Control = control(Kind::Primary, 17, "activate tertiary controls");
pub const CR8_LOAD_EXITING: Control = control(Kind::Primary, 19, "CR8-load exiting");
pub const CR8_STORE_EXITING: Control = control(Kind::Primary, 20, "CR8-store exiting");
pub const NMI_WINDOW_EXITING: Control = control(Kind::Primary, 22, "NMI-window exiting");
pub const USE_TPR_SHADOW: Control = control(Kind::Primary, 21, "use TPR shadow");
pub const MOV_DR_EXITING: Control = control(Kind::Primary, 23, "MOV-DR exiting");
pub const UNCONDITIONAL_IO_EXITING: Control = control(Kind::Primary, 24, "unconditional I/O exiting");
pub const USE_MSR_BITMAPS: Control = control(Kind::Primary, 28, "use MSR bitmaps");
pub const MONITOR_EXITING: Control = control(Kind::Primary, 29, "MONITOR exiting");
pub const ACTIVATE_SECONDARY_CONTROLS: Control = control(Kind::Primary, 31, "activate secondary controls");

pub const VIRTUALIZE_APIC_ACCESSES: Control = control(Kind::Secondary, 0, "virtualize APIC accesses");
pub const ENABLE_EPT: Control = control(Kind::Secondary, 1, "enable EPT");
pub const VIRTUALIZE_X2APIC_MODE: Control = control(Kind::Secondary, 4, "virtualize x2APIC mode");
pub const ENABLE_VPID: Control = control(Kind::Secondary, 5, "enable VPID");
pub const UNRESTRICTED_GUEST: Control = control(Kind::Secondary, 7, "unrestricted guest");
pub const APIC_REGISTER_VIRTUALIZATION: Control = control(Kind::Secondary, 8, "APIC-register virtualization");
pub const VIRTUAL_INTERRUPT_DELIVERY: Control = control(Kind::Secondary, 9, "virtual-interrupt delivery");

pub const IPI_VIRTUALIZATION: Control = control(Kind::Tertiary, 4, "IPI virtualization");

pub const SAVE_DEBUG_CONTROLS: Control = control(Kind::Exit, 2, "save debug controls");
pub const HOST_ADDRESS_SPACE_SIZE: Control = control(Kind::Exit, 9, "host address-space size");
pub const ACK_INTERRUPT_ON_EXIT: Control = control(Kind::Exit, 15, "acknowledge interrupt on exit");

pub const LOAD_DEBUG_CONTROLS: Control = control(Kind::Entry, 2, "load debug controls");
pub const IA32E_MODE_GUEST: Control = control(Kind::Entry, 9, "IA-32e mode guest");

/// Controls a CPU must offer: KVM's `KVM_REQUIRED_VMX_*` sets for x86_64
/// (arch/x86/kvm/vmx/vmx.h). The exiting controls keep every guest access
/// to host-owned state trappable; a VMCS clears those it does not need
/// (e.g. CR3 exiting under EPT). A 64-bit host needs "host address-space
/// size" on every exit; "IA-32e mode guest" is set per VMCS.
pub const REQUIRED: [Control; 21] = [
    EXTERNAL_INTERRUPT_EXITING,
    NMI_EXITING,
    INTERRUPT_WINDOW_EXITING,
    USE_TSC_OFFSETTING,
    HLT_EXITING,
    INVLPG_EXITING,
    MWAIT_EXITING,
    RDPMC_EXITING,
    CR3_LOAD_EXITING,
    CR3_STORE_EXITING,
    CR8_LOAD_EXITING,
    CR8_STORE_EXITING,
    MOV_DR_EXITING,
    UNCONDITIONAL_IO_EXITING,
    USE_MSR_BITMAPS,
    MONITOR_EXITING,
    SAVE_DEBUG_CONTROLS,
    HOST_ADDRESS_SPACE_SIZE,
    ACK_INTERRUPT_ON_EXIT,
    LOAD_DEBUG_CONTROLS,
    IA32E_MODE_GUEST,
];

/// Controls used when the CPU allows them, and the order
/// [`VmxConfig::features`] lists them in. Each is a "default0" control
/// (SDM A.2), so a CPU never forces it on and dropping one whose
/// prerequisite is missing is always allowed.
pub const OPTIONAL: [Control; 15] = [
    VIRTUAL_NMIS,
    ACTIVATE_PREEMPTION_TIMER,
    POSTED_INTERRUPTS,
    NMI_WINDOW_EXITING,
    USE_TPR_SHADOW,
    ACTIVATE_SECONDARY_CONTROLS,
    ACTIVATE_TERTIARY_CONTROLS,
    VIRTUALIZE_APIC_ACCESSES,
    ENABLE_EPT,
    VIRTUALIZE_X2APIC_MODE,
    ENABLE_VPID,
    UNRESTRICTED_GUEST,
    APIC_REGISTER_VIRTUALIZATION,
    VIRTUAL_INTERRUPT_DELIVERY,
    IPI_VIRTUALIZATION,
];

/// EPT is used only with 4-level walks, write-back paging structures and
/// all-context INVEPT (KVM's `hardware_setup` requires the same).
const EPT_NEEDS: u64 = msr::EPT_WALK_4_LEVELS | msr::EPT_MEMORY_TYPE_WB | msr::EPT_INVEPT | msr::EPT_INVEPT_ALL_CONTEXT;
/// The EPT capabilities kept in [`VmxConfig::ept_vpid_caps`]: 2 MiB
/// pages too, which guest RAM is mapped with where the CPU has them.
const EPT_CAPS: u64 = EPT_NEEDS | msr::EPT_INVEPT_SINGLE_CONTEXT | msr::EPT_2M_PAGES;
/// The VPID capabilities kept; VPID is used only with INVVPID and its
/// single- or all-context type (KVM's `hardware_setup`).
const VPID_CAPS: u64 = msr::VPID_INVVPID
    | msr::VPID_INVVPID_INDIVIDUAL_ADDRESS
    | msr::VPID_INVVPID_SINGLE_CONTEXT
    | msr::VPID_INVVPID_ALL_CONTEXT
    | msr::VPID_INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS;

/// IA32_VMX_BASIC fields (SDM A.1).
const BASIC_REVISION_ID: u64 = 0x7fff_ffff;
const BASIC_32BIT_ADDRESSES: u64 = 1 << 48;
const MEMORY_TYPE_WB: u8 = 6;
/// A VMCS never exceeds 4 KiB (SDM A.1), and modvisor gives each one page.
const VMCS_MAX_SIZE: u32 = 4096;

/// What the caller insists on beyond [`REQUIRED`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Refuse a CPU without usable EPT instead of leaving EPT off.
    pub require_ept: bool,
}

/// Why a CPU's capabilities give no configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A capability MSR that must exist (SDM appendix A) faulted on read.
    UnreadableMsr(u32),
    /// IA32_VMX_BASIC reports a VMCS larger than 4 KiB.
    VmcsTooLarge(u32),
    /// IA32_VMX_BASIC bit 48: VMX structures below 4 GiB only, which no
    /// 64-bit CPU reports.
    NarrowAddresses,
    /// The VMCS memory type is not write-back, the type modvisor maps its
    /// memory with.
    MemoryType(u8),
    /// A control in [`REQUIRED`] may not be 1 on this CPU.
    MissingControl(Control),
    /// [`Policy::require_ept`] and the CPU has no usable EPT.
    EptRequired,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::UnreadableMsr(index) => write!(f, "VMX capability MSR {index:#x} cannot be read"),
            ConfigError::VmcsTooLarge(size) => write!(f, "VMCS size {size} exceeds 4096 bytes (IA32_VMX_BASIC[44:32])"),
            ConfigError::NarrowAddresses => {
                write!(f, "VMX structures limited to 32-bit physical addresses (IA32_VMX_BASIC[48]) on a 64-bit CPU")
            }
            ConfigError::MemoryType(t) => write!(f, "VMCS memory type {t} is not write-back (IA32_VMX_BASIC[53:50])"),
            ConfigError::MissingControl(c) => write!(f, "required {} control not supported: {}", c.kind, c.name),
            ConfigError::EptRequired => {
                write!(f, "EPT required but not supported (or without 4-level walks, write-back or all-context INVEPT)")
            }
        }
    }
}

/// The configuration: the control values to start every VMCS from, and the
/// CPU properties VMX operation depends on. Two CPUs whose configurations
/// differ cannot run the same vCPUs, so every CPU must compute the boot
/// CPU's (KVM compares its `vmcs_config` byte for byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmxConfig {
    /// Written to the first dword of the VMXON region and of every VMCS
    /// (IA32_VMX_BASIC bits 30:0).
    pub revision_id: u32,
    /// Bytes of the VMXON region and of each VMCS (IA32_VMX_BASIC bits
    /// 44:32). Their memory type is always write-back (checked).
    pub vmcs_size: u32,
    pub pin: u32,
    pub primary: u32,
    pub secondary: u32,
    pub tertiary: u64,
    pub exit: u32,
    pub entry: u32,
    /// CR0/CR4 bits that must be 1 (FIXED0) or may be 1 (FIXED1) in VMX
    /// operation, host and guest (SDM A.7, A.8).
    pub cr0_fixed0: u64,
    pub cr0_fixed1: u64,
    pub cr4_fixed0: u64,
    pub cr4_fixed1: u64,
    /// The IA32_VMX_EPT_VPID_CAP bits modvisor relies on (the EPT ones only
    /// with EPT on, the VPID ones only with VPID on): page-walk length,
    /// memory type and the INVEPT/INVVPID types.
    pub ept_vpid_caps: u64,
}

/// The bits of `kind`'s field that `controls` name.
fn bits(controls: &[Control], kind: Kind) -> u64 {
    controls.iter().filter(|c| c.kind == kind).fold(0, |m, c| m | 1 << c.bit)
}

/// A control family's value: the required and optional controls the CPU
/// allows, plus those it forces on; an error names the first required
/// control the CPU does not allow.
fn adjust(kind: Kind, allowed: u64) -> Result<u32, ConfigError> {
    // Bits 31:0 are the allowed-0 settings (1: must be 1), bits 63:32 the
    // allowed-1 settings (0: must be 0).
    let (must_be_1, may_be_1) = (allowed as u32, (allowed >> 32) as u32);
    let value = (bits(&REQUIRED, kind) | bits(&OPTIONAL, kind)) as u32 & may_be_1 | must_be_1;
    match REQUIRED.into_iter().find(|c| c.kind == kind && value & 1 << c.bit == 0) {
        Some(missing) => Err(ConfigError::MissingControl(missing)),
        None => Ok(value),
    }
}

/// The VMCS size IA32_VMX_BASIC gives, once the rest of it is usable: the
/// VMCS fits a page, physical addresses are not limited to 32 bits, and
/// VMX structures are write-back.
fn vmcs_size(basic: u64) -> Result<u32, ConfigError> {
    let vmcs_size = (basic >> 32) as u32 & 0x1fff;
    if vmcs_size > VMCS_MAX_SIZE {
        return Err(ConfigError::VmcsTooLarge(vmcs_size));
    }
    if basic & BASIC_32BIT_ADDRESSES != 0 {
        return Err(ConfigError::NarrowAddresses);
    }
    let memory_type = (basic >> 50) as u8 & 0xf;
    if memory_type != MEMORY_TYPE_WB {
        return Err(ConfigError::MemoryType(memory_type));
    }
    Ok(vmcs_size)
}

impl VmxConfig {
    /// The configuration `caps` allow under `policy`, using the TRUE_* MSRs
    /// when the CPU has them.
    pub fn new(caps: &Caps, policy: Policy) -> Result<VmxConfig, ConfigError> {
        let vmcs_size = vmcs_size(caps.basic)?;
        let ctls = caps.effective_ctls();
        let primary = adjust(Kind::Primary, ctls.procbased)?;
        let has = |value: u32, c: Control| value & 1 << c.bit != 0;
        // No secondary or tertiary field without its "activate" control.
        let secondary = match has(primary, ACTIVATE_SECONDARY_CONTROLS) {
            true => adjust(Kind::Secondary, caps.procbased2.unwrap_or(0))?,
            false => 0,
        };
        // IA32_VMX_PROCBASED_CTLS3 holds allowed-1 settings only: every
        // tertiary control may be 0 (SDM A.3.4).
        let tertiary = match has(primary, ACTIVATE_TERTIARY_CONTROLS) {
            true => bits(&OPTIONAL, Kind::Tertiary) & caps.procbased3.unwrap_or(0),
            false => 0,
        };
        let mut config = VmxConfig {
            revision_id: (caps.basic & BASIC_REVISION_ID) as u32,
            vmcs_size,
            pin: adjust(Kind::Pin, ctls.pinbased)?,
            primary,
            secondary,
            tertiary,
            exit: adjust(Kind::Exit, ctls.exit)?,
            entry: adjust(Kind::Entry, ctls.entry)?,
            cr0_fixed0: caps.cr0_fixed0,
            cr0_fixed1: caps.cr0_fixed1,
            cr4_fixed0: caps.cr4_fixed0,
            cr4_fixed1: caps.cr4_fixed1,
            ept_vpid_caps: 0,
        };
        let cap = caps.ept_vpid_cap.unwrap_or(0);
        config.drop_unmet_prerequisites(cap);
        if policy.require_ept && !config.has(ENABLE_EPT) {
            return Err(ConfigError::EptRequired);
        }
        let ept_caps = if config.has(ENABLE_EPT) { EPT_CAPS } else { 0 };
        let vpid_caps = if config.has(ENABLE_VPID) { VPID_CAPS } else { 0 };
        config.ept_vpid_caps = cap & (ept_caps | vpid_caps);
        Ok(config)
    }

    /// Drops optional controls whose prerequisites are missing, in
    /// dependency order; `cap` is IA32_VMX_EPT_VPID_CAP (0 without it).
    /// SDM vol. 3C "Checks on VM-Execution Control Fields" (chapter "VM
    /// Entries") allows "unrestricted guest" only with EPT, "NMI-window
    /// exiting" only with "virtual NMIs"; "virtualize
    /// x2APIC mode", "APIC-register virtualization" and "virtual-interrupt
    /// delivery" only with "use TPR shadow"; posted interrupts only with
    /// virtual-interrupt delivery. IPI virtualization delivers through
    /// posted-interrupt descriptors into a virtual APIC, so (as in KVM) it
    /// is used only with APIC-register virtualization and posted interrupts.
    fn drop_unmet_prerequisites(&mut self, cap: u64) {
        if cap & EPT_NEEDS != EPT_NEEDS {
            self.clear(ENABLE_EPT);
        }
        if !self.has(ENABLE_EPT) {
            self.clear(UNRESTRICTED_GUEST);
        }
        let invvpid_type = msr::VPID_INVVPID_SINGLE_CONTEXT | msr::VPID_INVVPID_ALL_CONTEXT;
        if cap & msr::VPID_INVVPID == 0 || cap & invvpid_type == 0 {
            self.clear(ENABLE_VPID);
        }
        if !self.has(VIRTUAL_NMIS) {
            self.clear(NMI_WINDOW_EXITING);
        }
        if !self.has(USE_TPR_SHADOW) {
            self.clear(VIRTUALIZE_X2APIC_MODE);
            self.clear(APIC_REGISTER_VIRTUALIZATION);
            self.clear(VIRTUAL_INTERRUPT_DELIVERY);
        }
        if !self.has(VIRTUAL_INTERRUPT_DELIVERY) {
            self.clear(POSTED_INTERRUPTS);
        }
        if !(self.has(APIC_REGISTER_VIRTUALIZATION) && self.has(POSTED_INTERRUPTS)) {
            self.clear(IPI_VIRTUALIZATION);
        }
    }

    /// Whether the configuration sets `c`.
    pub fn has(&self, c: Control) -> bool {
        self.field(c.kind) & 1 << c.bit != 0
    }

    fn field(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Pin => self.pin.into(),
            Kind::Primary => self.primary.into(),
            Kind::Secondary => self.secondary.into(),
            Kind::Tertiary => self.tertiary,
            Kind::Exit => self.exit.into(),
            Kind::Entry => self.entry.into(),
        }
    }

    fn clear(&mut self, c: Control) {
        let keep = !(1u32 << c.bit);
        match c.kind {
            Kind::Pin => self.pin &= keep,
            Kind::Primary => self.primary &= keep,
            Kind::Secondary => self.secondary &= keep,
            Kind::Tertiary => self.tertiary &= !(1u64 << c.bit),
            Kind::Exit => self.exit &= keep,
            Kind::Entry => self.entry &= keep,
        }
    }

    /// The optional controls and whether this configuration uses each, for
    /// the shell's `vmx` command.
    pub fn features(&self) -> [(&'static str, bool); OPTIONAL.len()] {
        OPTIONAL.map(|c| (c.name, self.has(c)))
    }

    /// The fields with the names errors use, in declaration order.
    fn fields(&self) -> [(&'static str, u64); 13] {
        // Destructured so that a new field cannot be left out here.
        let VmxConfig {
            revision_id,
            vmcs_size,
            pin,
            primary,
            secondary,
            tertiary,
            exit,
            entry,
            cr0_fixed0,
            cr0_fixed1,
            cr4_fixed0,
            cr4_fixed1,
            ept_vpid_caps,
        } = *self;
        [
            ("vmcs revision id", revision_id.into()),
            ("vmcs size", vmcs_size.into()),
            ("pin-based controls", pin.into()),
            ("primary processor-based controls", primary.into()),
            ("secondary processor-based controls", secondary.into()),
            ("tertiary processor-based controls", tertiary),
            ("vm-exit controls", exit.into()),
            ("vm-entry controls", entry.into()),
            ("cr0 fixed0", cr0_fixed0),
            ("cr0 fixed1", cr0_fixed1),
            ("cr4 fixed0", cr4_fixed0),
            ("cr4 fixed1", cr4_fixed1),
            ("ept/vpid capabilities", ept_vpid_caps),
        ]
    }

    /// The name of the first field (in declaration order) where `other`
    /// differs, `None` when the two are equal.
    pub fn first_difference(&self, other: &VmxConfig) -> Option<&'static str> {
        self.fields().into_iter().zip(other.fields()).find(|(mine, theirs)| mine.1 != theirs.1).map(|(mine, _)| mine.0)
    }
}
