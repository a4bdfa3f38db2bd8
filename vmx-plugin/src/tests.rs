//! The configuration and compatibility logic on the capability MSRs that
//! Bochs's CPU models report (`testdata/`, see its README).

use crate::compat::{check, fixed_bits, Action, Cpuid, Error, FixedBits, Probe, Reference};
use crate::config::*;
use crate::msr::*;
use std::collections::{BTreeMap, BTreeSet};

const DUMPS: [(&str, &str); 11] = [
    ("broadwell_ult", include_str!("../testdata/broadwell_ult.txt")),
    ("core2_penryn_t9600", include_str!("../testdata/core2_penryn_t9600.txt")),
    ("corei3_cnl", include_str!("../testdata/corei3_cnl.txt")),
    ("corei5_arrandale_m520", include_str!("../testdata/corei5_arrandale_m520.txt")),
    ("corei5_lynnfield_750", include_str!("../testdata/corei5_lynnfield_750.txt")),
    ("corei7_haswell_4770", include_str!("../testdata/corei7_haswell_4770.txt")),
    ("corei7_icelake_u", include_str!("../testdata/corei7_icelake_u.txt")),
    ("corei7_ivy_bridge_3770k", include_str!("../testdata/corei7_ivy_bridge_3770k.txt")),
    ("corei7_sandy_bridge_2600k", include_str!("../testdata/corei7_sandy_bridge_2600k.txt")),
    ("corei7_skylake_x", include_str!("../testdata/corei7_skylake_x.txt")),
    ("tigerlake", include_str!("../testdata/tigerlake.txt")),
];

const EPT: Policy = Policy { require_ept: true };
const ANY: Policy = Policy { require_ept: false };

/// One recorded CPU: CPUID.1:ECX, IA32_FEATURE_CONTROL and the capability
/// MSRs it could read.
#[derive(Clone)]
struct Dump {
    leaf1_ecx: u32,
    feature_control: u64,
    msrs: BTreeMap<u32, u64>,
}

fn hex(text: &str) -> u64 {
    let digits = text.split_whitespace().next().and_then(|t| t.strip_prefix("0x")).expect("a 0x number");
    u64::from_str_radix(digits, 16).expect("hex digits")
}

/// Parses the recorder's text: `NAME (0xINDEX)=0xVALUE ...` per readable
/// MSR, `CPUID.1:ECX=0x...`, `IA32_FEATURE_CONTROL=0x...`, and summary
/// lines that repeat those values in words (skipped). Any other line fails,
/// so a changed format cannot go unnoticed.
fn parse(text: &str) -> Dump {
    let summaries = ["cpu vendor=", "pin allowed1:", "proc allowed1:", "ctls2 allowed1:", "no tertiary controls"];
    let (mut leaf1_ecx, mut feature_control, mut msrs) = (None, None, BTreeMap::new());
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("CPUID.1:ECX=") {
            leaf1_ecx = Some(hex(value) as u32);
        } else if let Some(value) = line.strip_prefix("IA32_FEATURE_CONTROL=") {
            feature_control = Some(hex(value));
        } else if let (Some(open), Some(close)) = (line.find("(0x"), line.find(")=0x")) {
            assert!(msrs.insert(hex(&line[open + 1..close]) as u32, hex(&line[close + 2..])).is_none(), "{line}");
        } else {
            assert!(summaries.iter().any(|s| line.starts_with(s)), "unknown line `{line}`");
        }
    }
    Dump {
        leaf1_ecx: leaf1_ecx.expect("a CPUID line"),
        feature_control: feature_control.expect("a FEATURE_CONTROL line"),
        msrs,
    }
}

fn dump(name: &str) -> Dump {
    parse(DUMPS.iter().find(|d| d.0 == name).expect("a recorded model").1)
}

impl Dump {
    fn caps(&self) -> Caps {
        Caps::read(|index| self.msrs.get(&index).copied()).unwrap()
    }

