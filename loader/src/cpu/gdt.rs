//! Each CPU's GDT and TSS. The TSS carries the interrupt stack table: NMI,
//! double fault and machine check run on stacks of their own, so they still
//! work when the interrupted stack is broken (e.g. overflowed into its guard).

use crate::cpu::percpu::PerCpu;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::Descriptor;
use x86_64::VirtAddr;

/// IST slots (1-based in the IDT gate, 0-based in the TSS array).
pub const IST_DOUBLE_FAULT: u8 = 1;
pub const IST_NMI: u8 = 2;
pub const IST_MACHINE_CHECK: u8 = 3;

/// Builds and loads this CPU's GDT and TSS with the given IST stack tops
/// (double fault, NMI, machine check).
///
/// # Safety
/// Must run on the CPU that owns `cpu`, with interrupts off, and the stacks
/// must stay mapped for as long as the CPU runs.
pub unsafe fn load(cpu: &'static PerCpu, ist_tops: [u64; 3]) {
    // SAFETY: only the owning CPU touches its TSS (caller contract).
    let tss = unsafe { &mut *cpu.tss.get() };
    // SAFETY: likewise its GDT.
    let gdt = unsafe { &mut *cpu.gdt.get() };
    let mut ist = tss.interrupt_stack_table;
    for (slot, top) in ist.iter_mut().zip(ist_tops) {
        *slot = VirtAddr::new(top);
    }
    tss.interrupt_stack_table = ist;
    *gdt = x86_64::structures::gdt::GlobalDescriptorTable::empty();
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    // SAFETY: the TSS lives in a static per-CPU slot, so it outlives the GDT.
    let tss_sel = gdt.append(unsafe { Descriptor::tss_segment_unchecked(tss) });
    // SAFETY: the GDT is in a static per-CPU slot, so it stays valid while
    // loaded; interrupts are off (caller), so nothing reloads a segment
    // from it before the selectors below are set.
    unsafe { gdt.load_unsafe() };
    // SAFETY: `code` was just created in the loaded GDT as a 64-bit
    // kernel code segment.
    unsafe { CS::set_reg(code) };
    // SAFETY: `data` is a kernel data segment of the loaded GDT.
    unsafe { DS::set_reg(data) };
    // SAFETY: as for DS.
    unsafe { ES::set_reg(data) };
    // SAFETY: as for DS; a data segment at DPL 0 is what SS needs at CPL 0.
    unsafe { SS::set_reg(data) };
    // SAFETY: `tss_sel` selects the TSS descriptor just built in the loaded
    // GDT; a fresh descriptor is not busy, so LTR accepts it.
    unsafe { load_tss(tss_sel) };
}

/// IST1..IST3 of the TSS this CPU has loaded, found through TR and the GDT
/// rather than through the per-CPU slot, so it shows what the CPU will use.
#[cfg(feature = "ktest")]
pub fn loaded_ist_tops() -> [u64; 3] {
    let tr: u16;
    // SAFETY: STR only copies the task register's selector.
    unsafe { core::arch::asm!("str {0:x}", out(reg) tr, options(nomem, nostack, preserves_flags)) };
    let gdtr = x86_64::instructions::tables::sgdt();
    let desc = gdtr.base.as_u64() + (tr & !7) as u64;
    // SAFETY: LTR accepted `tr`, so it selects a 16-byte TSS descriptor
    // inside the loaded GDT; this is its first quadword.
    let low = unsafe { core::ptr::read_volatile(desc as *const u64) };
    // SAFETY: the descriptor's second quadword, as above.
    let high = unsafe { core::ptr::read_volatile((desc + 8) as *const u64) };
    // Base bits 23:0 in bytes 2-4, 31:24 in byte 7, 63:32 in the second
    // quadword (SDM Vol. 3A, 8.2.3, Figure 8-4).
    let base = ((low >> 16) & 0xff_ffff) | (((low >> 56) & 0xff) << 24) | ((high & 0xffff_ffff) << 32);
    // IST1 is at offset 0x24 of the 64-bit TSS (SDM Vol. 3A, Figure 8-11).
    // SAFETY: the descriptor's base is the loaded TSS, at least 0x68 bytes.
    core::array::from_fn(|i| unsafe { core::ptr::read_unaligned((base + 0x24 + 8 * i as u64) as *const u64) })
}
