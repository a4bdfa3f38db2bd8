//! The guest CPUID view against host CPUID tables: leaf 1 ECX as Bochs's
//! CPU models report it (`testdata/`), the other leaves hand-written after
//! a Tiger Lake part (family 6 model 0x8C), and a host that sets every
//! bit, which must show exactly the allowlists.

use super::*;
use std::collections::BTreeMap;
use std::format;
use std::vec::Vec;

/// A host CPU by its CPUID table. Like a real processor it answers a leaf
/// beyond its maxima with its maximum basic leaf; a subleaf it lacks is 0.
#[derive(Clone)]
struct HostCpu(BTreeMap<(u32, u32), [u32; 4]>);

/// Leaves with subleaves (ECX); the others ignore ECX.
const SUBLEAF_LEAVES: [u32; 6] = [4, 7, 0xb, 0xd, 0x14, 0x1f];

impl HostCpu {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        let max_basic = self.0[&(0, 0)][0];
        let max_extended = self.0[&(0x8000_0000, 0)][0];
        let leaf = match leaf <= max_basic || (0x8000_0000..=max_extended).contains(&leaf) {
            true => leaf,
            false => max_basic,
        };
        let subleaf = if SUBLEAF_LEAVES.contains(&leaf) { subleaf } else { 0 };
        self.0.get(&(leaf, subleaf)).copied().unwrap_or([0; 4])
    }

    fn set(mut self, leaf: u32, subleaf: u32, value: [u32; 4]) -> HostCpu {
        self.0.insert((leaf, subleaf), value);
        self
    }
}

/// "GenuineIntel": EBX, EDX, ECX.
const VENDOR: [u32; 3] = [0x756e_6547, 0x6c65_746e, 0x4965_6e69];

fn tiger_lake(leaf1_ecx: u32) -> HostCpu {
    let table = [
        ((0, 0), [0x1b, VENDOR[0], VENDOR[1], VENDOR[2]]),
        ((1, 0), [0x0008_06c1, 0x0010_0800, leaf1_ecx, 0xbfeb_fbff]),
        ((2, 0), [0x00fe_ff01, 0xf0, 0, 0]),
        ((4, 0), [0x1c00_4121, 0x02c0_003f, 0x3f, 0]),
        ((4, 1), [0x1c00_4122, 0x01c0_003f, 0x3f, 0]),
        ((4, 2), [0x1c00_4143, 0x04c0_003f, 0x3ff, 0]),
        ((4, 3), [0x1c03_c163, 0x02c0_003f, 0x3fff, 4]),
        ((5, 0), [0x40, 0x40, 3, 0x1112_1020]),
        ((6, 0), [0x0017_eff7, 2, 9, 0]),
        ((7, 0), [1, 0xf3bf_a7eb, 0x18c0_5fce, 0xfc10_0510]),
        ((7, 1), [0x0000_0030, 0, 0, 0]),
        ((0xa, 0), [0x0830_0805, 0, 0xf, 0x8604]),
        ((0xb, 0), [1, 2, 0x100, 0]),
        ((0xb, 1), [4, 8, 0x201, 0]),
        // XSAVE: x87|SSE|AVX|AVX-512|PT|PKRU supported; sizes for XCR0 = 0x2e7.
        ((0xd, 0), [0x2e7, 0xa88, 0xa88, 0]),
        ((0xd, 1), [0xf, 0xa00, 0x100, 0]),
        ((0xd, 2), [0x100, 0x240, 0, 0]),
        ((0xd, 5), [0x40, 0x440, 0, 0]),
        ((0xd, 6), [0x200, 0x480, 0, 0]),
        ((0xd, 7), [0x400, 0x680, 0, 0]),
        ((0xd, 8), [0x80, 0, 1, 0]),
        ((0xd, 9), [8, 0xa80, 2, 0]),
        ((0x12, 0), [3, 0, 0, 0x241f]),
        ((0x14, 0), [1, 0x4f, 7, 0]),
        ((0x15, 0), [2, 0x7e, 0x0249_f000, 0]),
        ((0x16, 0), [0x960, 0x1068, 0x64, 0]),
        ((0x1b, 0), [0, 0, 0, 0]),
        ((0x8000_0000, 0), [0x8000_0008, 0, 0, 0]),
        ((0x8000_0001, 0), [0, 0, 0x121, 0x2c10_0000]),
        ((0x8000_0002, 0), [0x6874_3131, 0x6e65_4720, 0x746e_4920, 0x5228_6c65]),
        ((0x8000_0006, 0), [0, 0, 0x0100_7040, 0]),
        ((0x8000_0007, 0), [0, 0, 0, 0x100]),
        ((0x8000_0008, 0), [0x0030_3027, 0x200, 0, 0]),
    ];
    HostCpu(table.into_iter().collect())
}