    fn config(&self, policy: Policy) -> Result<VmxConfig, ConfigError> {
        VmxConfig::new(&self.caps(), policy)
    }

    /// The dumps hold CPUID leaf 1 only; leaf 7's words stay 0 on every
    /// model, so only leaf 1's CR4 features (VMXE, PCIDE, OSXSAVE) differ.
    fn cpuid(&self) -> Cpuid {
        Cpuid { leaf1_ecx: self.leaf1_ecx, ..Cpuid::default() }
    }

    fn probe(&self, cpu: u32, policy: Policy) -> Probe {
        Probe { cpu, cpuid: self.cpuid(), feature_control: self.feature_control, config: self.config(policy) }
    }

    /// This model as the boot CPU, CPU 0.
    fn reference(&self, policy: Policy) -> Result<Reference, Error> {
        Reference::new(0, self.cpuid(), self.config(policy))
    }

    /// Rewrites one MSR.
    fn with(mut self, index: u32, change: impl FnOnce(u64) -> u64) -> Dump {
        let value = self.msrs.get_mut(&index).expect("a recorded MSR");
        *value = change(*value);
        self
    }

    /// Sets or clears the allowed-1 setting of `control` in its plain and
    /// TRUE MSR (which agree on allowed-1 settings in every dump).
    fn allow(self, control: Control, allowed: bool) -> Dump {
        let msrs = match control.kind {
            Kind::Pin => [IA32_VMX_PINBASED_CTLS, IA32_VMX_TRUE_PINBASED_CTLS],
            Kind::Primary => [IA32_VMX_PROCBASED_CTLS, IA32_VMX_TRUE_PROCBASED_CTLS],
            Kind::Exit => [IA32_VMX_EXIT_CTLS, IA32_VMX_TRUE_EXIT_CTLS],
            Kind::Entry => [IA32_VMX_ENTRY_CTLS, IA32_VMX_TRUE_ENTRY_CTLS],
            Kind::Secondary | Kind::Tertiary => unreachable!("one MSR each"),
        };
        let bit = 1 << (32 + control.bit);
        msrs.into_iter().fold(self, |d, index| d.with(index, |v| if allowed { v | bit } else { v & !bit }))
    }
}

/// `cpu`'s check (as CPU 1) against `boot` as the boot CPU.
fn pair(boot: &str, cpu: &str, policy: Policy) -> Result<Action, Error> {
    check(&dump(cpu).probe(1, policy), &dump(boot).reference(policy).unwrap())
}

#[test]
fn every_dump_parses_with_the_values_in_its_text() {
    let skylake = dump("corei7_skylake_x");
    assert_eq!((skylake.leaf1_ecx, skylake.feature_control), (0x77fa_f3bf, 0x5));
    assert_eq!(skylake.msrs.len(), 18);
    assert_eq!(skylake.msrs[&IA32_VMX_TRUE_PROCBASED_CTLS], 0xf7f9_fffe_0400_6172);
    let penryn = dump("core2_penryn_t9600");
    assert_eq!(penryn.msrs.len(), 16);
    assert!(!penryn.msrs.contains_key(&IA32_VMX_EPT_VPID_CAP));
    for (name, _) in DUMPS {
        assert!(
            !dump(name).msrs.contains_key(&IA32_VMX_PROCBASED_CTLS3),
            "{name}: no Bochs model has tertiary controls"
        );
    }
}

