//! VMCS field encodings (SDM Vol. 3D, Appendix B) and the writes that make
//! a vCPU's VMCS: host state for the pCPU it runs on, controls from the
//! configuration, and the 64-bit guest state of modvisor's guest ABI.

use crate::config::{self, VmxConfig};
use crate::insn::{self, VmFail};
use crate::vapic::virt::{self, Mode};

pub const VPID: u64 = 0x0000;
const MSR_BITMAP: u64 = 0x2004;
pub const TSC_OFFSET: u64 = 0x2010;
const VIRTUAL_APIC_PAGE: u64 = 0x2012;
pub const EPT_POINTER: u64 = 0x201a;
pub const GUEST_PHYSICAL_ADDRESS: u64 = 0x2400;
pub const VMCS_LINK_POINTER: u64 = 0x2800;
pub const GUEST_DEBUGCTL: u64 = 0x2802;

pub const PIN_CONTROLS: u64 = 0x4000;
pub const PRIMARY_CONTROLS: u64 = 0x4002;
pub const EXCEPTION_BITMAP: u64 = 0x4004;
pub const CR3_TARGET_COUNT: u64 = 0x400a;
pub const EXIT_CONTROLS: u64 = 0x400c;
pub const EXIT_MSR_STORE_COUNT: u64 = 0x400e;
pub const EXIT_MSR_LOAD_COUNT: u64 = 0x4010;
pub const ENTRY_CONTROLS: u64 = 0x4012;
pub const ENTRY_MSR_LOAD_COUNT: u64 = 0x4014;
pub const ENTRY_INTERRUPTION_INFO: u64 = 0x4016;
pub const ENTRY_EXCEPTION_ERROR: u64 = 0x4018;
pub const ENTRY_INSTRUCTION_LENGTH: u64 = 0x401a;
const TPR_THRESHOLD: u64 = 0x401c;
pub const SECONDARY_CONTROLS: u64 = 0x401e;
pub const EXIT_REASON: u64 = 0x4402;
pub const EXIT_INTERRUPTION_INFO: u64 = 0x4404;
pub const IDT_VECTORING_INFO: u64 = 0x4408;
pub const IDT_VECTORING_ERROR: u64 = 0x440a;
pub const EXIT_INSTRUCTION_LENGTH: u64 = 0x440c;

const GUEST_ES_SELECTOR: u64 = 0x0800;
const GUEST_ES_LIMIT: u64 = 0x4800;
const GUEST_ES_AR: u64 = 0x4814;
const GUEST_ES_BASE: u64 = 0x6806;
pub const GUEST_CS_AR: u64 = 0x4816;
pub const GUEST_CS_BASE: u64 = 0x6808;
const GUEST_GDTR_LIMIT: u64 = 0x4810;
const GUEST_IDTR_LIMIT: u64 = 0x4812;
const GUEST_GDTR_BASE: u64 = 0x6816;
const GUEST_IDTR_BASE: u64 = 0x6818;
pub const GUEST_INTERRUPTIBILITY: u64 = 0x4824;
pub const GUEST_ACTIVITY_STATE: u64 = 0x4826;
pub const PREEMPTION_TIMER_VALUE: u64 = 0x482e;
const GUEST_SYSENTER_CS: u64 = 0x482a;
pub const GUEST_CR0: u64 = 0x6800;
pub const GUEST_CR3: u64 = 0x6802;
pub const GUEST_CR4: u64 = 0x6804;
const GUEST_DR7: u64 = 0x681a;
pub const GUEST_RSP: u64 = 0x681c;
pub const GUEST_RIP: u64 = 0x681e;
pub const GUEST_RFLAGS: u64 = 0x6820;
const GUEST_PENDING_DEBUG: u64 = 0x6822;
const GUEST_SYSENTER_ESP: u64 = 0x6824;
const GUEST_SYSENTER_EIP: u64 = 0x6826;
pub const EXIT_QUALIFICATION: u64 = 0x6400;

const CR0_GUEST_HOST_MASK: u64 = 0x6000;
const CR4_GUEST_HOST_MASK: u64 = 0x6002;
const CR0_READ_SHADOW: u64 = 0x6004;
const CR4_READ_SHADOW: u64 = 0x6006;

const HOST_ES_SELECTOR: u64 = 0x0c00;
const HOST_CS_SELECTOR: u64 = 0x0c02;
const HOST_SS_SELECTOR: u64 = 0x0c04;
const HOST_DS_SELECTOR: u64 = 0x0c06;
const HOST_FS_SELECTOR: u64 = 0x0c08;
const HOST_GS_SELECTOR: u64 = 0x0c0a;
const HOST_TR_SELECTOR: u64 = 0x0c0c;
const HOST_SYSENTER_CS: u64 = 0x4c00;
const HOST_CR0: u64 = 0x6c00;
const HOST_CR3: u64 = 0x6c02;
const HOST_CR4: u64 = 0x6c04;
const HOST_FS_BASE: u64 = 0x6c06;
const HOST_GS_BASE: u64 = 0x6c08;
const HOST_TR_BASE: u64 = 0x6c0a;
const HOST_GDTR_BASE: u64 = 0x6c0c;
const HOST_IDTR_BASE: u64 = 0x6c0e;
const HOST_SYSENTER_ESP: u64 = 0x6c10;
const HOST_SYSENTER_EIP: u64 = 0x6c12;