/// A host whose every feature word is all ones.
fn every_feature() -> HostCpu {
    let ones = [u32::MAX; 4];
    let host = tiger_lake(u32::MAX).set(1, 0, [0x0008_06c1, 0, u32::MAX, u32::MAX]).set(7, 0, [1, !0, !0, !0]);
    host.set(7, 1, ones).set(0x8000_0001, 0, [0, !0, !0, !0]).set(0x8000_0007, 0, ones)
}

const CTX: GuestCpuidContext = GuestCpuidContext {
    x2apic_id: 0,
    vcpu_count: 1,
    tsc_khz: 2_400_000,
    apic_timer_khz: 38_400,
    xcr0: 0x3,
    cr4_osxsave: false,
    features: GuestFeatures::DEFAULT,
};
const ALL_FEATURES: GuestFeatures = GuestFeatures { tsc_deadline: true, pcid: true, rdtscp: true };
const NO_FEATURES: GuestFeatures = GuestFeatures { tsc_deadline: false, pcid: false, rdtscp: false };

fn guest(host: &HostCpu, leaf: u32, subleaf: u32, ctx: &GuestCpuidContext) -> [u32; 4] {
    guest_cpuid(|l, s| host.cpuid(l, s), leaf, subleaf, ctx)
}

/// CPUID.1:ECX of each recorded Bochs model.
fn recorded_leaf1_ecx() -> Vec<(&'static str, u32)> {
    let dumps = [
        ("corei7_skylake_x", include_str!("../../testdata/corei7_skylake_x.txt")),
        ("tigerlake", include_str!("../../testdata/tigerlake.txt")),
        ("corei7_ivy_bridge_3770k", include_str!("../../testdata/corei7_ivy_bridge_3770k.txt")),
        ("corei7_sandy_bridge_2600k", include_str!("../../testdata/corei7_sandy_bridge_2600k.txt")),
        ("corei5_arrandale_m520", include_str!("../../testdata/corei5_arrandale_m520.txt")),
        ("corei5_lynnfield_750", include_str!("../../testdata/corei5_lynnfield_750.txt")),
        ("core2_penryn_t9600", include_str!("../../testdata/core2_penryn_t9600.txt")),
    ];
    let ecx = |text: &str| {
        let line = text.lines().find_map(|l| l.strip_prefix("CPUID.1:ECX=0x")).expect("a CPUID line");
        u32::from_str_radix(line.split_whitespace().next().unwrap(), 16).unwrap()
    };
    dumps.iter().map(|&(name, text)| (name, ecx(text))).collect()
}

#[test]
fn leaf1_ecx_of_the_recorded_models() {
    // (model, recorded ECX, guest ECX with TSC deadline, no PCID, CR4.OSXSAVE
    // clear). Hidden on every model: MONITOR (3), DS-CPL (4), VMX (5),
    // EIST (7), TM2 (8), xTPR (14), PDCM (15), PCID (17); set: x2APIC (21),
    // TSC deadline (24), hypervisor (31).
    let expected = [
        ("corei7_skylake_x", 0x77fa_f3bf, 0xf7f8_3203),
        ("tigerlake", 0x77fa_f3bf, 0xf7f8_3203),
        ("corei7_ivy_bridge_3770k", 0x77ba_e3bf, 0xf7b8_2203),
        ("corei7_sandy_bridge_2600k", 0x179a_e3bf, 0x97b8_2203),
        ("corei5_arrandale_m520", 0x0298_e3ff, 0x83b8_2203),
        ("corei5_lynnfield_750", 0x0098_e3fd, 0x81b8_2201),
        ("core2_penryn_t9600", 0x0408_e3fd, 0x8528_2201),
    ];
    assert_eq!(recorded_leaf1_ecx(), expected.iter().map(|e| (e.0, e.1)).collect::<Vec<_>>());
    for (model, host_ecx, guest_ecx) in expected {
        let host = tiger_lake(host_ecx);
        assert_eq!(guest(&host, 1, 0, &CTX)[2], guest_ecx, "{model}");
        let no_deadline = GuestCpuidContext { features: NO_FEATURES, ..CTX };
        assert_eq!(guest(&host, 1, 0, &no_deadline)[2], guest_ecx & !bit(24), "{model}");
        // PCID only where the host has it; OSXSAVE only with XSAVE.
        let pcid = GuestCpuidContext { features: ALL_FEATURES, cr4_osxsave: true, ..CTX };
        let with = guest(&host, 1, 0, &pcid)[2];
        assert_eq!(with & bit(17), host_ecx & bit(17), "{model}");
        assert_eq!(with & bit(27) != 0, host_ecx & bit(26) != 0, "{model}");
    }
}