#[test]
fn caps_read_asks_for_exactly_the_msrs_that_exist() {
    // The recorder read every VMX MSR it could; Caps::read must ask for all
    // of those it uses (IA32_VMX_MISC, VMCS_ENUM and VMFUNC it does not)
    // and for no other, or a real CPU would fault.
    let unused = BTreeSet::from([IA32_VMX_MISC, IA32_VMX_VMCS_ENUM, IA32_VMX_VMFUNC]);
    for (name, _) in DUMPS {
        let d = dump(name);
        let mut asked = BTreeSet::new();
        Caps::read(|index| {
            asked.insert(index);
            d.msrs.get(&index).copied()
        })
        .unwrap();
        let expected: BTreeSet<u32> = d.msrs.keys().copied().filter(|i| !unused.contains(i)).collect();
        assert_eq!(asked, expected, "{name}");
    }
    let tertiary = dump("corei7_skylake_x").allow(ACTIVATE_TERTIARY_CONTROLS, true);
    assert_eq!(
        Caps::read(|index| tertiary.msrs.get(&index).copied()),
        Err(ConfigError::UnreadableMsr(IA32_VMX_PROCBASED_CTLS3)),
        "allowed-1 of \"activate tertiary controls\" makes IA32_VMX_PROCBASED_CTLS3 exist"
    );
}

#[test]
fn true_msrs_are_used_when_basic_bit_55_is_set() {
    let skylake = dump("corei7_skylake_x");
    // TRUE_PROCBASED lets CR3-load/store exiting (bits 15, 16) be 0.
    assert_eq!(skylake.caps().effective_ctls().procbased, 0xf7f9_fffe_0400_6172);
    let plain = skylake.clone().with(IA32_VMX_BASIC, |v| v & !BASIC_TRUE_CTLS);
    let caps = plain.caps();
    assert_eq!(caps.true_ctls, None);
    assert_eq!(caps.effective_ctls().procbased, 0xf7f9_fffe_0401_e172);

    // Proof of which MSR decides: a TRUE MSR without HLT exiting refuses
    // the CPU only while bit 55 points at it.
    let no_hlt = |d: Dump| d.with(IA32_VMX_TRUE_PROCBASED_CTLS, |v| v & !(1 << (32 + 7)));
    assert_eq!(no_hlt(skylake.clone()).config(ANY), Err(ConfigError::MissingControl(HLT_EXITING)));
    assert!(no_hlt(plain).config(ANY).is_ok());
}

#[test]
fn skylake_x_configuration() {
    let c = dump("corei7_skylake_x").config(EPT).unwrap();
    assert_eq!((c.revision_id, c.vmcs_size), (0x2b, 4096));
    // (required 0x09 | optional 0xe0) & allowed-1 0x7f | allowed-0 0x16.
    assert_eq!(c.pin, 0x7f);
    // Required 0x3199_8e8c | optional 0x8062_0000, less "activate tertiary"
    // (not allowed-1), | TRUE allowed-0 0x0400_6172.
    assert_eq!(c.primary, 0xb5f9_effe);
    assert_eq!(c.secondary, 0x3b3);
    assert_eq!(c.tertiary, 0);
    assert_eq!((c.exit, c.entry), (0x3_efff, 0x13ff));
    assert_eq!((c.cr0_fixed0, c.cr0_fixed1, c.cr4_fixed0, c.cr4_fixed1), (0x8000_0021, 0xffff_ffff, 0x2000, 0x37_27ff));
    assert_eq!(c.ept_vpid_caps, 0xf01_0611_4040);
    // platform.md: EPT, VPID, unrestricted guest, APIC-register
    // virtualization and virtual-interrupt delivery; no posted interrupts,
    // no tertiary controls, so no IPI virtualization.
    assert_eq!(
        c.features(),
        [
            ("virtual NMIs", true),
            ("activate VMX-preemption timer", true),
            ("process posted interrupts", false),
            ("NMI-window exiting", true),
            ("use TPR shadow", true),
            ("activate secondary controls", true),
            ("activate tertiary controls", false),
            ("virtualize APIC accesses", true),
            ("enable EPT", true),
            ("virtualize x2APIC mode", true),
            ("enable VPID", true),
            ("unrestricted guest", true),
            ("APIC-register virtualization", true),
            ("virtual-interrupt delivery", true),
            ("IPI virtualization", false),
        ]
    );
}