/// Guest-physical layout of the test-guest ABI (README "Guests"): GDT,
/// then the boot page tables, all in the first 16 KiB.
pub const GDT: u64 = 0x500;
pub const PML4: u64 = 0x1000;

use crate::vcpu_init::{GuestState, CR0_PE, CR0_PG};

/// Writes `value` to `field` of the current VMCS, naming the field on
/// failure.
pub fn write(field: u64, value: u64) -> Result<(), Fail> {
    // SAFETY: VMX root operation with this vCPU's VMCS current (every
    // caller in this module runs between VMPTRLD and the next VMCLEAR);
    // the values are the ones this module computes for each field.
    unsafe { insn::vmwrite(field, value) }.map_err(|e| Fail { field, error: e })
}

/// A VMWRITE that failed: which field, how.
#[derive(Clone, Copy, Debug)]
pub struct Fail {
    pub field: u64,
    pub error: VmFail,
}

impl core::fmt::Display for Fail {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "VMWRITE of field {:#06x}: {}", self.field, self.error)
    }
}

/// The host state of the pCPU the VMCS is current on: what a VM exit
/// loads (SDM 27.5). HOST_RSP and HOST_RIP are written by the entry code.
pub fn write_host_state() -> Result<(), Fail> {
    use x86_64::instructions::tables::{sgdt, sidt};
    use x86_64::registers::segmentation::{Segment, CS, SS};
    let gdt = sgdt();
    let tr: u16;
    // SAFETY: STR only reads the task register's selector.
    unsafe { core::arch::asm!("str {0:x}", out(reg) tr, options(nomem, nostack, preserves_flags)) };
    // The TSS descriptor (16 bytes in long mode) gives TR's base.
    // SAFETY: the loader's GDT holds the descriptor TR selects.
    let descriptor = unsafe { *((gdt.base.as_u64() + (tr & !7) as u64) as *const [u32; 4]) };
    let tr_base = (descriptor[0] >> 16) as u64
        | ((descriptor[1] & 0xff) as u64) << 16
        | ((descriptor[1] >> 24) as u64) << 24
        | (descriptor[2] as u64) << 32;
    write(HOST_CR0, insn::cr0())?;
    write(HOST_CR3, x86_64::registers::control::Cr3::read_raw().0.start_address().as_u64())?;
    write(HOST_CR4, insn::cr4())?;
    write(HOST_CS_SELECTOR, CS::get_reg().0 as u64)?;
    write(HOST_SS_SELECTOR, SS::get_reg().0 as u64)?;
    for field in [HOST_ES_SELECTOR, HOST_DS_SELECTOR, HOST_FS_SELECTOR, HOST_GS_SELECTOR] {
        write(field, 0)?;
    }
    write(HOST_TR_SELECTOR, tr as u64)?;
    write(HOST_TR_BASE, tr_base)?;
    write(HOST_GDTR_BASE, gdt.base.as_u64())?;
    write(HOST_IDTR_BASE, sidt().base.as_u64())?;
    // SAFETY: FS_BASE and GS_BASE exist on every x86_64 CPU.
    write(HOST_FS_BASE, unsafe { insn::rdmsr(0xc000_0100) })?;
    // SAFETY: as above.
    write(HOST_GS_BASE, unsafe { insn::rdmsr(0xc000_0101) })?;
    write(HOST_SYSENTER_CS, 0)?;
    write(HOST_SYSENTER_ESP, 0)?;
    write(HOST_SYSENTER_EIP, 0)
}

/// The primary and secondary processor-based controls: those of the
/// configuration modvisor uses for every guest, plus the APIC mode's.
fn execution_controls(config: &VmxConfig, apic: Mode) -> (u64, u64) {
    let mut primary = config.primary as u64;
    for control in [
        config::CR3_LOAD_EXITING,
        config::CR3_STORE_EXITING,
        config::INVLPG_EXITING,
        config::USE_TPR_SHADOW,
        config::ACTIVATE_TERTIARY_CONTROLS,
        // Set only while an interrupt or NMI waits for the guest to take it.
        config::INTERRUPT_WINDOW_EXITING,
        config::NMI_WINDOW_EXITING,
    ] {
        primary &= !bit(control);
    }
    let mut secondary = (config.secondary as u64)
        & (bit(config::ENABLE_EPT) | bit(config::ENABLE_VPID) | bit(config::UNRESTRICTED_GUEST));
    for &control in apic.controls() {
        match control.kind {
            config::Kind::Primary => primary |= bit(control),
            _ => secondary |= bit(control),
        }
    }
    if apic == Mode::Virtualized {
        // CR8 is the TPR, which the TPR shadow virtualizes.
        primary &= !(bit(config::CR8_LOAD_EXITING) | bit(config::CR8_STORE_EXITING));
    }
    (primary, secondary)
}

