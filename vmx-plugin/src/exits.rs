//! VM-exit information, decoded: the exit-reason field and the basic exit
//! reasons (SDM vol. 3C, "Basic VM-Exit Information"; vol. 3D appendix C,
//! "VMX Basic Exit Reasons"), the exit qualifications of I/O instructions
//! and control-register accesses ("Exit Qualification for ..." tables),
//! interruption information both for event injection ("VM-Entry Controls
//! for Event Injection") and as exits report it, and a per-reason counter
//! for reports.

use core::fmt;

/// Declares each basic exit reason once: its constant in [`reason`] (with
/// the SDM's name as its doc) and its name in `NAMES`.
macro_rules! basic_reasons {
    ($($constant:ident = $number:literal: $name:literal,)*) => {
        /// Basic exit reasons (bits 15:0 of the exit-reason field).
        pub mod reason {
            $(#[doc = $name] pub const $constant: u16 = $number;)*
        }
        /// The SDM's name of each basic reason; "" for numbers it does not
        /// assign.
        const NAMES: [&str; REASONS] = {
            let mut names = [""; REASONS];
            $(names[$number] = $name;)*
            names
        };
    };
}

/// Basic reasons 0..REASONS have a slot in [`ExitCounts`].
pub const REASONS: usize = 78;

basic_reasons! {
    EXCEPTION_OR_NMI = 0: "exception or NMI",
    EXTERNAL_INTERRUPT = 1: "external interrupt",
    TRIPLE_FAULT = 2: "triple fault",
    INIT = 3: "INIT signal",
    SIPI = 4: "start-up IPI",
    IO_SMI = 5: "I/O SMI",
    OTHER_SMI = 6: "other SMI",
    INTERRUPT_WINDOW = 7: "interrupt window",
    NMI_WINDOW = 8: "NMI window",
    TASK_SWITCH = 9: "task switch",
    CPUID = 10: "CPUID",
    GETSEC = 11: "GETSEC",
    HLT = 12: "HLT",
    INVD = 13: "INVD",
    INVLPG = 14: "INVLPG",
    RDPMC = 15: "RDPMC",
    RDTSC = 16: "RDTSC",
    RSM = 17: "RSM",
    VMCALL = 18: "VMCALL",
    VMCLEAR = 19: "VMCLEAR",
    VMLAUNCH = 20: "VMLAUNCH",
    VMPTRLD = 21: "VMPTRLD",
    VMPTRST = 22: "VMPTRST",
    VMREAD = 23: "VMREAD",
    VMRESUME = 24: "VMRESUME",
    VMWRITE = 25: "VMWRITE",
    VMXOFF = 26: "VMXOFF",
    VMXON = 27: "VMXON",
    CR_ACCESS = 28: "control-register access",
    DR_ACCESS = 29: "MOV DR",
    IO_INSTRUCTION = 30: "I/O instruction",
    RDMSR = 31: "RDMSR",
    WRMSR = 32: "WRMSR",
    INVALID_GUEST_STATE = 33: "VM-entry failure: invalid guest state",
    MSR_LOADING = 34: "VM-entry failure: MSR loading",
    MWAIT = 36: "MWAIT",
    MONITOR_TRAP_FLAG = 37: "monitor trap flag",
    MONITOR = 39: "MONITOR",
    PAUSE = 40: "PAUSE",
    MACHINE_CHECK = 41: "VM-entry failure: machine-check event",
    TPR_BELOW_THRESHOLD = 43: "TPR below threshold",
    APIC_ACCESS = 44: "APIC access",
    VIRTUALIZED_EOI = 45: "virtualized EOI",
    GDTR_IDTR_ACCESS = 46: "access to GDTR or IDTR",
    LDTR_TR_ACCESS = 47: "access to LDTR or TR",
    EPT_VIOLATION = 48: "EPT violation",
    EPT_MISCONFIG = 49: "EPT misconfiguration",
    INVEPT = 50: "INVEPT",
    RDTSCP = 51: "RDTSCP",
    PREEMPTION_TIMER = 52: "VMX-preemption timer expired",
    INVVPID = 53: "INVVPID",
    WBINVD = 54: "WBINVD or WBNOINVD",
    XSETBV = 55: "XSETBV",
    APIC_WRITE = 56: "APIC write",
    RDRAND = 57: "RDRAND",
    INVPCID = 58: "INVPCID",
    VMFUNC = 59: "VMFUNC",
    ENCLS = 60: "ENCLS",
    RDSEED = 61: "RDSEED",
    PML_FULL = 62: "page-modification log full",
    XSAVES = 63: "XSAVES",
    XRSTORS = 64: "XRSTORS",
    PCONFIG = 65: "PCONFIG",
    SPP_EVENT = 66: "SPP-related event",
    UMWAIT = 67: "UMWAIT",
    TPAUSE = 68: "TPAUSE",
    LOADIWKEY = 69: "LOADIWKEY",
    ENCLV = 70: "ENCLV",
    ENQCMD_PASID_FAILURE = 72: "ENQCMD PASID translation failure",
    ENQCMDS_PASID_FAILURE = 73: "ENQCMDS PASID translation failure",
    BUS_LOCK = 74: "bus lock",
    INSTRUCTION_TIMEOUT = 75: "instruction timeout",
    SEAMCALL = 76: "SEAMCALL",
    TDCALL = 77: "TDCALL",
}

/// The SDM's name of basic reason `basic`, if it assigns one.
pub fn reason_name(basic: u16) -> Option<&'static str> {
    NAMES.get(basic as usize).copied().filter(|name| !name.is_empty())
}