#[test]
fn penryn_is_refused_when_ept_is_required_and_runs_without_it_otherwise() {
    let penryn = dump("core2_penryn_t9600");
    assert_eq!(penryn.config(EPT), Err(ConfigError::EptRequired));
    let err = penryn.reference(EPT).unwrap_err();
    assert_eq!(err, Error::Config { cpu: 0, cause: ConfigError::EptRequired });
    assert_eq!(
        err.to_string(),
        "VMX configuration failed on CPU 0: EPT required but not supported (or without 4-level walks, write-back or \
         all-context INVEPT)"
    );

    let c = penryn.config(ANY).unwrap();
    // Secondary allowed-1 is 0x41: "virtualize APIC accesses" and WBINVD
    // exiting (not used).
    assert_eq!(c.secondary, 0x1);
    for off in [ENABLE_EPT, ENABLE_VPID, UNRESTRICTED_GUEST, APIC_REGISTER_VIRTUALIZATION, VIRTUAL_INTERRUPT_DELIVERY] {
        assert!(!c.has(off), "{}", off.name);
    }
    assert_eq!(c.ept_vpid_caps, 0);
    assert!(c.has(USE_TPR_SHADOW));
}

#[test]
fn only_penryn_lacks_ept() {
    let refused: Vec<&str> = DUMPS.iter().map(|d| d.0).filter(|name| dump(name).config(EPT).is_err()).collect();
    assert_eq!(refused, ["core2_penryn_t9600"]);
}

#[test]
fn every_model_is_compatible_with_itself() {
    for (name, _) in DUMPS {
        for policy in [ANY, EPT] {
            let d = dump(name);
            // Penryn has no EPT, so it is its own reference only without
            // it (see `only_penryn_lacks_ept`); every other pair must work.
            if (name, policy) == ("core2_penryn_t9600", EPT) {
                assert!(d.reference(policy).is_err(), "{name} {policy:?}");
                continue;
            }
            let boot = d.reference(policy).unwrap_or_else(|e| panic!("{name} {policy:?}: {e}"));
            assert_eq!(check(&d.probe(1, policy), &boot), Ok(Action::Enable), "{name} {policy:?}");
        }
    }
}

#[test]
fn different_models_name_the_first_differing_field() {
    let inconsistent = |field| Err(Error::Inconsistent { cpu: 1, field });
    let skylake_tigerlake = pair("corei7_skylake_x", "tigerlake", EPT);
    assert_eq!(skylake_tigerlake, inconsistent("vmcs revision id"));
    assert_eq!(skylake_tigerlake.unwrap_err().to_string(), "inconsistent VMX configuration on CPU 1: vmcs revision id");
    // Same revision id (4), CR4 fixed1 0xf72fff vs 0x772fff; their VM-exit
    // and VM-entry MSRs differ only in controls modvisor does not use.
    assert_eq!(pair("tigerlake", "corei7_icelake_u", EPT), inconsistent("cr4 fixed1"));
    // Ivy Bridge lacks APIC-register virtualization and virtual-interrupt
    // delivery.
    assert_eq!(
        pair("corei7_haswell_4770", "corei7_ivy_bridge_3770k", EPT),
        inconsistent("secondary processor-based controls")
    );
    // Cannon Lake: the same.
    assert_eq!(pair("corei7_skylake_x", "corei3_cnl", EPT), inconsistent("secondary processor-based controls"));
    assert_eq!(pair("corei7_sandy_bridge_2600k", "corei7_ivy_bridge_3770k", EPT), inconsistent("cr4 fixed1"));
    assert_eq!(pair("corei7_haswell_4770", "broadwell_ult", EPT), inconsistent("cr4 fixed1"));
    // Lynnfield lacks unrestricted guest.
    assert_eq!(
        pair("corei5_arrandale_m520", "corei5_lynnfield_750", EPT),
        inconsistent("secondary processor-based controls")
    );
    // Broadwell's MSRs differ from Skylake-X's only in secondary controls
    // modvisor does not use (PML, XSAVES, TSC scaling).
    assert_eq!(pair("corei7_skylake_x", "broadwell_ult", EPT), Ok(Action::Enable));
}

