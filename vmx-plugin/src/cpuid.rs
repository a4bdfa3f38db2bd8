//! The guest's CPUID view: what a CPUID exit answers, from the host's
//! CPUID, the vCPU and the features the VMM emulates. Pure, so it is tested
//! on the host against recorded and hand-written host values.
//!
//! Feature words are allowlists: a host feature reaches the guest only if
//! it is listed here as one that works in VMX non-root operation without
//! help modvisor does not give (an exit control it does not set, an MSR it
//! does not handle, state it does not switch). New CPU features therefore
//! stay hidden until someone decides otherwise. Leaf and bit meanings: SDM
//! vol. 2A, CPUID.
//!
//! Every basic leaf up to [`MAX_BASIC_LEAF`] is decided here (most are
//! zero); a leaf beyond the guest's maximum answers as the maximum basic
//! leaf does, as SDM CPUID describes for real processors, except in the
//! hypervisor range 0x4000_0000-0x4FFF_FFFF, which answers zero beyond
//! [`HYPERVISOR_TIMING_LEAF`] so that a probe for another hypervisor's
//! interface finds no signature.

use core::fmt;

/// Leaves 0..=0x1F: topology leaf 0x1F is the highest modvisor answers.
pub const MAX_BASIC_LEAF: u32 = 0x1f;
pub const MAX_EXTENDED_LEAF: u32 = 0x8000_0008;
/// EAX: the highest hypervisor leaf; EBX, ECX, EDX: [`SIGNATURE`].
pub const HYPERVISOR_LEAF: u32 = 0x4000_0000;
/// EAX: TSC kHz, EBX: APIC timer (bus) kHz; the convention VMware
/// introduced and other hypervisors and Hermit's kernel read.
pub const HYPERVISOR_TIMING_LEAF: u32 = 0x4000_0010;
/// "modvisor" padded with NULs, so that code that prints the 12 bytes as a
/// C string shows just the name (the convention of e.g. KVM's signature).
pub const SIGNATURE: [u8; 12] = *b"modvisor\0\0\0\0";

const fn bit(n: u32) -> u32 {
    1 << n
}

/// The word with the listed bits set.
const fn bits(list: &[u32]) -> u32 {
    let (mut word, mut i) = (0, 0);
    while i < list.len() {
        word |= 1 << list[i];
        i += 1;
    }
    word
}

/// Leaf 1 ECX: SSE3, PCLMULQDQ, SSSE3, FMA, CMPXCHG16B, SSE4.1, SSE4.2,
/// MOVBE, POPCNT, AES, XSAVE, AVX, F16C, RDRAND. Hidden: DTES64 and DS-CPL
/// (debug store), MONITOR (MWAIT is not emulated; a Hermit guest then
/// idles with HLT and wakes on IPIs), VMX and SMX (no nesting), EIST and
/// TM2 (the guest would program power MSRs), CNXT-ID, SDBG, xTPR, PDCM,
/// DCA (MSRs or platform features not emulated); PCID only by policy.
const LEAF1_ECX: u32 = bits(&[0, 1, 9, 12, 13, 19, 20, 22, 23, 25, 26, 28, 29, 30]);
const LEAF1_ECX_PCID: u32 = bit(17);
const LEAF1_ECX_X2APIC: u32 = bit(21);
const LEAF1_ECX_TSC_DEADLINE: u32 = bit(24);
const LEAF1_ECX_XSAVE: u32 = bit(26);
const LEAF1_ECX_OSXSAVE: u32 = bit(27);
const LEAF1_ECX_HYPERVISOR: u32 = bit(31);
/// Leaf 1 EDX: FPU, VME, DE, PSE, TSC, MSR, PAE, MCE, CX8, SEP, MTRR (the
/// MTRR MSRs read as none and disabled, see `msrs`), PGE, CMOV, PAT, PSE-36,
/// CLFSH, MMX, FXSR, SSE, SSE2, SS. Hidden: MCA (no machine-check banks),
/// PSN, DS, ACPI and TM (thermal MSRs), PBE. APIC and HTT are set here.
const LEAF1_EDX: u32 = bits(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 13, 15, 16, 17, 19, 23, 24, 25, 26, 27]);
const LEAF1_EDX_APIC: u32 = bit(9);
const LEAF1_EDX_HTT: u32 = bit(28);

