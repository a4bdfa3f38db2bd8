//! The interrupt descriptor table, shared by all CPUs, and the Rust side of
//! every trap: probe fixups, the exception report, NMIs and device/IPI
//! interrupt handlers.

use crate::cpu::gdt::{IST_DOUBLE_FAULT, IST_MACHINE_CHECK, IST_NMI};
use crate::cpu::percpu::{self, Fault};
use core::sync::atomic::{AtomicUsize, Ordering};
use loader_core::power::exit::Status;

core::arch::global_asm!(include_str!("trap.S"), options(att_syntax));

/// Registers as pushed by `trap.S` and the CPU, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}
const _: () = assert!(core::mem::size_of::<Gate>() == 16);

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static mut IDT: Idt =
    Idt([Gate { offset_low: 0, selector: 0, ist: 0, attributes: 0, offset_mid: 0, offset_high: 0, reserved: 0 }; 256]);

extern "C" {
    static trap_stub_table: [u64; 256];
}

/// Vectors 32..=255: device interrupts and IPIs, set by their owners.
pub type Handler = fn(&mut TrapFrame);
static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];

/// First vector free for devices and IPIs.
pub const FIRST_INTERRUPT: u8 = 32;
pub const SPURIOUS: u8 = 0xff;

/// Fills the IDT (once, on the boot CPU, before any CPU loads it).
pub fn init() {
    let idt = &raw mut IDT;
    // SAFETY: runs once on the boot CPU before any IDT is loaded, so this
    // is the only reference to the table.
    let idt = unsafe { &mut *idt };
    for (v, gate) in idt.0.iter_mut().enumerate() {
        // SAFETY: the table has 256 entries built by trap.S.
        let addr = unsafe { trap_stub_table[v] };
        let ist = match v {
            2 => IST_NMI,
            8 => IST_DOUBLE_FAULT,
            18 => IST_MACHINE_CHECK,
            _ => 0,
        };
        *gate = Gate {
            offset_low: addr as u16,
            selector: 0x08,
            ist,
            attributes: 0x8e, // present, DPL 0, 64-bit interrupt gate
            offset_mid: (addr >> 16) as u16,
            offset_high: (addr >> 32) as u32,
            reserved: 0,
        };
    }
}

/// Loads the shared IDT on this CPU.
pub fn load() {
    let ptr = x86_64::structures::DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: x86_64::VirtAddr::from_ptr(core::ptr::addr_of!(IDT)),
    };
    // SAFETY: the IDT is static, filled by `init`, and its gates point at
    // the stubs with the kernel code selector every CPU's GDT has.
    unsafe { x86_64::instructions::tables::lidt(&ptr) };
}

/// Installs `handler` for `vector`; fails if the vector is taken or is an
/// exception vector.
pub fn set_handler(vector: u8, handler: Handler) -> Result<(), u8> {
    if vector < FIRST_INTERRUPT {
        return Err(vector);
    }
    HANDLERS[vector as usize]
        .compare_exchange(0, handler as usize, Ordering::AcqRel, Ordering::Acquire)
        .map(|_| ())
        .map_err(|_| vector)
}

/// Gives `vector` back. Its source must already be silenced: an interrupt
/// still on its way finds no handler (and is only logged).
#[cfg(feature = "ktest")]
pub fn clear_handler(vector: u8) {
    HANDLERS[vector as usize].store(0, Ordering::Release);
}

/// The IST slot of `vector`'s gate in the IDT this CPU has loaded (IDTR),
/// i.e. what the CPU will use, not what `init` meant to write.
#[cfg(feature = "ktest")]
pub fn loaded_gate_ist(vector: u8) -> Option<u8> {
    let idtr = x86_64::instructions::tables::sidt();
    let offset = vector as u64 * core::mem::size_of::<Gate>() as u64;
    if offset + core::mem::size_of::<Gate>() as u64 - 1 > idtr.limit as u64 {
        return None;
    }
    // SAFETY: IDTR names a loaded table and the gate lies within its limit;
    // the IST field is bits 2:0 of the gate's fifth byte (SDM Vol. 3A, 6.14.1).
    let byte = unsafe { core::ptr::read_volatile((idtr.base.as_u64() + offset + 4) as *const u8) };
    Some(byte & 7)
}

/// Hook for NMIs (the SMP layer uses NMIs to stop CPUs and for tests).
static NMI_HOOK: AtomicUsize = AtomicUsize::new(0);