#[test]
fn cpus_with_different_cr4_features_are_refused() {
    // Skylake-X has PCID (CPUID.1:ECX bit 17), Penryn does not.
    let err = pair("corei7_skylake_x", "core2_penryn_t9600", ANY).unwrap_err();
    assert_eq!(err, Error::Cr4Mismatch { cpu: 1, bit: 17, name: "PCIDE", reserved_here: true });
    assert_eq!(
        err.to_string(),
        "CR4 reserved bits of CPU 1 differ from the boot CPU's: PCIDE (bit 17) is reserved on this CPU only"
    );
    assert_eq!(
        pair("core2_penryn_t9600", "corei7_skylake_x", ANY),
        Err(Error::Cr4Mismatch { cpu: 1, bit: 17, name: "PCIDE", reserved_here: false })
    );
    // Penryn has XSAVE (bit 26), Arrandale does not.
    assert_eq!(
        pair("core2_penryn_t9600", "corei5_arrandale_m520", ANY),
        Err(Error::Cr4Mismatch { cpu: 1, bit: 18, name: "OSXSAVE", reserved_here: true })
    );
    // Leaf 7 features count too: a boot CPU with SMAP.
    let skylake = dump("corei7_skylake_x");
    let smap = Cpuid { leaf7_ebx: 1 << 20, ..skylake.cpuid() };
    let boot = Reference::new(0, smap, skylake.config(EPT)).unwrap();
    assert_eq!(
        check(&skylake.probe(1, EPT), &boot),
        Err(Error::Cr4Mismatch { cpu: 1, bit: 21, name: "SMAP", reserved_here: true })
    );
}

#[test]
fn feature_control_decides_whether_to_lock_or_refuse() {
    let skylake = dump("corei7_skylake_x");
    let boot = skylake.reference(EPT).unwrap();
    let with_fc = |feature_control| check(&Probe { feature_control, ..skylake.probe(1, EPT) }, &boot);
    assert_eq!(with_fc(0x5), Ok(Action::Enable));
    // Unlocked: lock it with VMX outside SMX on, keeping the other bits.
    assert_eq!(with_fc(0x0), Ok(Action::LockAndEnable { feature_control: 0x5 }));
    assert_eq!(with_fc(0x4), Ok(Action::LockAndEnable { feature_control: 0x5 }));
    assert_eq!(with_fc(0x2), Ok(Action::LockAndEnable { feature_control: 0x7 }));
    // Locked with VMX outside SMX off (inside SMX does not help).
    for locked_off in [0x1, 0x3] {
        let err = with_fc(locked_off).unwrap_err();
        assert_eq!(err, Error::DisabledByFirmware { cpu: 1 });
        assert_eq!(err.to_string(), "VMX disabled by firmware on CPU 1");
    }
}

#[test]
fn a_cpu_without_vmx_is_refused_before_anything_else() {
    let skylake = dump("corei7_skylake_x");
    let no_vmx = Cpuid { leaf1_ecx: skylake.leaf1_ecx & !(1 << 5), ..Cpuid::default() };
    let probe =
        Probe { cpu: 2, cpuid: no_vmx, feature_control: 0x1, config: Err(ConfigError::UnreadableMsr(IA32_VMX_BASIC)) };
    let err = check(&probe, &skylake.reference(EPT).unwrap()).unwrap_err();
    assert_eq!(err, Error::NotSupported { cpu: 2 });
    assert_eq!(err.to_string(), "VMX not supported by CPU 2");
    // At load, on the boot CPU (QEMU TCG has no VMX).
    assert_eq!(Reference::new(0, no_vmx, probe.config), Err(Error::NotSupported { cpu: 0 }));
}