#[test]
fn leaf1_identity_and_edx() {
    let host = tiger_lake(0x77fa_f3bf);
    let ctx = GuestCpuidContext { x2apic_id: 5, vcpu_count: 6, ..CTX };
    let [eax, ebx, _, edx] = guest(&host, 1, 0, &ctx);
    assert_eq!(eax, 0x0008_06c1, "signature kept");
    // APIC ID 5, 8 addressable IDs (3 core bits), CLFLUSH size 8 kept.
    assert_eq!(ebx, 0x0508_0800);
    // Host 0xbfebfbff without MCA (14), DS (21), ACPI (22), TM (29), PBE (31),
    // and with HTT (28) for 6 vCPUs.
    assert_eq!(edx, 0x1f8b_bbff);
    let [_, ebx, _, edx] = guest(&host, 1, 0, &CTX);
    assert_eq!((ebx, edx & bit(28)), (0x0001_0800, 0), "one vCPU: one ID, no HTT");
    let many = GuestCpuidContext { x2apic_id: 0x1_0203, vcpu_count: 300, ..CTX };
    assert_eq!(guest(&host, 1, 0, &many)[1] >> 16, 0x03ff, "low 8 bits of the ID, count saturated");
}

#[test]
fn allowlists_on_a_host_with_every_bit() {
    let host = every_feature();
    let [_, _, ecx, edx] = guest(&host, 1, 0, &GuestCpuidContext { features: NO_FEATURES, ..CTX });
    // The allowlist plus x2APIC (21) and hypervisor (31); no TSC deadline.
    assert_eq!(ecx, 0xf6f8_3203);
    assert_eq!(edx, 0x0f8b_bbff, "with APIC, without HTT for one vCPU");
    assert_eq!(guest(&host, 7, 0, &CTX), [1, 0xfdbf_23e9, 0x1a00_5f47, 0x0080_451c]);
    let all = GuestCpuidContext { features: ALL_FEATURES, ..CTX };
    assert_eq!(guest(&host, 7, 0, &all), [1, 0xfdbf_27e9, 0x1a40_5f47, 0x0080_451c], "INVPCID, RDPID");
    assert_eq!(guest(&host, 7, 1, &CTX), [0x1c30, 0, 0, 0]);
    assert_eq!(guest(&host, 7, 2, &CTX), [0; 4]);
    assert_eq!(guest(&host, 0x8000_0001, 0, &CTX), [0, 0, 0x121, 0x2410_0800]);
    assert_eq!(guest(&host, 0x8000_0001, 0, &all)[3], 0x2c10_0800, "RDTSCP");
    assert_eq!(guest(&host, 0x8000_0007, 0, &CTX), [0, 0, 0, 0x100]);
}

