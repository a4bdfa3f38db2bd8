//! The loader's export table: the only symbols a plugin may import
//! (`plugins::ffi` declares them; the compiler checks each function here
//! against its declaration through [`EXPORTS`]). Calls arrive from plugin
//! code; the innermost guarded call says which plugin is calling.

use super::guard;
use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use plugins::{
    cpu_class, cpu_error, run_on, CommandFn, CpuDescribeFn, CpuInfo, Exports, Handle, IdleFn, RemoteFn, StrRef,
    SystemHooks,
};
use spin::Mutex;

/// The implementation of every export.
static EXPORTS: Exports = Exports {
    mv_log,
    mv_print,
    mv_alloc,
    mv_dealloc,
    mv_adopt,
    mv_panic,
    mv_interface,
    mv_call_enter,
    mv_call_exit,
    mv_register_command,
    mv_gpe_register,
    mv_gpe_unregister,
    mv_defer,
    mv_acpi_cpu_hotplug_base,
    mv_cpu_count,
    mv_cpu_info,
    mv_cpu_start,
    mv_cpu_park,
    mv_run_on,
    mv_current_cpu,
    mv_virt_to_phys,
    mv_system_state,
    mv_system_register,
    mv_system_unregister,
    mv_swapping_in,
    mv_exception_table,
    mv_cpu_describer,
    mv_boot_cpu_limit,
    mv_frames_alloc,
    mv_frames_free,
    mv_initrd_file,
    mv_uploaded_file,
    mv_idle_register,
    mv_idle_unregister,
    mv_kick,
    mv_tsc_khz,
};