/// Leaf 7.0 EBX: FSGSBASE (Hermit needs it), BMI1, AVX2, FDP_EXCPTN_ONLY,
/// SMEP, BMI2, ERMS, FPU CS/DS deprecation, AVX512F/DQ/IFMA/PF/ER/CD/BW/VL,
/// RDSEED, ADX, SMAP, CLFLUSHOPT, CLWB, SHA. Hidden: TSC_ADJUST (MSR 0x3B
/// not emulated), SGX (no ENCLS handling), HLE and RTM (TSX and its
/// TSX_CTRL/TAA MSRs not handled), RDT monitoring and allocation (MSRs),
/// MPX (BNDCFGS not switched), PT (no Intel PT in VMX, as in Bochs);
/// INVPCID only with PCID, since the VMM must set "enable INVPCID".
const LEAF7_EBX: u32 = bits(&[0, 3, 5, 6, 7, 8, 9, 13, 16, 17, 18, 19, 20, 21, 23, 24, 26, 27, 28, 29, 30, 31]);
const LEAF7_EBX_INVPCID: u32 = bit(10);
/// Leaf 7.0 ECX: PREFETCHWT1, AVX512_VBMI, UMIP, AVX512_VBMI2, GFNI, VAES,
/// VPCLMULQDQ, AVX512_VNNI/BITALG/VPOPCNTDQ, CLDEMOTE, MOVDIRI, MOVDIR64B.
/// Hidden: PKU and OSPKE (PKRU is not switched between vCPUs), WAITPKG
/// (needs "enable user wait and pause", else #UD, and IA32_UMWAIT_CONTROL),
/// CET shadow stacks (no CET state in the VMCS configuration), TME (MSRs),
/// LA57 (the VMM walks 4-level guest page tables only), MAWAU (MPX), Key
/// Locker, bus-lock detection, ENQCMD (PASID MSR), SGX_LC, PKS; RDPID only
/// with RDTSCP, since both need "enable RDTSCP".
const LEAF7_ECX: u32 = bits(&[0, 1, 2, 6, 8, 9, 10, 11, 12, 14, 25, 27, 28]);
const LEAF7_ECX_RDPID: u32 = bit(22);
/// Leaf 7.0 EDX: AVX512_4VNNIW, AVX512_4FMAPS, FSRM, AVX512_VP2INTERSECT,
/// MD_CLEAR, SERIALIZE, AVX512_FP16. Hidden: UINTR, hybrid (leaf 0x1A is
/// zero), TSXLDTRK, PCONFIG, architectural LBRs, CET IBT, AMX (XFD and
/// tile state permission not handled), and the speculation-control bits
/// 26-31: a guest that sees them writes SPEC_CTRL, PRED_CMD, FLUSH_CMD or
/// reads ARCH/CORE_CAPABILITIES, which modvisor does not handle.
const LEAF7_EDX: u32 = bits(&[2, 3, 4, 8, 10, 14, 23]);
/// Leaf 7.1 EAX: AVX-VNNI, AVX512_BF16, fast zero-length MOVSB, fast short
/// STOSB and CMPSB/SCASB. Hidden: HRESET (MSR), LAM (linear-address masking
/// the VMM's guest page walk does not apply) and the rest.
const LEAF7_1_EAX: u32 = bits(&[4, 5, 10, 11, 12]);

/// Leaf 6 EAX bit 2, ARAT: the emulated APIC timer keeps running in every
/// idle state. Everything else in leaf 6 (turbo, HWP, thermal, MPERF/APERF)
/// is power management the guest does not get.
const LEAF6_EAX_ARAT: u32 = bit(2);

/// Leaf 0x8000_0001 ECX: LAHF/SAHF, LZCNT, PREFETCHW. EDX: SYSCALL, NX,
/// 1 GiB pages, long mode; RDTSCP by policy.
const EXT1_ECX: u32 = bits(&[0, 5, 8]);
const EXT1_EDX: u32 = bits(&[11, 20, 26, 29]);
const EXT1_EDX_RDTSCP: u32 = bit(27);
/// Leaf 0x8000_0007 EDX bit 8: invariant TSC (the guest TSC is the host's
/// plus an offset, so it is invariant if the host's is).
const EXT7_EDX_INVARIANT_TSC: u32 = bit(8);