#[test]
fn leaf7_of_a_tiger_lake() {
    let host = tiger_lake(0x77fa_f3bf);
    let [eax, ebx, ecx, edx] = guest(&host, 7, 0, &CTX);
    assert_eq!(eax, 1);
    // Kept: FSGSBASE (0), SMEP (7), RDSEED (18), SMAP (20), AVX-512.
    for kept in [0, 7, 18, 20, 16, 31] {
        assert_ne!(ebx & bit(kept), 0, "EBX bit {kept}");
    }
    // Hidden: TSC_ADJUST (1), SGX (2), INVPCID (10), RTM (11), PT (25).
    for hidden in [1, 2, 10, 11, 25] {
        assert_eq!(ebx & bit(hidden), 0, "EBX bit {hidden}");
    }
    // Hidden: PKU (3), OSPKE (4), WAITPKG (5), CET_SS (7), LA57 (16), RDPID (22).
    for hidden in [3, 4, 5, 7, 16, 22] {
        assert_eq!(ecx & bit(hidden), 0, "ECX bit {hidden}");
    }
    assert_eq!(ebx, 0xf1bf_23e9);
    assert_eq!(ecx, 0x1800_5f46);
    // FSRM, AVX512_VP2INTERSECT and MD_CLEAR stay; CET IBT, speculation
    // control and the capability MSRs go.
    assert_eq!(edx, 0x0000_0510);
    assert_eq!(guest(&host, 7, 1, &CTX), [0x30, 0, 0, 0]);
}

#[test]
fn topology_leaves() {
    let host = tiger_lake(0x77fa_f3bf);
    for vcpus in [1, 2, 3, 4, 5, 64, 300] {
        for id in [0, vcpus / 2, vcpus - 1] {
            let ctx = GuestCpuidContext { x2apic_id: id, vcpu_count: vcpus, ..CTX };
            for leaf in [0xb, 0x1f] {
                let smt = guest(&host, leaf, 0, &ctx);
                let core = guest(&host, leaf, 1, &ctx);
                assert_eq!(smt, [0, 1, 0x100, id], "{vcpus} vCPUs, id {id}");
                assert_eq!(core[1..], [vcpus, 0x201, id]);
                // Every ID fits below the shift (all vCPUs are one
                // package), and it is the smallest such shift.
                let (shift, top) = (core[0], vcpus - 1);
                assert_eq!(top >> shift, 0);
                if vcpus > 1 {
                    assert_eq!(top >> (shift - 1), 1);
                }
                assert_eq!(guest(&host, leaf, 2, &ctx), [0, 0, 2, id]);
                assert_eq!(guest(&host, leaf, 0x105, &ctx), [0, 0, 5, id]);
            }
        }
    }
}

#[test]
fn cache_leaf_sharing_matches_the_topology() {
    let host = tiger_lake(0x77fa_f3bf);
    let ctx = GuestCpuidContext { vcpu_count: 3, ..CTX };
    // Low 14 bits kept; 25:14 sharing (0 for L1/L2, 3 for L3); 31:26 cores - 1 = 3.
    assert_eq!(guest(&host, 4, 0, &ctx), [0x0c00_0121, 0x02c0_003f, 0x3f, 0]);
    assert_eq!(guest(&host, 4, 2, &ctx)[0], 0x0c00_0143);
    assert_eq!(guest(&host, 4, 3, &ctx), [0x0c00_c163, 0x02c0_003f, 0x3fff, 4]);
    assert_eq!(guest(&host, 4, 4, &ctx), [0; 4]);
    assert_eq!(guest(&host, 4, 0, &CTX)[0], 0x0000_0121, "one vCPU shares nothing");
}

#[test]
fn hypervisor_leaves() {
    let host = tiger_lake(0x77fa_f3bf);
    let [max, ebx, ecx, edx] = guest(&host, HYPERVISOR_LEAF, 0, &CTX);
    assert_eq!(max, 0x4000_0010);
    let bytes: Vec<u8> = [ebx, ecx, edx].iter().flat_map(|w| w.to_le_bytes()).collect();
    assert_eq!(bytes, b"modvisor\0\0\0\0");
    assert_eq!(guest(&host, 0x4000_0010, 0, &CTX), [2_400_000, 38_400, 0, 0]);
    for leaf in [0x4000_0001, 0x4000_0003, 0x4000_000f, 0x4000_0011, 0x4000_0100, 0x4fff_ffff] {
        assert_eq!(guest(&host, leaf, 0, &CTX), [0; 4], "{leaf:#x}");
    }
    // Hermit's check: the hypervisor bit gates the leaves.
    assert_ne!(guest(&host, 1, 0, &CTX)[2] & bit(31), 0);
}