/// What the controls point at, and the vCPU's APIC mode.
pub struct Pages {
    pub eptp: u64,
    pub vpid: u16,
    pub msr_bitmap: u64,
    pub apic_page: u64,
    pub apic: Mode,
}

fn bit(c: config::Control) -> u64 {
    1 << c.bit
}

/// The execution, exit and entry controls from the configuration: EPT and
/// VPID on, every I/O port exiting, MSRs by the bitmap (the x2APIC ICR in
/// particular must never reach the real APIC), the APIC controls of the
/// vCPU's mode, and external interrupts left pending on exit (not
/// acknowledged) so the host takes them through its own IDT once it
/// enables interrupts.
pub fn write_controls(config: &VmxConfig, pages: &Pages, state: &GuestState) -> Result<(), Fail> {
    let (primary, secondary) = execution_controls(config, pages.apic);
    let pin = config.pin as u64 & !bit(config::POSTED_INTERRUPTS);
    let exit = config.exit as u64 & !bit(config::ACK_INTERRUPT_ON_EXIT);
    if pages.apic == Mode::Virtualized {
        write(VIRTUAL_APIC_PAGE, pages.apic_page)?;
        write(TPR_THRESHOLD, 0)?;
        // Edge-triggered interrupts only (no I/O APIC): no EOI exits.
        for field in virt::VMCS_EOI_EXIT_BITMAPS {
            write(field as u64, 0)?;
        }
    }
    write(MSR_BITMAP, pages.msr_bitmap)?;
    write(PIN_CONTROLS, pin)?;
    write(PRIMARY_CONTROLS, primary)?;
    write(SECONDARY_CONTROLS, secondary)?;
    write(EXIT_CONTROLS, exit)?;
    let ia32e = 1 << config::IA32E_MODE_GUEST.bit;
    let entry = if state.long_mode { config.entry as u64 | ia32e } else { config.entry as u64 & !ia32e };
    write(ENTRY_CONTROLS, entry)?;
    write(EXCEPTION_BITMAP, 0)?;
    write(CR3_TARGET_COUNT, 0)?;
    for field in [EXIT_MSR_STORE_COUNT, EXIT_MSR_LOAD_COUNT, ENTRY_MSR_LOAD_COUNT, ENTRY_INTERRUPTION_INFO] {
        write(field, 0)?;
    }
    write(EPT_POINTER, pages.eptp)?;
    write(VPID, pages.vpid as u64)?;
    write(TSC_OFFSET, 0)?;
    // The guest owns CR0/CR4 but for the bits VMX operation fixes: those
    // read as they are (CR4.VMXE as clear) and exit when it tries to
    // change them.
    write(CR0_GUEST_HOST_MASK, config.cr0_fixed0 & !(CR0_PE | CR0_PG))?;
    write(CR4_GUEST_HOST_MASK, config.cr4_fixed0)?;
    write(CR0_READ_SHADOW, state.cr0)?;
    write(CR4_READ_SHADOW, state.cr4_shadow)
}

/// The guest state of a first entry (`crate::vcpu_init` decided it).
pub fn write_guest_state(state: &GuestState) -> Result<(), Fail> {
    // ES, CS, SS, DS, FS, GS, LDTR, TR: consecutive encodings, 2 apart.
    for (i, seg) in state.segments.iter().enumerate() {
        let i = i as u64 * 2;
        write(GUEST_ES_SELECTOR + i, seg.selector as u64)?;
        write(GUEST_ES_LIMIT + i, seg.limit as u64)?;
        write(GUEST_ES_AR + i, seg.access as u64)?;
        write(GUEST_ES_BASE + i, seg.base)?;
    }
    write(GUEST_GDTR_BASE, state.gdtr.0)?;
    write(GUEST_GDTR_LIMIT, state.gdtr.1 as u64)?;
    write(GUEST_IDTR_BASE, state.idtr.0)?;
    write(GUEST_IDTR_LIMIT, state.idtr.1 as u64)?;
    write(GUEST_CR0, state.cr0)?;
    write(GUEST_CR3, state.cr3)?;
    write(GUEST_CR4, state.cr4)?;
    write(GUEST_DR7, 0x400)?;
    write(GUEST_RSP, state.rsp)?;
    write(GUEST_RIP, state.rip)?;
    write(GUEST_RFLAGS, state.rflags)?;
    for field in [GUEST_PENDING_DEBUG, GUEST_SYSENTER_ESP, GUEST_SYSENTER_EIP, GUEST_SYSENTER_CS] {
        write(field, 0)?;
    }
    write(GUEST_INTERRUPTIBILITY, 0)?;
    write(GUEST_ACTIVITY_STATE, 0)?;
    write(VMCS_LINK_POINTER, u64::MAX)?;
    write(GUEST_DEBUGCTL, 0)
}

/// Reads `field` of the current VMCS (0 if it cannot be read: the exit
/// handlers read only fields every VMCS has).
pub fn read(field: u64) -> u64 {
    // SAFETY: VMX root operation with the vCPU's VMCS current (callers run
    // in the exit path, after VMPTRLD).
    unsafe { insn::vmread(field) }.unwrap_or(0)
}