#[test]
fn checks_run_in_order_and_a_refused_cpu_is_not_locked() {
    let (skylake, tigerlake) = (dump("corei7_skylake_x"), dump("tigerlake"));
    let boot = skylake.reference(EPT).unwrap();
    // Locked off and inconsistent: firmware is named first.
    let locked_off = Probe { feature_control: 0x1, ..tigerlake.probe(1, EPT) };
    assert_eq!(check(&locked_off, &boot), Err(Error::DisabledByFirmware { cpu: 1 }));
    // Unlocked and inconsistent: refused, so no write is asked for.
    let unlocked = Probe { feature_control: 0x0, ..tigerlake.probe(1, EPT) };
    assert_eq!(check(&unlocked, &boot), Err(Error::Inconsistent { cpu: 1, field: "vmcs revision id" }));
    // CR4 before the configuration: Lynnfield differs in both.
    let lynnfield = dump("corei5_lynnfield_750").probe(1, EPT);
    assert!(matches!(check(&lynnfield, &boot), Err(Error::Cr4Mismatch { name: "PCIDE", .. })));
}

#[test]
fn a_missing_required_control_is_named() {
    let skylake = dump("corei7_skylake_x");
    let no_ack = skylake.clone().allow(ACK_INTERRUPT_ON_EXIT, false);
    let cause = ConfigError::MissingControl(ACK_INTERRUPT_ON_EXIT);
    assert_eq!(no_ack.config(ANY), Err(cause));
    assert_eq!(cause.to_string(), "required VM-exit control not supported: acknowledge interrupt on exit");
    let err = check(&no_ack.probe(3, EPT), &skylake.reference(EPT).unwrap()).unwrap_err();
    assert_eq!(err, Error::Config { cpu: 3, cause });
    assert_eq!(
        err.to_string(),
        "VMX configuration failed on CPU 3: required VM-exit control not supported: acknowledge interrupt on exit"
    );
    let no_ia32e = skylake.allow(IA32E_MODE_GUEST, false);
    assert_eq!(no_ia32e.config(ANY), Err(ConfigError::MissingControl(IA32E_MODE_GUEST)));
}

#[test]
fn basic_fields_are_checked() {
    let skylake = dump("corei7_skylake_x");
    let basic = |change: fn(u64) -> u64| skylake.clone().with(IA32_VMX_BASIC, change).config(ANY);
    assert_eq!(basic(|v| v & !(0x1fff << 32) | 0x1800 << 32), Err(ConfigError::VmcsTooLarge(0x1800)));
    assert_eq!(basic(|v| v | 1 << 48), Err(ConfigError::NarrowAddresses));
    assert_eq!(basic(|v| v & !(0xf << 50)), Err(ConfigError::MemoryType(0)));
}