/// XCR0 components the guest may enable: x87, SSE, AVX, and AVX-512's
/// opmask, ZMM_Hi256, Hi16_ZMM. Hidden: MPX (3, 4), PKRU (9), AMX (17, 18);
/// supervisor components need XSAVES, which is hidden.
const XCR0_ALLOWED: u64 = 0xe7;
/// Leaf 0xD.1 EAX: XSAVEOPT, XSAVEC, XGETBV with ECX = 1. Hidden: XSAVES
/// (needs "enable XSAVES/XRSTORS" and IA32_XSS) and XFD (AMX).
const XSAVE1_EAX: u32 = bits(&[0, 1, 2]);
/// The legacy region and XSAVE header (SDM vol. 1, "XSAVE-Supported
/// Features and State-Component Bitmaps").
const XSAVE_LEGACY_AND_HEADER: u32 = 512 + 64;

/// The features that depend on what the VMM emulates or enables, so that a
/// guest sees exactly what works. The `msrs` policy takes the same value,
/// so an MSR exists for the guest exactly when its CPUID says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestFeatures {
    /// The virtual APIC emulates TSC-deadline mode and IA32_TSC_DEADLINE
    /// (Hermit uses it when CPUID offers it).
    pub tsc_deadline: bool,
    /// PCID (when the host has it) and INVPCID: the VMM sets "enable
    /// INVPCID".
    pub pcid: bool,
    /// RDTSCP and RDPID: the VMM sets "enable RDTSCP" and switches
    /// IA32_TSC_AUX.
    pub rdtscp: bool,
}

impl GuestFeatures {
    /// What modvisor offers today: TSC deadline, and neither PCID nor
    /// RDTSCP (its VMX configuration enables neither control).
    pub const DEFAULT: GuestFeatures = GuestFeatures { tsc_deadline: true, pcid: false, rdtscp: false };
}

impl Default for GuestFeatures {
    fn default() -> Self {
        GuestFeatures::DEFAULT
    }
}

/// What the answer depends on besides the host and the leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestCpuidContext {
    /// This vCPU's x2APIC ID (Hermit assumes vCPU i has ID i).
    pub x2apic_id: u32,
    /// vCPUs in the guest, one core each, all in one package.
    pub vcpu_count: u32,
    /// The guest TSC's rate, 0 when unknown (then no leaf reports one).
    pub tsc_khz: u32,
    /// The emulated APIC timer's input clock, 0 when unknown.
    pub apic_timer_khz: u32,
    /// The guest's XCR0 now (the VMM tracks it through XSETBV exits): leaf
    /// 0xD.0 EBX is the XSAVE area size for it.
    pub xcr0: u64,
    /// The guest's CR4.OSXSAVE now, which leaf 1 ECX bit 27 mirrors.
    pub cr4_osxsave: bool,
    pub features: GuestFeatures,
}

