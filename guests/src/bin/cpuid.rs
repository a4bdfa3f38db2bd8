//! `cpuid`: checks what the ABI promises of CPUID. Every vCPU checks that
//! its x2APIC id (leaf 0xB EDX) is its vcpu id; vCPU 0 also checks the
//! hypervisor leaves (signature "modvisor", TSC and APIC timer kHz
//! non-zero) and leaf 1 (hypervisor bit set, VMX clear), waits for the
//! others and exits 0 if everything held, 1 otherwise.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::hint::spin_loop;
use core::sync::atomic::{AtomicU32, Ordering};

use test_guests::abi::HV_FREQUENCY_LEAF;
use test_guests::check::Checks;
use test_guests::cpu::cpuid;
use test_guests::hv::{self, LEAF1_ECX_HYPERVISOR, LEAF1_ECX_TSC_DEADLINE, LEAF1_ECX_VMX, LEAF1_ECX_X2APIC};
use test_guests::Start;

test_guests::guest!(check_cpuid);

/// The per-vCPU checks, summed over the vCPUs that are done.
static DONE: AtomicU32 = AtomicU32::new(0);
static MADE: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);

/// The topology leaf whose EDX is the x2APIC id.
const TOPOLOGY_LEAF: u32 = 0xb;

fn check_cpuid(start: &Start) -> u32 {
    let mut own = Checks::new("cpuid");
    let max_basic = cpuid(0, 0).eax;
    if max_basic < TOPOLOGY_LEAF {
        own.check(false, format_args!("vcpu {}: leaf 0xb offered (highest basic leaf {max_basic:#x})", start.vcpu));
    } else {
        let id = cpuid(TOPOLOGY_LEAF, 0).edx;
        own.check(id == start.vcpu, format_args!("vcpu {}: x2apic id (leaf 0xb edx) is {id}", start.vcpu));
    }
    MADE.fetch_add(own.made(), Ordering::AcqRel);
    FAILED.fetch_add(own.failed(), Ordering::AcqRel);
    DONE.fetch_add(1, Ordering::AcqRel);
    if start.vcpu != 0 {
        test_guests::park();
    }

    let mut checks = Checks::new("cpuid");
    let ecx = hv::leaf1_ecx();
    checks.check(ecx & LEAF1_ECX_HYPERVISOR != 0, format_args!("leaf 1 ecx {ecx:#010x}: bit 31 (hypervisor) set"));
    checks.check(ecx & LEAF1_ECX_VMX == 0, format_args!("leaf 1 ecx {ecx:#010x}: bit 5 (vmx) clear"));
    let vendor = hv::vendor();
    checks.check(vendor.is_modvisor(), format_args!("leaf 0x40000000 ebx:ecx {} is \"modvisor\"", vendor.signature()));
    checks.check(
        vendor.max_leaf >= HV_FREQUENCY_LEAF,
        format_args!("leaf 0x40000000 eax (highest hypervisor leaf) {:#x} >= 0x40000010", vendor.max_leaf),
    );
    let f = cpuid(HV_FREQUENCY_LEAF, 0);
    checks.check(f.eax != 0, format_args!("leaf 0x40000010 eax (tsc) {} kHz is non-zero", f.eax));
    checks.check(f.ebx != 0, format_args!("leaf 0x40000010 ebx (apic timer) {} kHz is non-zero", f.ebx));
    let bit = |mask: u32| if ecx & mask != 0 { "set" } else { "clear" };
    checks.note(format_args!(
        "leaf 1 ecx bit 21 (x2apic) {}, bit 24 (tsc-deadline) {}; highest basic leaf {max_basic:#x}",
        bit(LEAF1_ECX_X2APIC),
        bit(LEAF1_ECX_TSC_DEADLINE)
    ));

    while DONE.load(Ordering::Acquire) < start.count {
        spin_loop();
    }
    checks.add(MADE.load(Ordering::Acquire), FAILED.load(Ordering::Acquire));
    checks.note(format_args!("{} vcpus checked their x2apic ids", start.count));
    checks.finish()
}