/// The address of export `name`, for the ELF linker.
pub fn resolve(name: &str) -> Option<u64> {
    EXPORTS.address(name)
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

/// The block goes on the account of the plugin whose image holds
/// `caller` (see `loader_core::plugin::heap` for why not the guarded
/// call's plugin).
extern "C" fn mv_alloc(caller: *const u8, size: usize, align: usize) -> *mut u8 {
    super::heap::alloc(caller as u64, size as u64, align as u64).unwrap_or_else(|e| {
        log::warn!(target: caller_name(), "mv_alloc: {e}");
        core::ptr::null_mut()
    })
}

/// The ledger checks the pointer and the layout before anything is freed,
/// so a double free or a stray pointer is refused instead of corrupting
/// the heap.
unsafe extern "C" fn mv_dealloc(ptr: *mut u8, size: usize, align: usize) {
    if let Err(e) = super::heap::dealloc(ptr as u64, size as u64, align as u64) {
        log::warn!(target: caller_name(), "mv_dealloc: {e}");
    }
}

extern "C" fn mv_adopt(caller: *const u8, ptr: *mut u8) -> i32 {
    match super::heap::adopt(caller as u64, ptr as u64) {
        Ok(()) => 0,
        Err(e) => {
            log::warn!(target: caller_name(), "mv_adopt: {e}");
            -1
        }
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
    let name = unsafe { text(name) };
    // SAFETY: as for `name`.
    let help = unsafe { text(help) };
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

extern "C" fn mv_cpu_describer(f: CpuDescribeFn) -> i32 {
    let Some(owner) = caller() else { return -1 };
    crate::smp::enter_unstoppable();
    let r = super::registry::set_cpu_describer(owner, f);
    crate::smp::exit_unstoppable();
    match r {
        Ok(()) => 0,
        Err(e) => {
            log::warn!(target: caller_name(), "mv_cpu_describer: {e}");
            -1
        }
    }
}

/// The caller's plugin id, or `None` outside a guarded call (a plugin
/// calling from a context the loader did not enter, e.g. an interrupt).
fn caller() -> Option<u64> {
    guard::current().map(|f| f.plugin)
}

fn status(what: &str, r: Result<(), crate::acpi::sci::Error>) -> i32 {
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
    status("mv_gpe_register", crate::acpi::sci::register(owner, gpe, crate::acpi::sci::Call { f, ctx }))
}

extern "C" fn mv_gpe_unregister(gpe: u32) -> i32 {
    let Some(owner) = caller() else { return -1 };
    status("mv_gpe_unregister", crate::acpi::sci::unregister(owner, gpe))
}

extern "C" fn mv_defer(f: extern "C" fn(usize), ctx: usize) -> i32 {
    let Some(owner) = caller() else { return -1 };
    match crate::acpi::sci::defer(owner, crate::acpi::sci::Call { f, ctx }) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

extern "C" fn mv_acpi_cpu_hotplug_base() -> i32 {
    crate::acpi::get().and_then(|a| a.cpu_hotplug).map_or(-1, i32::from)
}

/// The SMP mechanism's errors as the plugin-facing codes.
fn cpu_code(e: crate::smp::Error) -> i32 {
    use crate::smp::Error as E;
    match e {
        E::NoSuchCpu(_) => cpu_error::NO_SUCH_CPU,
        E::IsBootCpu(_) => cpu_error::IS_CALLER,
        E::WrongState { .. } => cpu_error::WRONG_STATE,
        E::StartTimeout(_) => cpu_error::START_TIMEOUT,
        E::CallTimeout(_) => cpu_error::CALL_TIMEOUT,
        E::Memory => cpu_error::NO_MEMORY,
        E::Apic => cpu_error::APIC,
    }
}

fn cpu_status(r: Result<(), crate::smp::Error>) -> i32 {
    r.map_or_else(cpu_code, |()| 0)
}

extern "C" fn mv_cpu_count() -> u32 {
    crate::acpi::get().map_or(1, |a| a.cpus.len() as u32)
}

unsafe extern "C" fn mv_cpu_info(cpu: u32, info: *mut CpuInfo) -> i32 {
    let Some(entry) = crate::acpi::get().and_then(|a| a.cpus.iter().nth(cpu as usize)) else {
        return cpu_error::NO_SUCH_CPU;
    };
    let class = match entry.class {
        loader_core::acpi::madt::CpuClass::Boot => cpu_class::BOOT,
        loader_core::acpi::madt::CpuClass::HotPluggable => cpu_class::HOT_PLUGGABLE,
    };
    let online = (crate::smp::state(cpu as usize) == crate::smp::State::Online) as u32;
    // SAFETY: the SDK passes a pointer to a live `CpuInfo`; `write` does
    // not read the old value.
    unsafe { info.write(CpuInfo { apic_id: entry.apic_id, class, online }) };
    0
}

extern "C" fn mv_cpu_start(cpu: u32) -> i32 {
    cpu_status(crate::smp::start(cpu as usize))
}

extern "C" fn mv_cpu_park(cpu: u32) -> i32 {
    cpu_status(crate::smp::park(cpu as usize))
}

extern "C" fn mv_current_cpu() -> u32 {
    crate::cpu::percpu::current_id()
}

extern "C" fn mv_virt_to_phys(addr: *const u8) -> u64 {
    match crate::memory::translate(addr as u64) {
        Ok(Some(leaf)) => leaf.phys + (addr as u64 - leaf.virt),
        _ => u64::MAX,
    }
}

extern "C" fn mv_system_state() -> u32 {
    crate::power::system::state()
}

unsafe extern "C" fn mv_system_register(hooks: *const SystemHooks) -> i32 {
    let Some(owner) = caller() else { return -1 };
    // SAFETY: the SDK passes a pointer to a live `SystemHooks`; it is
    // copied here.
    let hooks = unsafe { hooks.read() };
    // A stopped CPU must not hold the hooks' lock.
    crate::smp::enter_unstoppable();
    let r = crate::power::system::register(owner, caller_name(), hooks);
    crate::smp::exit_unstoppable();
    match r {
        Ok(()) => 0,
        Err(e) => {
            log::warn!(target: caller_name(), "mv_system_register: {e}");
            if e == crate::power::system::Error::AlreadyRegistered {
                -1
            } else {
                -2
            }
        }
    }
}

extern "C" fn mv_exception_table(start: *const u64, pairs: usize) -> i32 {
    let Some(owner) = caller() else { return -1 };
    // The registry's and the tables' locks must not be held by a CPU the
    // world stops.
    crate::smp::enter_unstoppable();
    let r = super::registry::image_range(owner)
        .ok_or(loader_core::interrupts::extable::TableError::Outside)
        .and_then(|image| crate::interrupts::probe::register_plugin_table(owner, start as u64, pairs as u64, image));
    crate::smp::exit_unstoppable();
    match r {
        Ok(()) => 0,
        Err(e) => {
            log::warn!(target: caller_name(), "mv_exception_table: {e}");
            -1
        }
    }
}

extern "C" fn mv_swapping_in() -> u32 {
    caller().is_some_and(super::registry::is_swapping_in) as u32
}

extern "C" fn mv_system_unregister() -> i32 {
    let Some(owner) = caller() else { return -1 };
    crate::smp::enter_unstoppable();
    let r = crate::power::system::unregister(owner);
    crate::smp::exit_unstoppable();
    r.map_or(-1, |()| 0)
}

extern "C" fn mv_boot_cpu_limit() -> u32 {
    crate::boot_info().1.max_cpus.unwrap_or(u32::MAX)
}

/// The request of the `mv_run_on` in progress. In a static, not on the
/// caller's stack: a CPU answering after a timeout still finds valid memory
/// (it may run a stale request; its result is then ignored by sequence).
struct Remote {
    seq: u64,
    f: RemoteFn,
    arg: usize,
    irqs_off: bool,
    /// The caller's guarded-call frame, so that the callee runs as the
    /// same plugin (panic containment, log target).
    plugin: u64,
    plugin_name: *const str,
}

// SAFETY: `plugin_name` points into the registry, which keeps it while the
// plugin is registered; the plugin cannot unload while it waits here.
unsafe impl Send for Remote {}

/// One `mv_run_on` at a time owns `REMOTE` and the results.
static REMOTE_LOCK: Mutex<()> = Mutex::new(());
static REMOTE: Mutex<Option<Remote>> = Mutex::new(None);
static REMOTE_SEQ: AtomicU64 = AtomicU64::new(0);
/// Sequence number of the request whose result is in `REMOTE_RESULT`.
static REMOTE_DONE: AtomicU64 = AtomicU64::new(0);
/// The function's return value, or `cpu_error::PANICKED`.
static REMOTE_RESULT: AtomicI32 = AtomicI32::new(0);

/// Runs on the target CPU (from the call IPI, or inline on the caller).
fn remote_entry(_cpu: usize, _: usize) {
    let Some((seq, f, arg, irqs_off, plugin, name)) =
        REMOTE.lock().as_ref().map(|r| (r.seq, r.f, r.arg, r.irqs_off, r.plugin, r.plugin_name))
    else {
        return;
    };
    // The world may not stop while plugin code runs here: a swap would free
    // it under us (the same bracket as `mv_call_enter`).
    crate::smp::enter_unstoppable();
    // SAFETY: see `Remote`: the name outlives the wait of the caller.
    let name = unsafe { &*name };
    let run = || guard::call(plugin, name, || f(arg)).unwrap_or(cpu_error::PANICKED);
    // The call IPI handler runs functions with interrupts on; STARTING
    // callbacks need them off for their whole duration.
    let result = if irqs_off { x86_64::instructions::interrupts::without_interrupts(run) } else { run() };
    crate::smp::exit_unstoppable();
    REMOTE_RESULT.store(result, Ordering::Relaxed);
    REMOTE_DONE.store(seq, Ordering::Release);
}

unsafe extern "C" fn mv_run_on(cpu: u32, f: RemoteFn, arg: usize, flags: u32, result: *mut i32) -> i32 {
    if flags & !run_on::IRQS_OFF != 0 {
        return cpu_error::BAD_FLAGS;
    }
    let cpu = cpu as usize;
    if crate::acpi::get().is_none_or(|a| cpu >= a.cpus.len()) {
        return cpu_error::NO_SUCH_CPU;
    }
    // `smp::run_on` skips CPUs that are not running; say so instead.
    if crate::smp::state(cpu) != crate::smp::State::Online {
        return cpu_error::WRONG_STATE;
    }
    let (plugin, plugin_name) = guard::current().map_or((0, "plugin" as *const str), |fr| (fr.plugin, fr.plugin_name));
    let _one = REMOTE_LOCK.lock();
    let seq = REMOTE_SEQ.fetch_add(1, Ordering::Relaxed) + 1;
    *REMOTE.lock() = Some(Remote { seq, f, arg, irqs_off: flags & run_on::IRQS_OFF != 0, plugin, plugin_name });
    let r = crate::smp::run_on(1 << cpu, remote_entry, 0);
    *REMOTE.lock() = None;
    if let Err(e) = r {
        return cpu_code(e);
    }
    if REMOTE_DONE.load(Ordering::Acquire) != seq {
        // The CPU went away between the check and the call.
        return cpu_error::WRONG_STATE;
    }
    // SAFETY: the SDK passes a pointer to a live i32.
    unsafe { result.write(REMOTE_RESULT.load(Ordering::Relaxed)) };
    0
}

extern "C" fn mv_frames_alloc(caller: *const u8, count: u64, align_pages: u64) -> u64 {
    super::frames::alloc(super::heap::owner_of(caller as u64), count, align_pages).unwrap_or_else(|e| {
        log::warn!(target: caller_name(), "mv_frames_alloc({count}): {e}");
        0
    })
}

extern "C" fn mv_frames_free(caller: *const u8, addr: u64, count: u64) -> i32 {
    match super::frames::free(super::heap::owner_of(caller as u64), addr, count) {
        Ok(()) => 0,
        Err(e) => {
            log::warn!(target: caller_name(), "mv_frames_free: {e}");
            -1
        }
    }
}

unsafe extern "C" fn mv_initrd_file(path: StrRef, len: *mut usize) -> *const u8 {
    // SAFETY: the SDK passes a `&str`.
    let path = unsafe { text(path) };
    let Some(file) = crate::boot::initrd_file(path) else { return core::ptr::null() };
    // SAFETY: the SDK passes a pointer to a live usize.
    unsafe { len.write(file.len()) };
    file.as_ptr()
}

unsafe extern "C" fn mv_uploaded_file(name: StrRef, len: *mut usize) -> *const u8 {
    // SAFETY: the SDK passes a `&str`.
    let name = unsafe { text(name) };
    let Some(file) = super::guest_files::get(name) else { return core::ptr::null() };
    // SAFETY: the SDK passes a pointer to a live usize.
    unsafe { len.write(file.len()) };
    file.as_ptr()
}

extern "C" fn mv_idle_register(f: IdleFn) -> i32 {
    let Some(owner) = caller() else { return -1 };
    match super::registry::idle::set(owner, f) {
        Ok(()) => 0,
        Err(e) => {
            log::warn!(target: caller_name(), "mv_idle_register: {e}");
            -1
        }
    }
}

extern "C" fn mv_idle_unregister() -> i32 {
    match caller() {
        Some(owner) if super::registry::idle::clear(owner) => 0,
        _ => -1,
    }
}

extern "C" fn mv_kick(cpu: u32) -> i32 {
    match crate::smp::kick(cpu as usize) {
        Ok(()) => 0,
        Err(e) => cpu_code(e),
    }
}

extern "C" fn mv_tsc_khz() -> u64 {
    crate::time::tsc_hz() / 1000
}
