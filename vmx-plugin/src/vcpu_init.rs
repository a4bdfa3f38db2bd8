//! A vCPU's state at its first entry, decided from what the `vm` table's
//! caller asked for ([`VcpuInit`]): the checks VM entry would make (SDM
//! vol. 3C, "Checks on the Guest State Area"), turned into refusals that
//! name the rule, and the VMCS guest-state values. Pure: `guest/vmcs.rs`
//! writes the result.

use core::fmt;
use vmx_api::{vcpu_mode, VcpuInit};

pub const CR0_PE: u64 = 1;
pub const CR0_ET: u64 = 1 << 4;
pub const CR0_NE: u64 = 1 << 5;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4_PAE: u64 = 1 << 5;
/// 5-level paging: the guest-virtual walk (`gva`) knows 4 levels only.
const CR4_LA57: u64 = 1 << 12;
pub const CR4_VMXE: u64 = 1 << 13;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;
const RFLAGS_FIXED: u64 = 1 << 1;
/// RFLAGS bits that must be 0 (reserved: 3, 5, 15, 22..63).
const RFLAGS_RESERVED: u64 = !0x3f_ffff | 1 << 3 | 1 << 5 | 1 << 15;
const RFLAGS_VM: u64 = 1 << 17;

/// Access rights (SDM vol. 3C, "Guest Register State"): 64-bit code, flat
/// read-write data, 16-bit-mode code, a busy 64-bit (or 32-bit) TSS, and
/// an unusable segment.
const AR_CODE64: u32 = 0xa09b;
const AR_DATA: u32 = 0xc093;
const AR_CODE16: u32 = 0x9b;
const AR_DATA16: u32 = 0x93;
const AR_TSS: u32 = 0x8b;
const AR_UNUSABLE: u32 = 1 << 16;

/// What the CPUs allow, from the VMX configuration and the host.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub cr0_fixed0: u64,
    pub cr0_fixed1: u64,
    pub cr4_fixed0: u64,
    pub cr4_fixed1: u64,
    /// "Unrestricted guest" is on: real mode and CR0.PE/PG clear allowed.
    pub unrestricted: bool,
    /// The host's EFER, which the guest runs with (it is not switched).
    pub host_efer: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub selector: u16,
    pub base: u64,
    pub limit: u32,
    pub access: u32,
}

/// The VMCS guest state and register file of a first entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestState {
    /// ES, CS, SS, DS, FS, GS, LDTR, TR: the VMCS's order.
    pub segments: [Segment; 8],
    pub gdtr: (u64, u32),
    pub idtr: (u64, u32),
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    /// What the guest reads from CR4 (VMXE hidden).
    pub cr4_shadow: u64,
    pub rip: u64,
    pub rsp: u64,
    pub rflags: u64,
    /// The "IA-32e mode guest" entry control.
    pub long_mode: bool,
    /// RAX, RBX, RCX, RDX, RSI, RDI, RBP, R8 .. R15.
    pub gprs: [u64; 15],
}

/// A refusal, naming the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    BadMode(u32),
    NoUnrestrictedGuest,
    /// `what` must have `bits` set.
    Missing {
        what: &'static str,
        bits: u64,
    },
    /// `what` has `bits` set that the CPU (or modvisor) does not allow.
    NotAllowed {
        what: &'static str,
        bits: u64,
    },
    BadSelector {
        what: &'static str,
        selector: u16,
        gdt_limit: u16,
    },
    NotCanonical(u64),
    Above64K {
        what: &'static str,
        value: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::BadMode(m) => write!(f, "vCPU mode {m} is neither long (0) nor real (1) mode"),
            Error::NoUnrestrictedGuest => {
                write!(f, "real mode needs the VMX \"unrestricted guest\" control, which this CPU lacks")
            }
            Error::Missing { what, bits } => write!(f, "{what} must have bits {bits:#x} set"),
            Error::NotAllowed { what, bits } => write!(f, "{what} bits {bits:#x} are not allowed here"),
            Error::BadSelector { what, selector, gdt_limit } => write!(
                f,
                "{what} selector {selector:#x} must be a GDT index at ring 0 within the GDT limit {gdt_limit:#x}"
            ),
            Error::NotCanonical(rip) => write!(f, "RIP {rip:#x} is not canonical"),
            Error::Above64K { what, value } => write!(f, "real-mode {what} {value:#x} does not fit 16 bits"),
        }
    }
}

/// The state of a first entry as `init` asks for it, or the rule it breaks.
pub fn decide(init: &VcpuInit, limits: &Limits) -> Result<GuestState, Error> {
    check_rflags(init.rflags, init.mode == vcpu_mode::LONG)?;
    match init.mode {
        vcpu_mode::LONG => long_mode(init, limits),
        vcpu_mode::REAL => real_mode(init, limits),
        m => Err(Error::BadMode(m)),
    }
}

fn check_rflags(rflags: u64, long: bool) -> Result<(), Error> {
    let reserved = rflags & RFLAGS_RESERVED | if long { rflags & RFLAGS_VM } else { 0 };
    if reserved != 0 {
        return Err(Error::NotAllowed { what: "RFLAGS", bits: reserved });
    }
    Ok(())
}

fn require(what: &'static str, value: u64, bits: u64) -> Result<(), Error> {
    match bits & !value {
        0 => Ok(()),
        missing => Err(Error::Missing { what, bits: missing }),
    }
}