/// The guest's CPUID: `[EAX, EBX, ECX, EDX]` for `leaf` and `subleaf`
/// (ECX; ignored by leaves without subleaves). `host` executes CPUID on the
/// host (the VMM's CPU).
pub fn guest_cpuid(host: impl Fn(u32, u32) -> [u32; 4], leaf: u32, subleaf: u32, ctx: &GuestCpuidContext) -> [u32; 4] {
    let host = Host(&host);
    let leaf = match leaf {
        0..=MAX_BASIC_LEAF | 0x4000_0000..=0x4fff_ffff | 0x8000_0000..=MAX_EXTENDED_LEAF => leaf,
        _ => MAX_BASIC_LEAF,
    };
    match leaf {
        0 => {
            // The vendor string in EBX, EDX, ECX stays the host's.
            let [_, ebx, ecx, edx] = host.raw(0, 0);
            [MAX_BASIC_LEAF, ebx, ecx, edx]
        }
        1 => leaf1(&host, ctx),
        2 => host.get(2, 0),
        4 => leaf4(&host, subleaf, ctx),
        6 => [LEAF6_EAX_ARAT, 0, 0, 0],
        7 => leaf7(&host, subleaf, ctx.features),
        0xb | 0x1f => topology(subleaf, ctx),
        0xd => xsave(&host, subleaf, ctx.xcr0),
        0x15 => tsc_crystal(ctx),
        0x16 => frequencies(ctx),
        HYPERVISOR_LEAF => {
            let word =
                |i: usize| u32::from_le_bytes([SIGNATURE[i], SIGNATURE[i + 1], SIGNATURE[i + 2], SIGNATURE[i + 3]]);
            [HYPERVISOR_TIMING_LEAF, word(0), word(4), word(8)]
        }
        HYPERVISOR_TIMING_LEAF => [ctx.tsc_khz, ctx.apic_timer_khz, 0, 0],
        0x8000_0000 => [MAX_EXTENDED_LEAF, 0, 0, 0],
        0x8000_0001 => extended1(&host, ctx.features),
        0x8000_0002..=0x8000_0004 | 0x8000_0006 => host.get(leaf, 0),
        0x8000_0007 => [0, 0, 0, host.get(leaf, 0)[3] & EXT7_EDX_INVARIANT_TSC],
        // Physical and linear address widths; the rest is reserved or AMD's.
        0x8000_0008 => [host.get(leaf, 0)[0] & 0xffff, 0, 0, 0],
        // Leaves 3 (serial number), 5 (MONITOR), 8, 9 (DCA), 0xA (no PMU),
        // 0xC, 0xE, 0xF and 0x10 (RDT), 0x11, 0x12 (SGX), 0x13, 0x14 (PT),
        // 0x17-0x1E (SoC, TLB, Key Locker, hybrid, PCONFIG, LBR, AMX), the
        // unused hypervisor leaves and extended leaf 5.
        _ => [0; 4],
    }
}

/// The host's CPUID.
struct Host<'a, F: Fn(u32, u32) -> [u32; 4]>(&'a F);

impl<F: Fn(u32, u32) -> [u32; 4]> Host<'_, F> {
    fn raw(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        (self.0)(leaf, subleaf)
    }

    /// The host's leaf, or zeros when the host lacks it: past its maximum,
    /// a processor answers with its maximum basic leaf instead.
    fn get(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        let max = self.raw(leaf & 0x8000_0000, 0)[0];
        if leaf > max {
            return [0; 4];
        }
        self.raw(leaf, subleaf)
    }

    /// XCR0 components the host supports and the guest may enable.
    fn xcr0(&self) -> u64 {
        if self.get(1, 0)[2] & LEAF1_ECX_XSAVE == 0 {
            return 0;
        }
        let [eax, _, _, edx] = self.get(0xd, 0);
        ((edx as u64) << 32 | eax as u64) & XCR0_ALLOWED
    }
}

/// Bits of an x2APIC ID that number the cores of the package: enough for
/// `vcpu_count` IDs.
fn core_bits(vcpu_count: u32) -> u32 {
    match vcpu_count {
        0 | 1 => 0,
        n => 32 - (n - 1).leading_zeros(),
    }
}

fn leaf1(host: &Host<impl Fn(u32, u32) -> [u32; 4]>, ctx: &GuestCpuidContext) -> [u32; 4] {
    let [eax, ebx, ecx, edx] = host.get(1, 0);
    let features = ctx.features;
    let mut guest_ecx = ecx & LEAF1_ECX | LEAF1_ECX_X2APIC | LEAF1_ECX_HYPERVISOR;
    if features.tsc_deadline {
        guest_ecx |= LEAF1_ECX_TSC_DEADLINE;
    }
    if features.pcid {
        guest_ecx |= ecx & LEAF1_ECX_PCID;
    }
    if guest_ecx & LEAF1_ECX_XSAVE != 0 && ctx.cr4_osxsave {
        guest_ecx |= LEAF1_ECX_OSXSAVE;
    }
    let mut guest_edx = edx & LEAF1_EDX | LEAF1_EDX_APIC;
    if ctx.vcpu_count > 1 {
        // EBX[23:16] is meaningful.
        guest_edx |= LEAF1_EDX_HTT;
    }
    // EBX: brand index and CLFLUSH line size from the host; addressable
    // logical processor IDs in the package (23:16); initial APIC ID (31:24).
    let ids = (1u32 << core_bits(ctx.vcpu_count)).min(0xff);
    let guest_ebx = ebx & 0xffff | ids << 16 | (ctx.x2apic_id & 0xff) << 24;
    [eax, guest_ebx, guest_ecx, guest_edx]
}

