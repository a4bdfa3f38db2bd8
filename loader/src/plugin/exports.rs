//! The loader's export table: the only symbols a plugin may import
//! (`plugins::LOADER_EXPORTS` names them). Calls arrive from plugin code;
//! the innermost guarded call says which plugin is calling.

use super::guard;
use alloc::alloc::Layout;
use plugins::{CommandFn, Handle, StrRef};

/// The address of export `name`, for the ELF linker.
pub fn resolve(name: &str) -> Option<u64> {
    let addr = match name {
        "mv_log" => mv_log as unsafe extern "C" fn(u32, StrRef) as usize,
        "mv_print" => mv_print as unsafe extern "C" fn(StrRef) as usize,
        "mv_alloc" => mv_alloc as extern "C" fn(usize, usize) -> *mut u8 as usize,
        "mv_dealloc" => mv_dealloc as unsafe extern "C" fn(*mut u8, usize, usize) as usize,
        "mv_panic" => mv_panic as unsafe extern "C" fn(StrRef) -> ! as usize,
        "mv_interface" => mv_interface as unsafe extern "C" fn(StrRef) -> *const Handle as usize,
        "mv_call_enter" => mv_call_enter as extern "C" fn() as usize,
        "mv_call_exit" => mv_call_exit as extern "C" fn() as usize,
        "mv_register_command" => {
            mv_register_command as unsafe extern "C" fn(StrRef, StrRef, CommandFn) -> i32 as usize
        }
        "mv_gpe_register" => mv_gpe_register as extern "C" fn(u32, extern "C" fn(usize), usize) -> i32 as usize,
        "mv_gpe_unregister" => mv_gpe_unregister as extern "C" fn(u32) -> i32 as usize,
        "mv_defer" => mv_defer as extern "C" fn(extern "C" fn(usize), usize) -> i32 as usize,
        "mv_acpi_cpu_hotplug_base" => mv_acpi_cpu_hotplug_base as extern "C" fn() -> i32 as usize,
        _ => return None,
    };
    debug_assert!(plugins::LOADER_EXPORTS.contains(&name));
    Some(addr as u64)
}

/// The calling plugin's name, for log targets.
fn caller_name() -> &'static str {
    // SAFETY: the registry keeps the name alive while the plugin runs.
    guard::current().map_or("plugin", |f| unsafe { &*f.plugin_name })
}

/// # Safety
/// `s` must be valid UTF-8 for the duration of the call (the SDK passes
/// `&str`s); the bytes are checked anyway, a plugin may be buggy.
unsafe fn text<'a>(s: StrRef) -> &'a str {
    if s.ptr.is_null() {
        return "";
    }
    // SAFETY: per the caller, `s` describes live memory.
    let bytes = unsafe { core::slice::from_raw_parts(s.ptr, s.len) };
    core::str::from_utf8(bytes).unwrap_or("<not UTF-8>")
}

unsafe extern "C" fn mv_log(level: u32, msg: StrRef) {
    let level = match level {
        plugins::level::ERROR => log::Level::Error,
        plugins::level::WARN => log::Level::Warn,
        plugins::level::DEBUG => log::Level::Debug,
        plugins::level::TRACE => log::Level::Trace,
        _ => log::Level::Info,
    };
    // SAFETY: the SDK passes a live string.
    let msg = unsafe { text(msg) };
    log::logger().log(&log::Record::builder().level(level).target(caller_name()).args(format_args!("{msg}")).build());
}

unsafe extern "C" fn mv_print(msg: StrRef) {
    // SAFETY: the SDK passes a live string.
    crate::console::write_fmt(format_args!("{}", unsafe { text(msg) }));
}

extern "C" fn mv_alloc(size: usize, align: usize) -> *mut u8 {
    match Layout::from_size_align(size, align) {
        // SAFETY: a zero size is refused by returning null instead.
        Ok(l) if l.size() > 0 => unsafe { alloc::alloc::alloc(l) },
        _ => core::ptr::null_mut(),
    }
}

unsafe extern "C" fn mv_dealloc(ptr: *mut u8, size: usize, align: usize) {
    if let Ok(l) = Layout::from_size_align(size, align) {
        // SAFETY: the SDK's allocator passes back what `mv_alloc` gave it,
        // with the same layout.
        unsafe { alloc::alloc::dealloc(ptr, l) }
    }
}

unsafe extern "C" fn mv_panic(msg: StrRef) -> ! {
    // SAFETY: the SDK's panic handler passes its formatted message.
    guard::unwind(unsafe { text(msg) })
}

unsafe extern "C" fn mv_interface(name: StrRef) -> *const Handle {
    let Some(frame) = guard::current() else { return core::ptr::null() };
    // The registry lock must not be held by a CPU the world stops.
    crate::smp::enter_unstoppable();
    // SAFETY: the SDK passes a live string.
    let h = super::registry::handle_for(frame.plugin, unsafe { text(name) });
    crate::smp::exit_unstoppable();
    h
}

extern "C" fn mv_call_enter() {
    crate::smp::enter_unstoppable();
}

extern "C" fn mv_call_exit() {
    crate::smp::exit_unstoppable();
}

unsafe extern "C" fn mv_register_command(name: StrRef, help: StrRef, f: CommandFn) -> i32 {
    let Some(frame) = guard::current() else { return -1 };
    // SAFETY: the SDK passes 'static strings.
    let (name, help) = unsafe { (text(name), text(help)) };
    crate::smp::enter_unstoppable();
    let added = super::registry::add_command(frame.plugin, name, help, f);
    crate::smp::exit_unstoppable();
    match added {
        Ok(()) => 0,
        Err(e) => {
            log::warn!(target: caller_name(), "cannot register command `{name}`: {e}");
            -1
        }
    }
}

/// The caller's plugin id, or `None` outside a guarded call (a plugin
/// calling from a context the loader did not enter, e.g. an interrupt).
fn caller() -> Option<u64> {
    guard::current().map(|f| f.plugin)
}

fn status(what: &str, r: Result<(), crate::sci::Error>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            log::warn!(target: caller_name(), "{what}: {e}");
            -1
        }
    }
}

extern "C" fn mv_gpe_register(gpe: u32, f: extern "C" fn(usize), ctx: usize) -> i32 {
    let Some(owner) = caller() else { return -1 };
    status("mv_gpe_register", crate::sci::register(owner, gpe, crate::sci::Call { f, ctx }))
}

extern "C" fn mv_gpe_unregister(gpe: u32) -> i32 {
    let Some(owner) = caller() else { return -1 };
    status("mv_gpe_unregister", crate::sci::unregister(owner, gpe))
}

extern "C" fn mv_defer(f: extern "C" fn(usize), ctx: usize) -> i32 {
    let Some(owner) = caller() else { return -1 };
    match crate::sci::defer(owner, crate::sci::Call { f, ctx }) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

extern "C" fn mv_acpi_cpu_hotplug_base() -> i32 {
    crate::acpi::get().and_then(|a| a.cpu_hotplug).map_or(-1, i32::from)
}