/// Malformed exit information or an event VM entry would refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitError {
    /// Interruption type 1 is reserved.
    ReservedEventType,
    /// The vector does not fit the type: NMI must be 2, a hardware
    /// exception 0-31, "other event" (MTF) 0.
    BadVector { kind: EventKind, vector: u8 },
    /// A hardware exception has an error code exactly when its vector is
    /// one of #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP; no other event has one.
    ErrorCodeMismatch { kind: EventKind, vector: u8 },
    /// I/O qualification bits 2:0 hold a size other than 0, 1, 3.
    BadIoSize(u8),
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitError::ReservedEventType => f.write_str("interruption type 1 is reserved"),
            ExitError::BadVector { kind, vector } => {
                write!(f, "vector {vector} is not valid for {} {kind}", kind.article())
            }
            ExitError::ErrorCodeMismatch { kind, vector } => {
                let not = if has_error_code(kind, vector) { "" } else { "not " };
                write!(f, "{} {kind} with vector {vector} must {not}have an error code", kind.article())
            }
            ExitError::BadIoSize(size) => write!(f, "I/O exit qualification holds reserved access size {size}"),
        }
    }
}

/// The exit-reason VMCS field (encoding 0x4402).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitReason(pub u32);

impl ExitReason {
    /// Bits 15:0.
    pub const fn basic(self) -> u16 {
        self.0 as u16
    }
    /// Bit 31: VM entry failed (reasons 33, 34, 41); only the exit
    /// qualification is then valid besides this field.
    pub const fn entry_failure(self) -> bool {
        self.0 & 1 << 31 != 0
    }
    /// Bit 29: the exit came from VMX root operation (SMM dual-monitor).
    pub const fn from_vmx_root(self) -> bool {
        self.0 & 1 << 29 != 0
    }
    /// Bit 28: an MTF exit was pending when this one happened.
    pub const fn pending_mtf(self) -> bool {
        self.0 & 1 << 28 != 0
    }
    /// Bit 27: the exit was incident to enclave mode.
    pub const fn enclave(self) -> bool {
        self.0 & 1 << 27 != 0
    }
    pub fn name(self) -> Option<&'static str> {
        reason_name(self.basic())
    }
}

