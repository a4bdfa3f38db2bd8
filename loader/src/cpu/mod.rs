//! Per-CPU processor state: the GDT and TSS with the interrupt stacks, and
//! the per-CPU areas.

pub mod gdt;
#[cfg(feature = "ktest")]
mod ktests;
pub mod percpu;

use crate::memory::Stack;

/// Pages of each interrupt stack (NMI, double fault, machine check).
const IST_PAGES: u64 = 4;

/// The stacks a CPU keeps for as long as it runs: the IST stacks live here
/// so that a CPU that is parked and started again reuses them.
pub struct CpuStacks {
    pub ist: [Stack; 3],
}

impl CpuStacks {
    pub fn new() -> Result<CpuStacks, crate::memory::Error> {
        Ok(CpuStacks { ist: [Stack::new(IST_PAGES)?, Stack::new(IST_PAGES)?, Stack::new(IST_PAGES)?] })
    }
}

/// The CPU features plugins can need (`plugins::meta::cpu`) that the boot
/// CPU has.
pub fn plugin_features() -> u32 {
    let cpuid = raw_cpuid::CpuId::new();
    let vmx = cpuid.get_feature_info().is_some_and(|f| f.has_vmx());
    if vmx {
        plugins::meta::cpu::VMX
    } else {
        0
    }
}

/// Sets up the running CPU as logical CPU `id`: per-CPU area, GDT, TSS with
/// the IST stacks, IDT. Interrupts must be off.
pub fn init_this_cpu(id: usize, apic_id: u32, stacks: &CpuStacks) {
    let cpu = percpu::install(id, apic_id);
    let tops = [stacks.ist[0].top(), stacks.ist[1].top(), stacks.ist[2].top()];
    // SAFETY: runs on the CPU that owns `cpu` with interrupts off (caller),
    // and the stacks in `stacks` are kept until the CPU stops.
    unsafe { gdt::load(cpu, tops) };
    crate::interrupts::idt::load();
}

/// Loads an empty IDT and raises an exception: the CPU resets.
pub fn triple_fault() -> ! {
    let empty = x86_64::structures::DescriptorTablePointer { limit: 0, base: x86_64::VirtAddr::new(0) };
    // SAFETY: deliberately leaves no way to handle the next exception.
    unsafe { x86_64::instructions::tables::lidt(&empty) };
    // SAFETY: with no IDT the breakpoint escalates to a triple fault, which
    // resets the CPU: nothing runs after it.
    unsafe { core::arch::asm!("int3", options(noreturn)) }
}
