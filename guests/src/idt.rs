//! The guests' IDT: one table for every vCPU, 256 interrupt gates into
//! 16-byte entry stubs that make every frame the same shape, and a Rust
//! dispatcher that calls the handler set for the vector.
//!
//! Without a handler: the spurious vector is ignored; a #UD or #GP that
//! [`catch`] armed for skips its two-byte instruction; anything else is
//! reported and ends the VM with [`status::UNEXPECTED_TRAP`].

use core::cell::UnsafeCell;
use core::hint::spin_loop;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::{console, cpu, status, x2apic};

pub const UD: u8 = 6;
pub const GP: u8 = 13;

// One stub per vector, 16 bytes apart from `guest_isr_stubs`. The CPU
// pushes an error code for #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP, #VC and
// #SX (SDM Vol. 3A, 6.13); the other stubs push a zero in its place. The
// common part saves the registers the SysV ABI lets `guest_trap` clobber;
// the callee-saved ones it keeps itself. RSP is 16-byte aligned at the
// `call`: the CPU aligns it before pushing its 5 words, and 2 + 9 more
// make 16.
core::arch::global_asm!(
    r#"
    .section .text.guest_isr, "ax"
    .balign 16
    .global guest_isr_stubs
guest_isr_stubs:
    .set vector, 0
    .rept 256
    .balign 16
    .if !((vector == 8) || ((vector >= 10) && (vector <= 14)) || (vector == 17) || (vector == 21) || (vector == 29) || (vector == 30))
    pushq $0
    .endif
    pushq $vector
    jmp guest_isr_common
    .set vector, vector + 1
    .endr

guest_isr_common:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    mov %rsp, %rdi
    cld
    call guest_trap
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    add $16, %rsp
    iretq
"#,
    options(att_syntax)
);

/// Distance between two stubs.
const STUB_SIZE: u64 = 16;

extern "C" {
    static guest_isr_stubs: u8;
}

/// What a handler sees, lowest address first: the registers the stub
/// saved, the vector and error code, and the CPU's frame. A handler may
/// change `rip` (and the saved registers) to resume elsewhere.
#[repr(C)]
#[derive(Debug)]
pub struct Frame {
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}
const _: () = assert!(core::mem::size_of::<Frame>() == 16 * 8);

/// An interrupt-gate descriptor (SDM Vol. 3A, 6.14.1).
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    kind: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}
const _: () = assert!(core::mem::size_of::<Gate>() == 16);

impl Gate {
    const EMPTY: Gate =
        Gate { offset_low: 0, selector: 0, ist: 0, kind: 0, offset_mid: 0, offset_high: 0, reserved: 0 };

    /// Present, DPL 0, 64-bit interrupt gate (IF cleared on entry).
    fn interrupt(handler: u64) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: crate::abi::CODE_SELECTOR,
            ist: 0,
            kind: 0x8e,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Table(UnsafeCell<[Gate; 256]>);

// SAFETY: the table is written once, by the vCPU that wins `FILLING`,
// before `READY` lets any vCPU load or read it.
unsafe impl Sync for Table {}

static IDT: Table = Table(UnsafeCell::new([Gate::EMPTY; 256]));
static FILLING: AtomicBool = AtomicBool::new(false);
static READY: AtomicBool = AtomicBool::new(false);

/// A handler for one vector. Interrupt handlers send their own EOI.
pub type Handler = fn(&mut Frame);
static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];

/// Fills the table on the first call and loads it on this vCPU; every vCPU
/// that wants exceptions or interrupts calls it.
pub fn install() {
    if !FILLING.swap(true, Ordering::AcqRel) {
        let stubs = &raw const guest_isr_stubs as u64;
        let table = IDT.0.get();
        for v in 0..256u64 {
            let gate = Gate::interrupt(stubs + v * STUB_SIZE);
            // SAFETY: only the vCPU that set `FILLING` writes, and nobody
            // reads before `READY`.
            unsafe { (*table)[v as usize] = gate };
        }
        READY.store(true, Ordering::Release);
    }
    while !READY.load(Ordering::Acquire) {
        spin_loop();
    }
    let limit = (core::mem::size_of::<[Gate; 256]>() - 1) as u16;
    // SAFETY: the table is complete, static and never written again.
    unsafe { cpu::lidt(IDT.0.get() as u64, limit) };
}

/// Sets the handler of `vector` for every vCPU.
pub fn set_handler(vector: u8, handler: Handler) {
    HANDLERS[usize::from(vector)].store(handler as usize, Ordering::Release);
}

/// The instructions [`catch`] may skip, by their bytes: a handler resumes
/// after one only when the bytes at RIP are one of these.
const SKIPPABLE: [(&[u8], &str); 4] =
    [(&[0x0f, 0x32], "rdmsr"), (&[0x0f, 0x30], "wrmsr"), (&[0x0f, 0x0b], "ud2"), (&[0x0f, 0x01, 0xd1], "xsetbv")];

/// The instruction `bytes` start with, if [`catch`] may skip it, and its
/// length.
pub fn skippable(bytes: [u8; 3]) -> Option<(&'static str, usize)> {
    position(bytes).map(|i| (SKIPPABLE[i].1, SKIPPABLE[i].0.len()))
}