#[test]
fn hidden_and_zero_leaves() {
    let host = tiger_lake(0x77fa_f3bf);
    // MONITOR, performance monitoring, SGX, PT, hybrid/other: all zero.
    for leaf in [3, 5, 8, 9, 0xa, 0xc, 0xe, 0xf, 0x10, 0x12, 0x14, 0x17, 0x18, 0x1a, 0x1b, 0x8000_0005] {
        assert_eq!(guest(&host, leaf, 0, &CTX), [0; 4], "{leaf:#x}");
    }
    assert_eq!(guest(&host, 6, 0, &CTX), [4, 0, 0, 0], "ARAT only");
    assert_eq!(guest(&host, 0, 0, &CTX), [0x1f, VENDOR[0], VENDOR[1], VENDOR[2]]);
    assert_eq!(guest(&host, 2, 0, &CTX), host.cpuid(2, 0));
    assert_eq!(guest(&host, 0x8000_0000, 0, &CTX), [0x8000_0008, 0, 0, 0]);
    assert_eq!(guest(&host, 0x8000_0002, 0, &CTX), host.cpuid(0x8000_0002, 0), "brand string");
    assert_eq!(guest(&host, 0x8000_0006, 0, &CTX), host.cpuid(0x8000_0006, 0));
    assert_eq!(guest(&host, 0x8000_0008, 0, &CTX), [0x3027, 0, 0, 0], "39 physical, 48 linear bits");
}

#[test]
fn leaves_beyond_the_maxima_answer_as_the_highest_basic_leaf() {
    let host = tiger_lake(0x77fa_f3bf);
    let ctx = GuestCpuidContext { x2apic_id: 3, vcpu_count: 4, ..CTX };
    for leaf in [0x20, 0x1000, 0x3fff_ffff, 0x5000_0000, 0x7fff_ffff, 0x8000_0009, 0x8000_0100, 0xffff_ffff] {
        for subleaf in [0, 1, 7] {
            assert_eq!(guest(&host, leaf, subleaf, &ctx), guest(&host, 0x1f, subleaf, &ctx), "{leaf:#x}.{subleaf}");
        }
    }
}

#[test]
fn host_leaves_past_the_hosts_maximum_are_not_passed_on() {
    // A Lynnfield-like host: maximum basic leaf 0xB, no XSAVE; its leaf 0xD
    // would answer with leaf 0xB's data.
    let host = tiger_lake(0x0098_e3fd).set(0, 0, [0xb, VENDOR[0], VENDOR[1], VENDOR[2]]);
    assert_eq!(host.cpuid(0xd, 0), host.cpuid(0xb, 0));
    assert_eq!(guest(&host, 0xd, 0, &CTX), [0; 4]);
    // Its leaf 7 is beyond nothing, but a host with maximum 6 has none.
    let old = host.clone().set(0, 0, [6, VENDOR[0], VENDOR[1], VENDOR[2]]);
    assert_eq!(guest(&old, 7, 0, &CTX), [0; 4]);
    assert_eq!(guest(&old, 0, 0, &CTX)[0], MAX_BASIC_LEAF, "the guest's maximum does not shrink");
    assert_eq!(guest(&old, 0xb, 1, &CTX), [0, 1, 0x201, 0], "topology is synthesized");
    let no_ext = old.set(0x8000_0000, 0, [0x8000_0004, 0, 0, 0]);
    assert_eq!(guest(&no_ext, 0x8000_0008, 0, &CTX), [0; 4]);
}