#[test]
fn optional_controls_follow_their_prerequisites() {
    let skylake = dump("corei7_skylake_x");

    // No TPR shadow: no x2APIC virtualization, APIC-register virtualization
    // or virtual-interrupt delivery; EPT stays.
    let no_tpr = skylake.clone().allow(USE_TPR_SHADOW, false).config(EPT).unwrap();
    assert_eq!(no_tpr.secondary, 0x3b3 & !(1 << 4 | 1 << 8 | 1 << 9));

    // EPT without write-back paging structures is no EPT, and unrestricted
    // guest goes with it.
    let no_wb = skylake.clone().with(IA32_VMX_EPT_VPID_CAP, |v| v & !EPT_MEMORY_TYPE_WB);
    assert_eq!(no_wb.config(EPT), Err(ConfigError::EptRequired));
    let c = no_wb.config(ANY).unwrap();
    assert!(!c.has(ENABLE_EPT) && !c.has(UNRESTRICTED_GUEST) && c.has(ENABLE_VPID));
    assert_eq!(c.ept_vpid_caps, 0xf01_0000_0000);

    // VPID without single- or all-context INVVPID is no VPID.
    let no_invvpid_types = skylake.clone().with(IA32_VMX_EPT_VPID_CAP, |v| v & !(0x3 << 41));
    let c = no_invvpid_types.config(EPT).unwrap();
    assert!(!c.has(ENABLE_VPID) && c.has(ENABLE_EPT));
    assert_eq!(c.ept_vpid_caps, 0x0611_4040);

    // Posted interrupts where the CPU offers them, but only with
    // virtual-interrupt delivery (Cannon Lake has none).
    let posted = |d: Dump| d.allow(POSTED_INTERRUPTS, true);
    assert!(posted(skylake.clone()).config(EPT).unwrap().has(POSTED_INTERRUPTS));
    assert!(!posted(dump("corei3_cnl")).config(EPT).unwrap().has(POSTED_INTERRUPTS));

    // IPI virtualization needs tertiary controls and posted interrupts.
    let mut tertiary = skylake.allow(ACTIVATE_TERTIARY_CONTROLS, true);
    tertiary.msrs.insert(IA32_VMX_PROCBASED_CTLS3, 1 << IPI_VIRTUALIZATION.bit);
    let c = tertiary.config(EPT).unwrap();
    assert!(c.has(ACTIVATE_TERTIARY_CONTROLS) && !c.has(IPI_VIRTUALIZATION));
    assert_eq!(c.tertiary, 0);
    let c = posted(tertiary).config(EPT).unwrap();
    assert_eq!(c.tertiary, 0x10);
    assert!(c.has(IPI_VIRTUALIZATION));
}

#[test]
fn first_difference_is_none_exactly_when_equal() {
    let (skylake, tigerlake) = (dump("corei7_skylake_x").config(EPT).unwrap(), dump("tigerlake").config(EPT).unwrap());
    assert_eq!(skylake.first_difference(&skylake), None);
    assert_ne!(skylake, tigerlake);
    let mut next = tigerlake;
    next.revision_id = skylake.revision_id;
    assert_eq!(skylake.first_difference(&next), Some("cr4 fixed1"));
    next.cr4_fixed1 = skylake.cr4_fixed1;
    assert_eq!(skylake.first_difference(&next), None);
    assert_eq!(skylake, next);
    next.exit ^= 1 << 20;
    assert_eq!(skylake.first_difference(&next), Some("vm-exit controls"));
}

#[test]
fn control_registers_are_checked_against_the_fixed_bits() {
    let c = dump("corei7_skylake_x").config(EPT).unwrap();
    // The loader's long mode: PE, NE, WP, PG; CR4 with PAE, PGE, OSFXSR,
    // OSXMMEXCPT, OSXSAVE and VMXE.
    let (cr0, cr4) = (0x8001_0021, 0x4_06a0 | 1 << 13);
    assert_eq!(fixed_bits(cr0, c.cr0_fixed0, c.cr0_fixed1), Ok(()));
    assert_eq!(fixed_bits(cr4, c.cr4_fixed0, c.cr4_fixed1), Ok(()));
    // Without NE, VMXON would raise #GP.
    assert_eq!(fixed_bits(cr0 & !0x20, c.cr0_fixed0, c.cr0_fixed1), Err(FixedBits { missing: 0x20, extra: 0 }));
    assert_eq!(fixed_bits(cr4 & !(1 << 13), c.cr4_fixed0, c.cr4_fixed1), Err(FixedBits { missing: 1 << 13, extra: 0 }));
    // LA57 (bit 12) is outside skylake_x's CR4 fixed1.
    assert_eq!(fixed_bits(cr4 | 1 << 12, c.cr4_fixed0, c.cr4_fixed1), Err(FixedBits { missing: 0, extra: 1 << 12 }));
}