fn position(bytes: [u8; 3]) -> Option<usize> {
    SKIPPABLE.iter().position(|(b, _)| bytes.starts_with(b))
}

/// A fault that [`catch`] caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caught {
    pub vector: u8,
    pub error_code: u64,
    pub rip: u64,
    pub instruction: &'static str,
}

/// Which vector `catch` waits for (`NOT_ARMED`: none).
static ARMED: AtomicU32 = AtomicU32::new(NOT_ARMED);
const NOT_ARMED: u32 = u32::MAX;
static CAUGHT_ERROR: AtomicU64 = AtomicU64::new(0);
static CAUGHT_RIP: AtomicU64 = AtomicU64::new(0);
/// Index into `SKIPPABLE` + 1; 0: nothing caught.
static CAUGHT_WHAT: AtomicU8 = AtomicU8::new(0);

/// Runs `f`, which executes one instruction of `SKIPPABLE` that may raise
/// `vector` (#UD or #GP, not handled otherwise); returns the fault if it
/// did, after which `f` went on right behind the instruction. One vCPU at
/// a time.
pub fn catch(vector: u8, f: impl FnOnce()) -> Option<Caught> {
    CAUGHT_WHAT.store(0, Ordering::SeqCst);
    ARMED.store(u32::from(vector), Ordering::SeqCst);
    f();
    ARMED.store(NOT_ARMED, Ordering::SeqCst);
    let what = CAUGHT_WHAT.load(Ordering::SeqCst);
    (what != 0).then(|| Caught {
        vector,
        error_code: CAUGHT_ERROR.load(Ordering::SeqCst),
        rip: CAUGHT_RIP.load(Ordering::SeqCst),
        instruction: SKIPPABLE[usize::from(what) - 1].1,
    })
}

/// The stubs' target.
#[no_mangle]
extern "C" fn guest_trap(frame: &mut Frame) {
    let vector = frame.vector as u8;
    let raw = HANDLERS[usize::from(vector)].load(Ordering::Acquire);
    if raw != 0 {
        // SAFETY: `set_handler` stores nothing but `Handler`s.
        let handler = unsafe { core::mem::transmute::<usize, Handler>(raw) };
        handler(frame);
    } else if vector == x2apic::SPURIOUS_VECTOR {
        // A spurious interrupt takes no EOI (SDM Vol. 3A, 11.9).
    } else if (vector == UD || vector == GP) && ARMED.load(Ordering::SeqCst) == u32::from(vector) && skip(frame) {
        ARMED.store(NOT_ARMED, Ordering::SeqCst);
    } else {
        let name = match vector {
            0 => "#DE",
            3 => "#BP",
            6 => "#UD",
            8 => "#DF",
            13 => "#GP",
            14 => "#PF",
            32.. => "an interrupt",
            _ => "exception",
        };
        console::print_fatal(format_args!(
            "guest: unexpected {name} (vector {vector:#x}) at rip {:#x}, error code {:#x}, rsp {:#x}",
            frame.rip, frame.error_code, frame.rsp
        ));
        crate::exit(status::UNEXPECTED_TRAP);
    }
}

/// Skips the armed instruction at `frame.rip`, recording it; false when
/// the bytes there are not one `catch` may skip.
fn skip(frame: &mut Frame) -> bool {
    // SAFETY: RIP is where the CPU just fetched the faulting instruction
    // from, and every instruction `catch` takes is at least 2 bytes long;
    // the third is read only when the first two are those of a 3-byte one.
    let first = unsafe { core::ptr::read_volatile(frame.rip as *const [u8; 2]) };
    let third = match first {
        // SAFETY: as above: a 0F 01 instruction has a third byte.
        [0x0f, 0x01] => unsafe { core::ptr::read_volatile((frame.rip + 2) as *const u8) },
        _ => 0,
    };
    let bytes = [first[0], first[1], third];
    let Some(index) = position(bytes) else { return false };
    CAUGHT_ERROR.store(frame.error_code, Ordering::SeqCst);
    CAUGHT_RIP.store(frame.rip, Ordering::SeqCst);
    CAUGHT_WHAT.store(index as u8 + 1, Ordering::SeqCst);
    frame.rip += SKIPPABLE[index].0.len() as u64;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_split_the_address() {
        let g = Gate::interrupt(0x1234_5678_9abc_def0);
        assert_eq!((g.offset_low, g.offset_mid, g.offset_high), (0xdef0, 0x9abc, 0x1234_5678));
        assert_eq!((g.selector, g.kind, g.ist), (0x08, 0x8e, 0));
    }

    #[test]
    fn only_known_instructions_are_skipped_by_their_length() {
        assert_eq!(skippable([0x0f, 0x32, 0x90]), Some(("rdmsr", 2)));
        assert_eq!(skippable([0x0f, 0x30, 0x90]), Some(("wrmsr", 2)));
        assert_eq!(skippable([0x0f, 0x0b, 0x90]), Some(("ud2", 2)));
        assert_eq!(skippable([0x0f, 0x01, 0xd1]), Some(("xsetbv", 3)));
        assert_eq!(skippable([0x0f, 0x01, 0xd0]), None, "xgetbv is not");
        assert_eq!(skippable([0x0f, 0xa2, 0x90]), None, "cpuid is not");
    }
}
