//! Containment of plugin panics. Every plugin entry point the loader calls
//! (init, state export/import, shell commands) runs inside a guarded call:
//! the callee-saved registers and stack pointer are saved first, and the
//! SDK's panic handler (through `mv_panic`) jumps back there, so the
//! operation fails with the panic message instead of taking the system down.
//! Nothing the plugin held on its stack is dropped; the caller marks the
//! plugin failed and releases what the loader holds for it.

use alloc::string::String;
use core::sync::atomic::{AtomicPtr, Ordering};
use loader_core::acpi::madt::MAX_CPUS;

core::arch::global_asm!(
    r#"
.section .text.guard, "ax"
.global mv_guarded_call
mv_guarded_call:                /* (f, ctx, rsp_slot) -> 0 returned, 1 unwound */
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    sub $8, %rsp                /* keep the call below 16-byte aligned */
    mov %rsp, (%rdx)
    mov %rdi, %rax
    mov %rsi, %rdi
    call *%rax
    xor %eax, %eax
1:  add $8, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret

.global mv_guard_unwind
mv_guard_unwind:                /* (saved rsp): back into mv_guarded_call */
    mov %rdi, %rsp
    mov $1, %eax
    jmp 1b
"#,
    options(att_syntax)
);

extern "C" {
    fn mv_guarded_call(f: extern "C" fn(*mut u8), ctx: *mut u8, rsp_slot: *mut u64) -> u64;
    fn mv_guard_unwind(rsp: u64) -> !;
}

/// One guarded call in progress on a CPU; they nest (a plugin command may
/// load another plugin).
pub struct Frame {
    rsp: u64,
    prev: *mut Frame,
    /// Who is running: exports such as `mv_interface` act for this plugin.
    pub plugin: u64,
    /// Valid for as long as the plugin is registered (the registry owns it).
    pub plugin_name: *const str,
    unstoppable_depth: u32,
    interrupts: bool,
    panic: Option<String>,
}

static CURRENT: [AtomicPtr<Frame>; MAX_CPUS] = [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];

fn slot() -> &'static AtomicPtr<Frame> {
    &CURRENT[crate::cpu::percpu::current_id() as usize]
}

/// The innermost guarded call on this CPU.
pub fn current() -> Option<&'static Frame> {
    // SAFETY: frames live on the stack of the guarded call that installed
    // them and are removed before it returns.
    unsafe { slot().load(Ordering::Acquire).as_ref() }
}

/// Runs `f` (which calls into `plugin`) so that a panic in the plugin
/// returns `Err(message)` here.
pub fn call<F: FnOnce() -> R, R>(plugin: u64, plugin_name: &str, f: F) -> Result<R, String> {
    let mut ctx: (Option<F>, Option<R>) = (Some(f), None);
    let mut frame = Frame {
        rsp: 0,
        prev: slot().load(Ordering::Acquire),
        plugin,
        plugin_name: plugin_name as *const str,
        unstoppable_depth: crate::smp::unstoppable_depth(),
        interrupts: x86_64::instructions::interrupts::are_enabled(),
        panic: None,
    };
    slot().store(&mut frame, Ordering::Release);
    // SAFETY: `trampoline::<F, R>` matches the ctx type; the frame stays in
    // place (and registered) until the call returned or unwound.
    let unwound = unsafe { mv_guarded_call(trampoline::<F, R>, &mut ctx as *mut _ as *mut u8, &mut frame.rsp) };
    slot().store(frame.prev, Ordering::Release);
    if unwound == 0 {
        return Ok(ctx.1.expect("the trampoline stores the result before returning"));
    }
    // The plugin left in the middle: undo what it cannot undo itself.
    crate::smp::set_unstoppable_depth(frame.unstoppable_depth);
    if frame.interrupts {
        x86_64::instructions::interrupts::enable();
    }
    Err(frame.panic.take().unwrap_or_default())
}

extern "C" fn trampoline<F: FnOnce() -> R, R>(ctx: *mut u8) {
    // SAFETY: `call` passes its `(Option<F>, Option<R>)` here.
    let (f, out) = unsafe { &mut *(ctx as *mut (Option<F>, Option<R>)) };
    if let Some(f) = f.take() {
        *out = Some(f());
    }
}

/// The panic path of plugin code: back to the innermost guarded call.
/// A plugin panicking outside any (e.g. called through an interface by
/// loader code) is a loader panic.
pub fn unwind(message: &str) -> ! {
    let frame = slot().load(Ordering::Acquire);
    // SAFETY: see `current`.
    let Some(frame) = (unsafe { frame.as_mut() }) else {
        panic!("plugin code panicked outside a guarded call: {message}");
    };
    frame.panic = Some(message.into());
    // SAFETY: `frame.rsp` was saved by `mv_guarded_call`, whose stack frame
    // is still live below us (we are called from inside it).
    unsafe { mv_guard_unwind(frame.rsp) }
}