impl fmt::Display for ExitReason {
    /// E.g. `EPT violation (48)`, `unknown exit reason (99)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name().unwrap_or("unknown exit reason"), self.basic())?;
        if self.entry_failure() {
            f.write_str(", VM entry failed")?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoDirection {
    Out,
    In,
}

/// An I/O-instruction exit qualification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoExit {
    /// Bits 31:16.
    pub port: u16,
    /// Bytes: 1, 2 or 4 (bits 2:0 hold size - 1).
    pub size: u8,
    /// Bit 3: 1 = IN.
    pub direction: IoDirection,
    /// Bit 4: INS/OUTS (the VM-exit instruction-information field and the
    /// guest-linear address then describe the memory operand).
    pub string: bool,
    /// Bit 5: REP prefix.
    pub rep: bool,
    /// Bit 6: the port was an immediate operand (else DX).
    pub immediate: bool,
}

impl IoExit {
    pub fn decode(qualification: u64) -> Result<IoExit, ExitError> {
        let size = match qualification & 7 {
            0 => 1,
            1 => 2,
            3 => 4,
            other => return Err(ExitError::BadIoSize(other as u8)),
        };
        let bit = |n: u32| qualification & 1 << n != 0;
        Ok(IoExit {
            port: (qualification >> 16) as u16,
            size,
            direction: if bit(3) { IoDirection::In } else { IoDirection::Out },
            string: bit(4),
            rep: bit(5),
            immediate: bit(6),
        })
    }
}

impl fmt::Display for IoExit {
    /// E.g. `in 4 bytes from port 0xcfc`, `rep out 1 byte to port 0x3f8
    /// (string)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (op, preposition) = match self.direction {
            IoDirection::In => ("in", "from"),
            IoDirection::Out => ("out", "to"),
        };
        let rep = if self.rep { "rep " } else { "" };
        let bytes = if self.size == 1 { "byte" } else { "bytes" };
        write!(f, "{rep}{op} {} {bytes} {preposition} port {:#x}", self.size, self.port)?;
        if self.string {
            f.write_str(" (string)")?;
        }
        Ok(())
    }
}

/// General-purpose registers in the order of the qualification's register
/// numbers. Number 4 (RSP) lives in the VMCS guest-state RSP field, not
/// among the registers the VMM saves.
pub const GPR_NAMES: [&str; 16] =
    ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

/// A control-register-access exit qualification (bits 5:4: access type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrAccess {
    /// MOV to CR`cr` from the register numbered `gpr` (bits 3:0, 11:8).
    MovTo { cr: u8, gpr: u8 },
    /// MOV from CR`cr` to register `gpr`.
    MovFrom { cr: u8, gpr: u8 },
    /// CLTS (CR0).
    Clts,
    /// LMSW (CR0) with source data bits 31:16; `memory`: bit 6, the operand
    /// was in memory (the guest-linear address field holds it).
    Lmsw { source: u16, memory: bool },
}

impl CrAccess {
    pub fn decode(qualification: u64) -> CrAccess {
        let cr = (qualification & 0xf) as u8;
        let gpr = ((qualification >> 8) & 0xf) as u8;
        match (qualification >> 4) & 3 {
            0 => CrAccess::MovTo { cr, gpr },
            1 => CrAccess::MovFrom { cr, gpr },
            2 => CrAccess::Clts,
            _ => CrAccess::Lmsw { source: (qualification >> 16) as u16, memory: qualification & 1 << 6 != 0 },
        }
    }
}

impl fmt::Display for CrAccess {
    /// E.g. `mov cr4 <- rax`, `mov rbx <- cr3`, `clts`, `lmsw 0x1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CrAccess::MovTo { cr, gpr } => write!(f, "mov cr{cr} <- {}", GPR_NAMES[gpr as usize & 15]),
            CrAccess::MovFrom { cr, gpr } => write!(f, "mov {} <- cr{cr}", GPR_NAMES[gpr as usize & 15]),
            CrAccess::Clts => f.write_str("clts"),
            CrAccess::Lmsw { source, memory } => {
                write!(f, "lmsw {source:#x}{}", if memory { " (memory operand)" } else { "" })
            }
        }
    }
}