fn allow(what: &'static str, value: u64, allowed: u64) -> Result<(), Error> {
    match value & !allowed {
        0 => Ok(()),
        bits => Err(Error::NotAllowed { what, bits }),
    }
}

/// A long-mode selector: a GDT entry (TI clear) at RPL 0 inside the limit;
/// 0 is allowed where `null_ok`.
fn selector(what: &'static str, selector: u16, gdt_limit: u16, null_ok: bool) -> Result<(), Error> {
    let null = selector & !3 == 0;
    let inside = selector & 7 == 0 && selector as u32 + 7 <= gdt_limit as u32;
    if (null && null_ok && selector == 0) || (!null && inside) {
        return Ok(());
    }
    Err(Error::BadSelector { what, selector, gdt_limit })
}

fn long_mode(init: &VcpuInit, l: &Limits) -> Result<GuestState, Error> {
    require("CR0", init.cr0, CR0_PE | CR0_PG)?;
    allow("CR0", init.cr0, l.cr0_fixed1)?;
    require("CR4", init.cr4, CR4_PAE)?;
    allow("CR4", init.cr4, l.cr4_fixed1 & !CR4_LA57)?;
    require("EFER", init.efer, EFER_LME)?;
    allow("EFER", init.efer, EFER_LME | EFER_LMA | l.host_efer)?;
    selector("CS", init.cs, init.gdt_limit, false)?;
    selector("SS", init.ss, init.gdt_limit, true)?;
    selector("DS", init.ds, init.gdt_limit, true)?;
    if ((init.rip as i64) << 16 >> 16) as u64 != init.rip {
        return Err(Error::NotCanonical(init.rip));
    }
    let data = |sel: u16| match sel {
        0 => Segment { access: AR_UNUSABLE, ..Segment::default() },
        _ => Segment { selector: sel, base: 0, limit: 0xffff_ffff, access: AR_DATA },
    };
    let ds = data(init.ds);
    let cs = Segment { selector: init.cs, base: 0, limit: 0xffff_ffff, access: AR_CODE64 };
    let tr = Segment { selector: 0, base: 0, limit: 0x67, access: AR_TSS };
    let ldtr = Segment { access: AR_UNUSABLE, ..Segment::default() };
    let cr4 = init.cr4 | l.cr4_fixed0;
    Ok(GuestState {
        segments: [ds, cs, data(init.ss), ds, ds, ds, ldtr, tr],
        gdtr: (init.gdt_base, init.gdt_limit as u32),
        idtr: (0, 0),
        cr0: init.cr0 | l.cr0_fixed0,
        cr3: init.cr3,
        cr4,
        cr4_shadow: cr4 & !CR4_VMXE,
        rip: init.rip,
        rsp: init.rsp,
        rflags: init.rflags | RFLAGS_FIXED,
        long_mode: true,
        gprs: init.gprs,
    })
}

fn real_mode(init: &VcpuInit, l: &Limits) -> Result<GuestState, Error> {
    if !l.unrestricted {
        return Err(Error::NoUnrestrictedGuest);
    }
    for (what, value) in [("IP", init.rip), ("SP", init.rsp)] {
        if value > 0xffff {
            return Err(Error::Above64K { what, value });
        }
    }
    let seg = |selector: u16, access| Segment { selector, base: (selector as u64) << 4, limit: 0xffff, access };
    let ds = seg(init.ds, AR_DATA16);
    let tr = Segment { selector: 0, base: 0, limit: 0xffff, access: AR_TSS };
    let ldtr = Segment { access: AR_UNUSABLE, ..Segment::default() };
    let cr4 = l.cr4_fixed0;
    Ok(GuestState {
        segments: [ds, seg(init.cs, AR_CODE16), seg(init.ss, AR_DATA16), ds, ds, ds, ldtr, tr],
        gdtr: (0, 0xffff),
        idtr: (0, 0x3ff),
        cr0: (CR0_ET | CR0_NE | l.cr0_fixed0) & !(CR0_PE | CR0_PG) & l.cr0_fixed1,
        cr3: 0,
        cr4,
        cr4_shadow: cr4 & !CR4_VMXE,
        rip: init.rip,
        rsp: init.rsp,
        rflags: init.rflags | RFLAGS_FIXED,
        long_mode: false,
        gprs: init.gprs,
    })
}

/// The test-guest ABI's entry (README "Guests"): 64-bit, the VMM's GDT
/// at `gdt` (null, code 0x08, data 0x10), paging from `pml4`, RDI/RSI/RDX
/// = vCPU id, vCPU count, RAM size.
pub fn test_abi(gdt: u64, pml4: u64, rip: u64, rsp: u64, abi: [u64; 3], host_efer: u64) -> VcpuInit {
    let mut gprs = [0; 15];
    // RDI, RSI, RDX in `gprs` order.
    (gprs[5], gprs[4], gprs[3]) = (abi[0], abi[1], abi[2]);
    VcpuInit {
        mode: vcpu_mode::LONG,
        cs: 0x08,
        ss: 0x10,
        ds: 0x10,
        cr0: CR0_PE | CR0_ET | CR0_NE | CR0_PG,
        cr3: pml4,
        cr4: CR4_PAE,
        efer: EFER_LME | EFER_LMA | host_efer,
        gdt_base: gdt,
        gdt_limit: 3 * 8 - 1,
        rip,
        rsp,
        rflags: RFLAGS_FIXED,
        gprs,
        ..VcpuInit::default()
    }
}

#[cfg(test)]
mod tests;
