//! A vCPU's x87, SSE and AVX state and its XCR0. The host has no SSE code
//! (its target is soft-float), so the guest's registers stay in the CPU
//! across exits; they are saved when a slice ends and restored when the
//! vCPU's next slice starts, on whichever pCPU, with XCR0 switched around
//! it. Saving and restoring every component the guest may enable, not
//! only those it has enabled, keeps one VM's state out of another's
//! registers: a component the guest has never used is restored to its
//! initial state.

use crate::cpuid::{self, CpuidError};
use crate::insn;

/// How this machine carries the state.
#[derive(Clone, Copy, Debug)]
enum Saving {
    /// XSAVE/XRSTOR of `full`: every component the guest may enable.
    Xsave { full: u64, size: u64 },
    /// No XSAVE on this CPU: FXSAVE/FXRSTOR of x87 and SSE.
    Fxsave,
}

const FXSAVE_SIZE: u64 = 512;
/// Offsets in the legacy region (SDM vol. 1, "FXSAVE"): FCW and MXCSR.
const FCW: u64 = 0;
const MXCSR: u64 = 24;
/// Their values after reset (SDM vol. 3A, "Initialization Overview").
const FCW_RESET: u16 = 0x37f;
const MXCSR_RESET: u32 = 0x1f80;
/// XCR0 at reset: x87 only.
const XCR0_RESET: u64 = 1;

fn host_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

fn saving() -> Saving {
    static SAVING: spin::Once<Saving> = spin::Once::new();
    *SAVING.call_once(|| {
        if host_cpuid(1, 0)[2] & 1 << 26 == 0 {
            return Saving::Fxsave;
        }
        let full = cpuid::guest_xcr0_supported(host_cpuid) | XCR0_RESET;
        // ECX: the largest area any XCR0 of this CPU needs.
        Saving::Xsave { full, size: u64::from(host_cpuid(0xd, 0)[2]).max(FXSAVE_SIZE + 64) }
    })
}

/// Bytes of the save area each vCPU needs.
pub fn area_size() -> u64 {
    match saving() {
        Saving::Xsave { size, .. } => size,
        Saving::Fxsave => FXSAVE_SIZE,
    }
}

/// Makes CR4 on this pCPU enable what [`Saving`] uses (the loader leaves
/// both bits clear; the host never depends on them). Before a VMCS is made
/// current: an exit loads the host CR4 the VMCS holds, which must have
/// them.
pub fn prepare_host() {
    let bits = match saving() {
        Saving::Xsave { .. } => insn::CR4_OSFXSR | insn::CR4_OSXSAVE,
        Saving::Fxsave => insn::CR4_OSFXSR,
    };
    if insn::cr4() & bits != bits {
        // SAFETY: CPUID offers FXSR on every x86_64 CPU, and XSAVE when
        // `saving` chose it.
        unsafe { insn::set_cr4_fpu(bits) };
    }
}

pub struct Fpu {
    /// The save area: identity-mapped frames the vCPU holds.
    area: u64,
    xcr0: u64,
}

impl Fpu {
    /// The state at reset, in the zeroed area at `area` (at least
    /// [`area_size`] bytes, page-aligned): an XSAVE header saying every
    /// component is in its initial state, and the reset FCW and MXCSR,
    /// which XRSTOR and FXRSTOR load from the legacy region.
    pub fn new(area: u64) -> Fpu {
        // SAFETY: the vCPU's own zeroed frames, identity-mapped; both
        // words are aligned.
        unsafe { ((area + FCW) as *mut u16).write(FCW_RESET) };
        // SAFETY: as above.
        unsafe { ((area + MXCSR) as *mut u32).write(MXCSR_RESET) };
        Fpu { area, xcr0: XCR0_RESET }
    }

    pub fn xcr0(&self) -> u64 {
        self.xcr0
    }

    /// At the start of a slice, on the pCPU that runs it, after
    /// [`prepare_host`].
    pub fn load(&self) {
        match saving() {
            Saving::Xsave { full, .. } => {
                // SAFETY: CR4.OSXSAVE is set (`prepare_host`), `full` is a valid
                // XCR0 here, the area is this vCPU's, valid and as large
                // as any XCR0 needs; the guest's XCR0 passed the checks.
                unsafe { insn::xsetbv(full) };
                // SAFETY: as above.
                unsafe { insn::xrstor(self.area, full) };
                if self.xcr0 != full {
                    // SAFETY: as above.
                    unsafe { insn::xsetbv(self.xcr0) };
                }
            }
            // SAFETY: CR4.OSFXSR is set; the area is this vCPU's, valid.
            Saving::Fxsave => unsafe { insn::fxrstor(self.area) },
        }
    }

    /// At the end of a slice, on the same pCPU.
    pub fn save(&self) {
        match saving() {
            Saving::Xsave { full, .. } => {
                if self.xcr0 != full {
                    // SAFETY: as in `load`, which ran first in this slice.
                    unsafe { insn::xsetbv(full) };
                }
                // SAFETY: as in `load`.
                unsafe { insn::xsave(self.area, full) };
            }
            // SAFETY: as in `load`.
            Saving::Fxsave => unsafe { insn::fxsave(self.area) },
        }
    }

    /// The guest's XSETBV (during a slice, its XCR0 loaded): refused with
    /// the reason for the guest's #GP, or done.
    pub fn xsetbv(&mut self, index: u32, value: u64) -> Result<(), CpuidError> {
        cpuid::check_xsetbv(host_cpuid, index, value)?;
        self.xcr0 = value;
        // SAFETY: this CPU has XSAVE (the guest's CPUID offers it only
        // then, and the guest could not set CR4.OSXSAVE otherwise), CR4 is
        // ready (`load`), and the value passed the checks.
        unsafe { insn::xsetbv(value) };
        Ok(())
    }
}