/// Interruption types (bits 10:8 of interruption information).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    External = 0,
    Nmi = 2,
    HardwareException = 3,
    SoftwareInterrupt = 4,
    PrivilegedSoftwareException = 5,
    SoftwareException = 6,
    /// Injects a pending MTF exit (vector 0).
    Other = 7,
}

impl EventKind {
    /// "a" or "an", for messages.
    fn article(self) -> &'static str {
        match self {
            EventKind::External | EventKind::Nmi | EventKind::Other => "an",
            _ => "a",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventKind::External => "external interrupt",
            EventKind::Nmi => "NMI",
            EventKind::HardwareException => "hardware exception",
            EventKind::SoftwareInterrupt => "software interrupt",
            EventKind::PrivilegedSoftwareException => "privileged software exception",
            EventKind::SoftwareException => "software exception",
            EventKind::Other => "other event",
        })
    }
}

/// Exception vectors that push an error code (SDM vol. 3A, "Exception and
/// Interrupt Reference").
const ERROR_CODE_VECTORS: [u8; 8] = [8, 10, 11, 12, 13, 14, 17, 21];

fn has_error_code(kind: EventKind, vector: u8) -> bool {
    kind == EventKind::HardwareException && ERROR_CODE_VECTORS.contains(&vector)
}

const VALID: u32 = 1 << 31;
const DELIVER_ERROR_CODE: u32 = 1 << 11;
/// Bit 12 of the VM-exit interruption-information field (not of
/// IDT-vectoring information).
const NMI_UNBLOCKING: u32 = 1 << 12;

/// One event to inject, or one an exit reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub vector: u8,
    pub kind: EventKind,
    /// For the VM-entry exception error code field (0x4018).
    pub error_code: Option<u32>,
}

impl Event {
    /// An event VM entry accepts (SDM vol. 3C, "Checks on VM-Entry Control
    /// Fields"), for a guest in protected mode. A real-mode guest
    /// (unrestricted guest, CR0.PE = 0) takes no error codes: see
    /// [`Event::in_real_mode`].
    pub fn new(kind: EventKind, vector: u8, error_code: Option<u32>) -> Result<Event, ExitError> {
        let vector_ok = match kind {
            EventKind::Nmi => vector == 2,
            EventKind::HardwareException => vector < 32,
            EventKind::Other => vector == 0,
            _ => true,
        };
        if !vector_ok {
            return Err(ExitError::BadVector { kind, vector });
        }
        if error_code.is_some() != has_error_code(kind, vector) {
            return Err(ExitError::ErrorCodeMismatch { kind, vector });
        }
        Ok(Event { vector, kind, error_code })
    }

    pub const fn external(vector: u8) -> Event {
        Event { vector, kind: EventKind::External, error_code: None }
    }
    pub const fn nmi() -> Event {
        Event { vector: 2, kind: EventKind::Nmi, error_code: None }
    }
    /// #UD (6).
    pub const fn ud() -> Event {
        Event::fault(6, None)
    }
    /// #DF (8), error code 0.
    pub const fn df() -> Event {
        Event::fault(8, Some(0))
    }
    /// #GP (13) with `error_code` (0 for a refused RDMSR/WRMSR).
    pub const fn gp(error_code: u32) -> Event {
        Event::fault(13, Some(error_code))
    }
    /// #PF (14); the VMM also sets the guest's CR2.
    pub const fn pf(error_code: u32) -> Event {
        Event::fault(14, Some(error_code))
    }
    const fn fault(vector: u8, error_code: Option<u32>) -> Event {
        Event { vector, kind: EventKind::HardwareException, error_code }
    }

    /// The same event without an error code, as VM entry demands for a
    /// guest with CR0.PE = 0.
    pub const fn in_real_mode(self) -> Event {
        Event { error_code: None, ..self }
    }

