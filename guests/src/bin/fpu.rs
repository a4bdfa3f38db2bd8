//! `fpu`: each vCPU's SSE (and AVX) registers, MXCSR and syscall MSRs
//! survive the VMM running other vCPUs on the same pCPU in between (run
//! it with its vCPUs sharing one CPU). Every vCPU turns on SSE
//! (CR4.OSFXSR) and, where CPUID offers XSAVE, XCR0 with SSE and AVX
//! through XSETBV; then, ROUNDS times, it fills XMM0-15 (YMM0-15 with
//! AVX), MXCSR, IA32_LSTAR and IA32_KERNEL_GS_BASE with values of its own,
//! spins across several of the VMM's 1 ms slices and reads them all back.
//! vCPU 0 first checks XSETBV: XCR1, an XCR0 without x87 and one with AVX
//! but not SSE raise #GP, and the value taken reads back through XGETBV.
//! Exits 0 if all hold, 1 otherwise, 2 without the timing leaf.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::{AtomicU32, Ordering};

use test_guests::check::Checks;
use test_guests::cpu::{self, CR4_OSFXSR, CR4_OSXMMEXCPT, CR4_OSXSAVE};
use test_guests::idt::{self, GP};
use test_guests::simd::{self, Registers};
use test_guests::smp::{spin_for, Barrier};
use test_guests::{hv, status, Start};

test_guests::guest!(check_fpu);

const ROUNDS: u32 = 8;
/// Each round spins this long: several slices of the VMM.
const SPIN_US: u64 = 4000;
const LEAF1_ECX_XSAVE: u32 = 1 << 26;
const X87: u64 = 1;
const SSE: u64 = 2;
const AVX: u64 = 4;
const LSTAR: u32 = 0xc000_0082;
const KERNEL_GS_BASE: u32 = 0xc000_0102;

static MADE: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);
static DONE: Barrier = Barrier::new();

/// The register image of `vcpu` in `round`: no two vCPUs or rounds alike.
fn pattern(vcpu: u32, round: u32) -> Registers {
    core::array::from_fn(|r| core::array::from_fn(|b| (vcpu * 97 + round * 31 + r as u32 * 7 + b as u32) as u8))
}

/// XCR0 with SSE and, if offered, AVX; `None` without XSAVE.
fn enable(checks: &mut Checks, vcpu: u32) -> Option<u64> {
    let xsave = hv::leaf1_ecx() & LEAF1_ECX_XSAVE != 0;
    let cr4 = cpu::read_cr4() | CR4_OSFXSR | CR4_OSXMMEXCPT | if xsave { CR4_OSXSAVE } else { 0 };
    // SAFETY: only the SSE and XSAVE bits change, which CPUID offers.
    unsafe { cpu::write_cr4(cr4) };
    if !xsave {
        return None;
    }
    let leaf = cpu::cpuid(0xd, 0);
    let offered = u64::from(leaf.edx) << 32 | u64::from(leaf.eax);
    let xcr0 = offered & (X87 | SSE | AVX);
    if vcpu == 0 {
        for (index, value, what) in
            [(1, X87, "XCR1"), (0, SSE, "XCR0 without x87"), (0, X87 | AVX, "XCR0 with AVX but not SSE")]
        {
            // SAFETY: CR4.OSXSAVE is set; the #GP is expected and caught.
            let caught = idt::catch(GP, || unsafe { cpu::xsetbv(index, value) });
            checks.check(caught.is_some(), format_args!("xsetbv of {what} ({value:#x}) raises #GP"));
        }
    }
    // SAFETY: CR4.OSXSAVE is set and the value is one CPUID offers.
    unsafe { cpu::xsetbv(0, xcr0) };
    // SAFETY: CR4.OSXSAVE is set.
    let read = unsafe { cpu::xgetbv() };
    checks.check(read == xcr0, format_args!("vcpu {vcpu}: xgetbv reads {read:#x}, xsetbv wrote {xcr0:#x}"));
    Some(xcr0)
}

/// One round: everything set, a spin, everything read back.
fn round(checks: &mut Checks, vcpu: u32, round: u32, avx: bool, spin: u64) {
    let regs = pattern(vcpu, round);
    let mxcsr = 0x1f80 | (((vcpu + round) % 4) << 13);
    let lstar = 0xffff_8000_0000_0000 | u64::from(vcpu) << 32 | u64::from(round);
    let gs = u64::from(vcpu) << 40 | u64::from(round) << 8;
    // SAFETY: SSE is on (`enable`), with AVX in XCR0 when `avx`.
    unsafe { simd::load(&regs, avx) };
    // SAFETY: SSE is on; the value sets only the rounding control.
    unsafe { cpu::ldmxcsr(mxcsr) };
    // SAFETY: a canonical address, and the guest never uses SYSCALL.
    unsafe { cpu::wrmsr(LSTAR, lstar) };
    // SAFETY: canonical, and the guest never uses SWAPGS.
    unsafe { cpu::wrmsr(KERNEL_GS_BASE, gs) };
    spin_for(spin);
    let mut back = [[0u8; 32]; 16];
    // SAFETY: as for the load.
    unsafe { simd::store(&mut back, avx) };
    // SAFETY: SSE is on.
    let mxcsr_back = unsafe { cpu::stmxcsr() };
    // SAFETY: the MSR exists on every x86_64 CPU.
    let lstar_back = unsafe { cpu::rdmsr(LSTAR) };
    // SAFETY: as above.
    let gs_back = unsafe { cpu::rdmsr(KERNEL_GS_BASE) };
    let width = if avx { 32 } else { 16 };
    let same = regs.iter().zip(back.iter()).all(|(a, b)| a[..width] == b[..width]);
    let all = same && mxcsr_back == mxcsr && lstar_back == lstar && gs_back == gs;
    checks.check(
        all,
        format_args!(
            "vcpu {vcpu} round {round}: {} registers {}, mxcsr {mxcsr_back:#x}, lstar {lstar_back:#x}, kernel gs \
             {gs_back:#x} kept",
            if avx { "ymm" } else { "xmm" },
            if same { "kept" } else { "CHANGED" }
        ),
    );
}

fn check_fpu(start: &Start) -> u32 {
    let Some(f) = hv::frequencies().filter(|f| f.tsc_khz != 0) else {
        test_guests::println!("fpu: cpuid 0x40000010 gives no tsc kHz; cannot time the spins");
        return status::UNSUPPORTED;
    };
    idt::install();
    let mut checks = Checks::new("fpu");
    let xcr0 = enable(&mut checks, start.vcpu);
    let avx = xcr0.is_some_and(|x| x & AVX != 0);
    for r in 0..ROUNDS {
        round(&mut checks, start.vcpu, r, avx, f.tsc_ticks(SPIN_US));
    }
    MADE.fetch_add(checks.made(), Ordering::AcqRel);
    FAILED.fetch_add(checks.failed(), Ordering::AcqRel);
    DONE.wait(start.count);
    if start.vcpu != 0 {
        test_guests::park();
    }
    let mut all = Checks::new("fpu");
    all.add(MADE.load(Ordering::Acquire), FAILED.load(Ordering::Acquire));
    all.finish()
}
