//! Per-CPU areas: one slot per possible CPU (logical id = MADT index),
//! reached through the GS base so that any code can find its own.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use loader_core::acpi::madt::MAX_CPUS;
use x86_64::registers::model_specific::GsBase;
use x86_64::structures::gdt::GlobalDescriptorTable;
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// What an exception handler recorded for a `cpu::probe` that faulted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fault {
    pub vector: u8,
    pub error_code: u64,
    pub cr2: u64,
    pub rip: u64,
}

#[repr(C, align(64))]
pub struct PerCpu {
    /// `gs:0` points back here, so `current()` is one load.
    self_ptr: AtomicU64,
    pub id: AtomicU32,
    pub apic_id: AtomicU32,
    /// Written by the exception handler when a probe faults; read by the
    /// probe on the same CPU right after, so nothing else races on it.
    pub last_fault: UnsafeCell<Fault>,
    /// Only touched by the owning CPU while it sets up its descriptors.
    pub gdt: UnsafeCell<GlobalDescriptorTable<8>>,
    pub tss: UnsafeCell<TaskStateSegment>,
}

// SAFETY: the `UnsafeCell` fields are only used by the CPU that owns the
// slot (see each field), the rest is atomic.
unsafe impl Sync for PerCpu {}

impl PerCpu {
    const fn new() -> Self {
        PerCpu {
            self_ptr: AtomicU64::new(0),
            id: AtomicU32::new(0),
            apic_id: AtomicU32::new(0),
            last_fault: UnsafeCell::new(Fault { vector: 0, error_code: 0, cr2: 0, rip: 0 }),
            gdt: UnsafeCell::new(GlobalDescriptorTable::empty()),
            tss: UnsafeCell::new(TaskStateSegment::new()),
        }
    }
}

static CPUS: [PerCpu; MAX_CPUS] = [const { PerCpu::new() }; MAX_CPUS];

/// Points this CPU's GS base at slot `id`. Called once per bring-up, on the
/// CPU itself, before anything uses `current()`.
pub fn install(id: usize, apic_id: u32) -> &'static PerCpu {
    let p = &CPUS[id];
    p.id.store(id as u32, Ordering::Relaxed);
    p.apic_id.store(apic_id, Ordering::Relaxed);
    p.self_ptr.store(p as *const PerCpu as u64, Ordering::Relaxed);
    GsBase::write(VirtAddr::from_ptr(p));
    p
}

/// This CPU's slot. Before `install` (early boot) that is slot 0.
pub fn current() -> &'static PerCpu {
    let p: u64;
    if GsBase::read().is_null() {
        return &CPUS[0];
    }
    // SAFETY: GS base is not 0, so `install` pointed it at a slot, whose
    // first word (gs:0) is `self_ptr`.
    unsafe { core::arch::asm!("mov {}, gs:[0]", out(reg) p, options(nostack, readonly, preserves_flags)) };
    // SAFETY: `self_ptr` always holds the address of a slot in `CPUS`.
    unsafe { &*(p as *const PerCpu) }
}

pub fn current_id() -> u32 {
    current().id.load(Ordering::Relaxed)
}