/// Deterministic cache parameters: the host's caches, with the sharing
/// fields redone for one thread per core and all cores in one package (L1
/// and L2 private, L3 shared by all).
fn leaf4(host: &Host<impl Fn(u32, u32) -> [u32; 4]>, subleaf: u32, ctx: &GuestCpuidContext) -> [u32; 4] {
    let [eax, ebx, ecx, edx] = host.get(4, subleaf);
    if eax & 0x1f == 0 {
        // Cache type 0: no more caches.
        return [0; 4];
    }
    let ids = (1u32 << core_bits(ctx.vcpu_count)) - 1;
    let level = (eax >> 5) & 7;
    let sharing = if level >= 3 { ids.min(0xfff) } else { 0 };
    [eax & 0x3fff | sharing << 14 | ids.min(0x3f) << 26, ebx, ecx, edx]
}

fn leaf7(host: &Host<impl Fn(u32, u32) -> [u32; 4]>, subleaf: u32, features: GuestFeatures) -> [u32; 4] {
    let max_subleaf = host.get(7, 0)[0];
    match subleaf {
        0 => {
            let [_, ebx, ecx, edx] = host.get(7, 0);
            let mut guest_ebx = ebx & LEAF7_EBX;
            let mut guest_ecx = ecx & LEAF7_ECX;
            if features.pcid {
                guest_ebx |= ebx & LEAF7_EBX_INVPCID;
            }
            if features.rdtscp {
                guest_ecx |= ecx & LEAF7_ECX_RDPID;
            }
            [max_subleaf.min(1), guest_ebx, guest_ecx, edx & LEAF7_EDX]
        }
        1 if max_subleaf >= 1 => [host.get(7, 1)[0] & LEAF7_1_EAX, 0, 0, 0],
        _ => [0; 4],
    }
}

/// Leaves 0xB and 0x1F: level 0 SMT with one thread, level 1 cores
/// numbering all vCPUs, then the invalid level. x2APIC ID i is core i of
/// package 0.
fn topology(subleaf: u32, ctx: &GuestCpuidContext) -> [u32; 4] {
    const SMT: u32 = 1;
    const CORE: u32 = 2;
    let (shift, count, kind) = match subleaf {
        0 => (0, 1, SMT),
        1 => (core_bits(ctx.vcpu_count), ctx.vcpu_count.min(0xffff), CORE),
        _ => (0, 0, 0),
    };
    [shift, count, subleaf & 0xff | kind << 8, ctx.x2apic_id]
}

/// Leaf 0xD, the host's XSAVE layout limited to the components the guest
/// may enable; the sizes in subleaf 0 are computed for those and for the
/// guest's XCR0, since the host's reflect the host's XCR0.
fn xsave(host: &Host<impl Fn(u32, u32) -> [u32; 4]>, subleaf: u32, xcr0: u64) -> [u32; 4] {
    let supported = host.xcr0();
    if supported == 0 {
        return [0; 4];
    }
    match subleaf {
        0 => {
            let current = xsave_size(host, xcr0 & supported, false);
            [supported as u32, current, xsave_size(host, supported, false), (supported >> 32) as u32]
        }
        1 => [host.get(0xd, 1)[0] & XSAVE1_EAX, xsave_size(host, xcr0 & supported, true), 0, 0],
        2..=62 if supported & 1 << subleaf != 0 => host.get(0xd, subleaf),
        _ => [0; 4],
    }
}

/// Bytes of an XSAVE area holding the components in `mask`, in the
/// standard or the compacted format (SDM vol. 1, "XSAVE Area").
fn xsave_size(host: &Host<impl Fn(u32, u32) -> [u32; 4]>, mask: u64, compacted: bool) -> u32 {
    let mut size = XSAVE_LEGACY_AND_HEADER;
    for component in (2..63).filter(|c| mask & 1 << c != 0) {
        let [len, offset, flags, _] = host.get(0xd, component);
        size = match compacted {
            // ECX bit 1: the component starts 64-byte aligned.
            true if flags & 2 != 0 => size.next_multiple_of(64) + len,
            true => size + len,
            false => size.max(offset + len),
        };
    }
    size
}

