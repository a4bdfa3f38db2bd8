//! The numbers of the guest ABI (the crate documentation describes it).
//! The runner checks built guests against the load window from here.

/// Where guests are linked and loaded (guest-physical = guest-virtual).
pub const LOAD_BASE: u64 = 0x10_0000;
/// Every `PT_LOAD` segment of these guests ends at or below this, so each
/// takes at most 1 MiB (the runner checks it). The VMM's own limit is a
/// few MiB higher; keeping below 2 MiB leaves it room.
pub const LOAD_LIMIT: u64 = 0x20_0000;
/// The VMM's identity map covers guest-physical [0, this) with 2 MiB pages.
pub const IDENTITY_MAP_END: u64 = 1 << 30;

/// The VMM's page tables: one PML4, one PDPT, one PD of 2 MiB pages.
pub const PML4: u64 = 0x1000;
pub const PDPT: u64 = 0x2000;
pub const PD: u64 = 0x3000;
/// The VMM's GDT and its two descriptors.
pub const GDT: u64 = 0x500;
pub const CODE_SELECTOR: u16 = 0x08;
pub const DATA_SELECTOR: u16 = 0x10;

/// Each vCPU's stack: RSP = RAM top - vcpu * this at the entry.
pub const STACK_SIZE: u64 = 0x1_0000;

/// `out dx, al`: one byte of console output.
pub const CONSOLE_PORT: u16 = 0xe9;
/// `out dx, eax`: the guest is done; the VM stops with this status.
pub const EXIT_PORT: u16 = 0xf4;

/// CPUID leaf: EAX = highest hypervisor leaf, EBX:ECX = the signature.
pub const HV_LEAF: u32 = 0x4000_0000;
/// CPUID leaf: EAX = TSC kHz, EBX = APIC timer kHz.
pub const HV_FREQUENCY_LEAF: u32 = 0x4000_0010;
/// The signature in EBX, ECX of [`HV_LEAF`] (EDX is not part of it).
pub const HV_SIGNATURE: [u8; 8] = *b"modvisor";

/// The `counter` guest: vCPU n increments the u64 at this + 8 * n.
pub const COUNTER_BASE: u64 = 0x9000;
/// The `counter` guest's counters fill one page: at most this many vCPUs.
pub const COUNTER_VCPUS: u32 = 512;
/// The `counter` guest: a non-zero u64 here makes every vCPU stop
/// counting, and vCPU 0 exit with status 0 once all have.
pub const COUNTER_STOP: u64 = 0x8ff8;

/// The `unmapped` guest reads this guest-physical address: 1 GiB, the
/// first byte above the VMM's identity map, which the guest maps itself
/// (one 2 MiB page through PDPT entry 1) so that the read reaches EPT.
pub const UNMAPPED: u64 = 0x4000_0000;

/// The `timing` guest writes its figures here, one u64 each, in guest TSC
/// ticks, before it exits 0: [`TIMING_FIGURES`] says which word is which.
pub const TIMING_BASE: u64 = 0xa000;
/// The `timing` guest's words at [`TIMING_BASE`], in order: the CPUID
/// exit round trip (minimum, median), then the HLT-to-wake latency of an
/// IPI (minimum, median).
pub const TIMING_FIGURES: [&str; 4] = ["cpuid-min", "cpuid-median", "wake-min", "wake-median"];