#[test]
fn xsave_leaf_follows_the_guest_xcr0_and_hides_pkru_and_supervisor_state() {
    let host = tiger_lake(0x77fa_f3bf);
    let with = |xcr0| GuestCpuidContext { xcr0, ..CTX };
    // Supported: 0x2e7 without PKRU (9) = 0xe7; max size: Hi16_ZMM ends at
    // 0x680 + 0x400 = 0xa80.
    assert_eq!(guest(&host, 0xd, 0, &with(0x3)), [0xe7, 576, 0xa80, 0]);
    assert_eq!(guest(&host, 0xd, 0, &with(0x7))[1], 0x240 + 0x100, "AVX ends at 832");
    assert_eq!(guest(&host, 0xd, 0, &with(0xe7))[1], 0xa80);
    assert_eq!(guest(&host, 0xd, 0, &with(0x207))[1], 0x340, "PKRU not counted even if asked");
    // Subleaf 1: XSAVEOPT, XSAVEC, XGETBV1, no XSAVES; compacted size for
    // XCR0 = 7: 576 + 256; no supervisor components.
    assert_eq!(guest(&host, 0xd, 1, &with(0x7)), [0x7, 832, 0, 0]);
    assert_eq!(guest(&host, 0xd, 2, &CTX), [0x100, 0x240, 0, 0]);
    assert_eq!(guest(&host, 0xd, 7, &CTX), [0x400, 0x680, 0, 0]);
    for hidden in [3, 4, 8, 9, 17, 62, 63, 64] {
        assert_eq!(guest(&host, 0xd, hidden, &CTX), [0; 4], "component {hidden}");
    }
    // A host without XSAVE in leaf 1 has no leaf 0xD for the guest.
    assert_eq!(guest(&tiger_lake(0x77fa_f3bf & !bit(26)), 0xd, 0, &CTX), [0; 4]);
    assert_eq!(guest_xcr0_supported(|l, s| host.cpuid(l, s)), 0xe7);
}

#[test]
fn compacted_size_honours_64_byte_alignment() {
    // A component of 8 bytes marked 64-byte aligned after AVX (ends at 832).
    let host = tiger_lake(0x77fa_f3bf).set(0xd, 5, [8, 0x440, 2, 0]);
    let ctx = GuestCpuidContext { xcr0: 0x27, ..CTX };
    assert_eq!(guest(&host, 0xd, 1, &ctx)[1], 832 + 8, "832 is already aligned");
    let host = host.set(0xd, 2, [0x104, 0x240, 0, 0]);
    assert_eq!(guest(&host, 0xd, 1, &ctx)[1], 896 + 8, "576 + 260 = 836 rounds up to 896");
}

#[test]
fn frequency_leaves_come_from_the_measured_rates() {
    let host = tiger_lake(0x77fa_f3bf);
    // 38.4 MHz crystal * 125 / 2 = 2.4 GHz.
    assert_eq!(guest(&host, 0x15, 0, &CTX), [2, 125, 38_400_000, 0]);
    assert_eq!(guest(&host, 0x16, 0, &CTX), [2400, 2400, 38, 0]);
    // Bochs-like: 50 MHz TSC, 10 MHz timer.
    let bochs = GuestCpuidContext { tsc_khz: 50_000, apic_timer_khz: 10_000, ..CTX };
    assert_eq!(guest(&host, 0x15, 0, &bochs), [1, 5, 10_000_000, 0]);
    assert_eq!(guest(&host, 0x16, 0, &bochs), [50, 50, 10, 0]);
    let unknown = GuestCpuidContext { tsc_khz: 0, apic_timer_khz: 0, ..CTX };
    assert_eq!(guest(&host, 0x15, 0, &unknown), [0; 4]);
    assert_eq!(guest(&host, 0x16, 0, &unknown), [0; 4]);
    assert_eq!(guest(&host, HYPERVISOR_TIMING_LEAF, 0, &unknown), [0; 4]);
    let fast_timer = GuestCpuidContext { apic_timer_khz: 5_000_000, ..CTX };
    assert_eq!(guest(&host, 0x15, 0, &fast_timer), [0; 4], "crystal Hz would not fit");
}

#[test]
fn xsetbv_checks() {
    let host = tiger_lake(0x77fa_f3bf);
    let check = |index, value| check_xsetbv(|l, s| host.cpuid(l, s), index, value);
    for ok in [0x1, 0x3, 0x7, 0xe7] {
        assert_eq!(check(0, ok), Ok(()), "{ok:#x}");
    }
    assert_eq!(check(1, 0x3), Err(CpuidError::NoSuchXcr(1)));
    assert_eq!(check(0, 0x207), Err(CpuidError::UnsupportedXcr0 { value: 0x207, supported: 0xe7 }));
    for bad in [0x0, 0x2, 0x5, 0x67, 0x23, 0xe3] {
        assert_eq!(check(0, bad), Err(CpuidError::InconsistentXcr0(bad)), "{bad:#x}");
    }
    let shown = format!("{}", CpuidError::UnsupportedXcr0 { value: 0x207, supported: 0xe7 });
    assert_eq!(shown, "XCR0 0x207 enables components outside the guest's 0xe7");
}