/// Leaf 0x15 from the measured rates: the "crystal" is the APIC timer's
/// clock, since the SDM has the APIC timer tick at the crystal frequency
/// when this leaf enumerates it, and TSC = crystal * EBX / EAX. Zero
/// (not enumerated) when a rate is unknown: Bochs's models report their
/// nominal clocks, far from the emulated TSC.
fn tsc_crystal(ctx: &GuestCpuidContext) -> [u32; 4] {
    let (tsc, timer) = (ctx.tsc_khz, ctx.apic_timer_khz);
    match timer.checked_mul(1000) {
        Some(crystal_hz) if tsc != 0 && timer != 0 => {
            let common = gcd(tsc, timer);
            [timer / common, tsc / common, crystal_hz, 0]
        }
        _ => [0; 4],
    }
}

/// Leaf 0x16: base and maximum frequency (the TSC's) and bus frequency
/// (the APIC timer's), in MHz.
fn frequencies(ctx: &GuestCpuidContext) -> [u32; 4] {
    if ctx.tsc_khz == 0 {
        return [0; 4];
    }
    let mhz = (ctx.tsc_khz / 1000).min(0xffff);
    [mhz, mhz, (ctx.apic_timer_khz / 1000).min(0xffff), 0]
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn extended1(host: &Host<impl Fn(u32, u32) -> [u32; 4]>, features: GuestFeatures) -> [u32; 4] {
    let [eax, _, ecx, edx] = host.get(0x8000_0001, 0);
    let mut guest_edx = edx & EXT1_EDX;
    if features.rdtscp {
        guest_edx |= edx & EXT1_EDX_RDTSCP;
    }
    [eax, 0, ecx & EXT1_ECX, guest_edx]
}

/// Why an XSETBV must raise #GP in the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuidError {
    /// ECX named an extended control register other than XCR0.
    NoSuchXcr(u32),
    /// The value sets components the guest's CPUID does not offer.
    UnsupportedXcr0 { value: u64, supported: u64 },
    /// The value breaks an architectural rule: x87 always on, AVX only
    /// with SSE, AVX-512 components all or none and only with AVX.
    InconsistentXcr0(u64),
}

impl fmt::Display for CpuidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CpuidError::NoSuchXcr(index) => write!(f, "XSETBV to XCR{index}: only XCR0 exists"),
            CpuidError::UnsupportedXcr0 { value, supported } => {
                write!(f, "XCR0 {value:#x} enables components outside the guest's {supported:#x}")
            }
            CpuidError::InconsistentXcr0(value) => write!(f, "XCR0 {value:#x} breaks the XSETBV rules (SDM XSETBV)"),
        }
    }
}

/// The XCR0 components the guest may enable: its leaf 0xD.0 EDX:EAX.
pub fn guest_xcr0_supported(host: impl Fn(u32, u32) -> [u32; 4]) -> u64 {
    Host(&host).xcr0()
}

/// Whether the guest's XSETBV of `value` into XCR`index` is allowed (SDM
/// vol. 2D, XSETBV); the VMM loads the value into the real XCR0 while the
/// guest runs, so a value the host could take but the guest was not
/// offered is refused too. CPL and CR4.OSXSAVE are checked by the CPU
/// before the exit.
pub fn check_xsetbv(host: impl Fn(u32, u32) -> [u32; 4], index: u32, value: u64) -> Result<(), CpuidError> {
    if index != 0 {
        return Err(CpuidError::NoSuchXcr(index));
    }
    let supported = guest_xcr0_supported(host);
    if value & !supported != 0 {
        return Err(CpuidError::UnsupportedXcr0 { value, supported });
    }
    const X87: u64 = 1;
    const SSE: u64 = 2;
    const AVX: u64 = 4;
    const AVX512: u64 = 0xe0;
    let avx512 = value & AVX512;
    let consistent = value & X87 != 0
        && (value & AVX == 0 || value & SSE != 0)
        && (avx512 == 0 || (avx512 == AVX512 && value & AVX != 0));
    match consistent {
        true => Ok(()),
        false => Err(CpuidError::InconsistentXcr0(value)),
    }
}

#[cfg(test)]
mod tests;