    /// The VM-entry interruption-information field (0x4016): vector, type,
    /// "deliver error code", valid.
    pub const fn info(&self) -> u32 {
        let error = if self.error_code.is_some() { DELIVER_ERROR_CODE } else { 0 };
        VALID | error | (self.kind as u32) << 8 | self.vector as u32
    }

    /// Software interrupts and exceptions need the VM-entry instruction
    /// length (0x401A) too: delivery pushes the RIP after the instruction.
    pub const fn needs_instruction_length(&self) -> bool {
        matches!(
            self.kind,
            EventKind::SoftwareInterrupt | EventKind::PrivilegedSoftwareException | EventKind::SoftwareException
        )
    }

    /// The event in a VM-exit interruption-information or IDT-vectoring
    /// information field, `None` when its valid bit is clear; `error_code`
    /// is the matching error-code field, used when bit 11 is set. An event
    /// that was being delivered is re-injected with this value.
    pub fn decode(info: u32, error_code: u32) -> Result<Option<Event>, ExitError> {
        if info & VALID == 0 {
            return Ok(None);
        }
        let kind = match (info >> 8) & 7 {
            0 => EventKind::External,
            2 => EventKind::Nmi,
            3 => EventKind::HardwareException,
            4 => EventKind::SoftwareInterrupt,
            5 => EventKind::PrivilegedSoftwareException,
            6 => EventKind::SoftwareException,
            7 => EventKind::Other,
            _ => return Err(ExitError::ReservedEventType),
        };
        let error_code = (info & DELIVER_ERROR_CODE != 0).then_some(error_code);
        Ok(Some(Event { vector: info as u8, kind, error_code }))
    }
}

impl fmt::Display for Event {
    /// E.g. `hardware exception 13, error code 0x0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.vector)?;
        if let Some(code) = self.error_code {
            write!(f, ", error code {code:#x}")?;
        }
        Ok(())
    }
}

/// Bit 12 of a VM-exit interruption-information field: the exit came from
/// a fault in an IRET that had already unblocked NMIs, so the VMM must set
/// "blocking by NMI" in the guest interruptibility state before it resumes
/// the guest, which re-runs the IRET with NMIs blocked as they were.
pub const fn nmi_unblocking(info: u32) -> bool {
    info & VALID != 0 && info & NMI_UNBLOCKING != 0
}

/// Exits counted by basic reason, for reports. Reasons without a name
/// (unassigned numbers, or beyond [`REASONS`]) share one "other" count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitCounts {
    counts: [u64; REASONS],
    other: u64,
    total: u64,
}

impl Default for ExitCounts {
    fn default() -> Self {
        ExitCounts::new()
    }
}

impl ExitCounts {
    pub const fn new() -> ExitCounts {
        ExitCounts { counts: [0; REASONS], other: 0, total: 0 }
    }

    pub fn record(&mut self, reason: ExitReason) {
        let basic = reason.basic();
        match reason_name(basic) {
            Some(_) => self.counts[basic as usize] += 1,
            None => self.other += 1,
        }
        self.total += 1;
    }

    /// Adds another table (e.g. one vCPU's into the VM's).
    pub fn merge(&mut self, other: &ExitCounts) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.other += other.other;
        self.total += other.total;
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Exits with basic reason `basic` (0 for a reason counted as other).
    pub fn count(&self, basic: u16) -> u64 {
        reason_name(basic).map_or(0, |_| self.counts[basic as usize])
    }

    /// The non-zero counts in reason order, as (name, count), then
    /// ("other", count) if any.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        let named = NAMES.iter().zip(self.counts.iter()).map(|(&name, &count)| (name, count));
        named.chain(core::iter::once(("other", self.other))).filter(|&(_, count)| count != 0)
    }
}

impl fmt::Display for ExitCounts {
    /// E.g. `3 exits: CPUID 1, I/O instruction 2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} exit{}", self.total, if self.total == 1 { "" } else { "s" })?;
        for (i, (name, count)) in self.iter().enumerate() {
            write!(f, "{}{name} {count}", if i == 0 { ": " } else { ", " })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
