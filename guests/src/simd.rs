//! All sixteen XMM or YMM registers at once, from and into memory: the
//! `fpu` guest fills them, lets the VMM run others, and reads them back.
//! The guests are built without SSE, so the compiler never uses these
//! registers itself and the asm need not declare them.

use core::arch::asm;

/// Sixteen 32-byte registers; with SSE only, the low 16 bytes of each.
pub type Registers = [[u8; 32]; 16];

macro_rules! each_register {
    ($insn:literal, $load:ident) => {
        concat!(
            $insn, " ", each_register!(@op $load, 0), "\n",
            $insn, " ", each_register!(@op $load, 1), "\n",
            $insn, " ", each_register!(@op $load, 2), "\n",
            $insn, " ", each_register!(@op $load, 3), "\n",
            $insn, " ", each_register!(@op $load, 4), "\n",
            $insn, " ", each_register!(@op $load, 5), "\n",
            $insn, " ", each_register!(@op $load, 6), "\n",
            $insn, " ", each_register!(@op $load, 7), "\n",
            $insn, " ", each_register!(@op $load, 8), "\n",
            $insn, " ", each_register!(@op $load, 9), "\n",
            $insn, " ", each_register!(@op $load, 10), "\n",
            $insn, " ", each_register!(@op $load, 11), "\n",
            $insn, " ", each_register!(@op $load, 12), "\n",
            $insn, " ", each_register!(@op $load, 13), "\n",
            $insn, " ", each_register!(@op $load, 14), "\n",
            $insn, " ", each_register!(@op $load, 15),
        )
    };
    (@op xmm_load, $n:literal) => { concat!("xmm", $n, ", [{p} + ", $n, " * 32]") };
    (@op xmm_store, $n:literal) => { concat!("[{p} + ", $n, " * 32], xmm", $n) };
    (@op ymm_load, $n:literal) => { concat!("ymm", $n, ", [{p} + ", $n, " * 32]") };
    (@op ymm_store, $n:literal) => { concat!("[{p} + ", $n, " * 32], ymm", $n) };
}

/// Loads XMM0-15 (`avx`: YMM0-15) from `from`.
///
/// # Safety
/// CR4.OSFXSR is set; with `avx`, XCR0 enables AVX.
pub unsafe fn load(from: &Registers, avx: bool) {
    let p = from.as_ptr();
    if avx {
        // SAFETY: per the caller; reads `from` only.
        unsafe { asm!(each_register!("vmovdqu", ymm_load), p = in(reg) p, options(nostack, preserves_flags)) };
    } else {
        // SAFETY: as above.
        unsafe { asm!(each_register!("movdqu", xmm_load), p = in(reg) p, options(nostack, preserves_flags)) };
    }
}

/// Stores XMM0-15 (`avx`: YMM0-15) into `to`.
///
/// # Safety
/// As for [`load`].
pub unsafe fn store(to: &mut Registers, avx: bool) {
    let p = to.as_mut_ptr();
    if avx {
        // SAFETY: per the caller; writes `to` only.
        unsafe { asm!(each_register!("vmovdqu", ymm_store), p = in(reg) p, options(nostack, preserves_flags)) };
    } else {
        // SAFETY: as above.
        unsafe { asm!(each_register!("movdqu", xmm_store), p = in(reg) p, options(nostack, preserves_flags)) };
    }
}