pub fn set_nmi_hook(hook: Handler) {
    NMI_HOOK.store(hook as usize, Ordering::Release);
}

#[no_mangle]
extern "C" fn trap_dispatch(f: &mut TrapFrame) {
    match f.vector as u8 {
        2 => match NMI_HOOK.load(Ordering::Acquire) {
            0 => unexpected(f),
            h => call(h, f),
        },
        v if v < FIRST_INTERRUPT => exception(f),
        SPURIOUS => {}
        v => {
            match HANDLERS[v as usize].load(Ordering::Acquire) {
                0 => log::warn!("interrupt on vector {v:#x} that nobody handles"),
                h => call(h, f),
            }
            crate::interrupts::apic::eoi();
        }
    }
}

/// Calls a handler stored as `usize` in `HANDLERS` or `NMI_HOOK`.
fn call(h: usize, f: &mut TrapFrame) {
    // SAFETY: only `Handler` values are ever stored in those tables.
    let h = unsafe { core::mem::transmute::<usize, Handler>(h) };
    h(f)
}

fn exception(f: &mut TrapFrame) {
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    if let Some(resume) = super::probe::fixup(f.rip) {
        super::probe::record(Fault { vector: f.vector as u8, error_code: f.error_code, cr2, rip: f.rip });
        f.rip = resume;
        return;
    }
    unexpected(f)
}

/// Reports an exception nobody expected, with everything needed to find
/// the cause, and ends the run with the exception status.
fn unexpected(f: &TrapFrame) -> ! {
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    crate::console::enter_panic();
    let v = f.vector as u8;
    crate::println!(
        "unexpected exception on cpu {}: {} ({}), vector {v}, error code {:#x}",
        percpu::current_id(),
        name(v),
        mnemonic(v),
        f.error_code
    );
    crate::println!("  rip {:#018x}  cs {:#x}  rflags {:#x}", f.rip, f.cs, f.rflags);
    crate::println!("  rsp {:#018x}  ss {:#x}  cr2 {:#018x}", f.rsp, f.ss, cr2);
    if v == 14 {
        let e = f.error_code;
        crate::println!(
            "  page fault: {} {} in {} mode{}",
            if e & 1 != 0 { "protection violation on" } else { "not-present page on" },
            if e & 16 != 0 {
                "instruction fetch"
            } else if e & 2 != 0 {
                "write"
            } else {
                "read"
            },
            if e & 4 != 0 { "user" } else { "kernel" },
            if e & 8 != 0 { ", reserved bit set" } else { "" }
        );
    }
    if crate::memory::is_guard_page(cr2) || crate::memory::is_guard_page(f.rsp) {
        crate::println!("  stack overflow: the access hit the guard page below a stack");
    }
    crate::println!("  rax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}", f.rax, f.rbx, f.rcx, f.rdx);
    crate::println!("  rsi {:#018x} rdi {:#018x} rbp {:#018x} r8  {:#018x}", f.rsi, f.rdi, f.rbp, f.r8);
    crate::println!("  r9  {:#018x} r10 {:#018x} r11 {:#018x} r12 {:#018x}", f.r9, f.r10, f.r11, f.r12);
    crate::println!("  r13 {:#018x} r14 {:#018x} r15 {:#018x}", f.r13, f.r14, f.r15);
    crate::power::exit(Status::Exception)
}

/// Short mnemonic of an exception vector (SDM Vol. 3A, Table 6-1).
pub fn mnemonic(v: u8) -> &'static str {
    const M: [&str; 32] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS", "#GP", "#PF", "-",
        "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "-", "-", "-", "-", "-", "-", "#HV", "#VC", "#SX", "-",
    ];
    M.get(v as usize).copied().unwrap_or("interrupt")
}

pub fn name(v: u8) -> &'static str {
    const N: [&str; 32] = [
        "divide error",
        "debug",
        "non-maskable interrupt",
        "breakpoint",
        "overflow",
        "bound range exceeded",
        "invalid opcode",
        "device not available",
        "double fault",
        "coprocessor segment overrun",
        "invalid TSS",
        "segment not present",
        "stack-segment fault",
        "general protection",
        "page fault",
        "reserved",
        "x87 floating-point error",
        "alignment check",
        "machine check",
        "SIMD floating-point",
        "virtualization",
        "control protection",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "hypervisor injection",
        "VMM communication",
        "security",
        "reserved",
    ];
    N.get(v as usize).copied().unwrap_or("interrupt")
}
