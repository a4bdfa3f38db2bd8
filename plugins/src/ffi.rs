//! The plugin ABI, declared once: the `#[repr(C)]` types that cross the
//! plugin boundary, the function pointer types, and the functions the
//! loader exports to plugins. The macros of [`crate::abi`] make of these
//! declarations the types, the plugins' imports, the loader's [`Exports`]
//! table, [`LOADER_EXPORTS`] and the [`ITEMS`] the ABI fingerprint is
//! made of: change one here and both sides, and the fingerprint, follow.

use crate::abi::{self, Item};
use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, Ordering};

abi::boundary_types! {
    const TYPE_ITEMS;

    /// A UTF-8 string passed by pointer and length.
    #[derive(Clone, Copy, Debug)]
    pub struct StrRef {
        pub ptr: *const u8,
        pub len: usize,
    }

    /// A `'static` slice passed by pointer and length.
    pub struct Slice<T: 'static> {
        pub ptr: *const T,
        pub len: usize,
    }

    /// One interface a plugin provides: its name (the version is in the
    /// metadata note) and its function table.
    pub struct Provided {
        pub name: StrRef,
        pub table: *const c_void,
    }

    /// What a plugin exports as [`crate::DESCRIPTOR_SYMBOL`].
    pub struct Descriptor {
        pub magic: [u8; 8],
        pub abi: u64,
        /// 0 on success, else an error code of the plugin's.
        pub init: unsafe extern "C" fn() -> i32,
        pub fini: unsafe extern "C" fn(),
        pub provides: Slice<Provided>,
        /// Layout version of the state blob (0: the plugin keeps no state).
        pub state_version: u32,
        /// Writes the state into `buf` (capacity `cap`); returns its length,
        /// or a negative error.
        pub export_state: Option<unsafe extern "C" fn(buf: *mut u8, cap: usize) -> isize>,
        /// Takes over state written by a version whose layout is `version`;
        /// 0 on success, else an error (e.g. a layout it does not know).
        pub import_state: Option<unsafe extern "C" fn(version: u32, buf: *const u8, len: usize) -> i32>,
        /// Runs once a swap that replaced this version committed, before
        /// its image goes: the successor runs and owns what the state
        /// handed over (and what it adopted, [`mv_adopt`]). Free this
        /// version's own heap; touch no hardware and call no other plugin
        /// (the loader drops this version's registrations itself). What is
        /// still allocated afterwards is reported as a leak and freed.
        pub retire: Option<unsafe extern "C" fn()>,
    }

    /// The loader's side of one resolved requirement: the provider's table,
    /// re-pointed by the loader while the world is stopped for a swap.
    pub struct Handle {
        pub table: AtomicPtr<c_void>,
    }

    /// The hooks a plugin registers with [`mv_system_register`] to take part in
    /// taking the machine down. Both may be absent.
    #[derive(Clone, Copy)]
    pub struct SystemHooks {
        /// An orderly reboot or power-off begins: runs in thread context on
        /// the CPU that shuts down, with every CPU still running, and gets the
        /// new [`system_state`]. Turn things off here.
        pub shutdown: Option<extern "C" fn(state: u32)>,
        /// Runs on every running CPU once the machine is going down for good
        /// (after `shutdown`, and on a panic without it), with interrupts off,
        /// possibly from an NMI that interrupted anything: it must not take
        /// locks, allocate or log. Returns 1 if it turned something off, 0 if
        /// nothing was on, or a negative error of the plugin's.
        pub emergency: Option<extern "C" fn() -> i32>,
    }

    /// What [`mv_cpu_info`] says about one possible CPU (a MADT entry; the
    /// index is the logical CPU number and stays the same across hotplug).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct CpuInfo {
        pub apic_id: u32,
        /// [`cpu_class::BOOT`] or [`cpu_class::HOT_PLUGGABLE`].
        pub class: u32,
        /// 1 when the loader runs the CPU (started and not parked).
        pub online: u32,
    }

    /// How a CPU lifecycle policy (cpuhp) sees one CPU, for the shell's `cpus`:
    /// two NUL-padded words of graphic ASCII, so that every row stays one
    /// line of fields.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct CpuLifecycle {
        /// The lifecycle state: `online`, `offline`, `absent`, ...
        pub state: [u8; LIFECYCLE_WORD],
        /// Where the CPU came from: `boot`, `hot-added`, or `-` for a slot
        /// that never held one.
        pub origin: [u8; LIFECYCLE_WORD],
    }
}

abi::fn_types! {
    const FN_TYPE_ITEMS;

    /// A shell command a plugin registers: gets its arguments, returns 0 on
    /// success or an error code. Plugins write an ordinary function and let
    /// [`crate::register_command!`] make this shim of it.
    pub type CommandFn = unsafe extern "C" fn(args: StrRef) -> i32;

    /// A CPU describer (see [`mv_cpu_describer`]): fills `*out` for logical
    /// CPU `cpu`; 0, or an error code of the plugin's.
    pub type CpuDescribeFn = extern "C" fn(cpu: u32, out: *mut CpuLifecycle) -> i32;

    /// A function [`mv_run_on`] runs on another CPU; its return value comes
    /// back through `result`.
    pub type RemoteFn = extern "C" fn(arg: usize) -> i32;

    /// A CPU's idle work (see [`mv_idle_register`]): runs on `cpu` with
    /// interrupts off; returns 1 if it did some (it is called again once
    /// pending interrupts were taken), 0 if it has nothing to run (the CPU
    /// then halts until an interrupt).
    pub type IdleFn = extern "C" fn(cpu: u32) -> i32;
}

abi::exports! {
    const EXPORT_ITEMS;

    /// Logs `msg` at `level` under the calling plugin's name.
    pub fn mv_log(level: u32, msg: StrRef);
    /// Prints to the shell's console (command output).
    pub fn mv_print(msg: StrRef);
    /// Allocates `size` bytes aligned to `align` from the loader's heap,
    /// charged to the plugin whose image holds `caller` (the SDK's
    /// allocator passes its own address, so the block is the allocating
    /// code's plugin's, whoever entered it); null if refused.
    pub fn mv_alloc(caller: *const u8, size: usize, align: usize) -> *mut u8;
    /// Frees a block from [`mv_alloc`] with its layout; any plugin may free
    /// any plugin's block (it comes off its owner's account). A pointer
    /// that is no live block, or a layout that differs, is refused and
    /// logged, and nothing is freed.
    pub fn mv_dealloc(ptr: *mut u8, size: usize, align: usize);
    /// The plugin whose image holds `caller` takes over block `ptr` of the
    /// version it replaces, while a swap is in progress (its state import
    /// is where a pointer handed over arrives): the block is then on its
    /// account, and goes back if the swap is called off. 0, or -1 if the
    /// block is neither the caller's nor its predecessor's (logged).
    pub fn mv_adopt(caller: *const u8, ptr: *mut u8) -> i32;
    /// Ends the current entry point with a panic: the loader fails the
    /// operation and marks the plugin failed. Never returns.
    pub fn mv_panic(msg: StrRef) -> !;
    /// The handle of the interface `name` among the caller's resolved
    /// requirements (null if it declared no such requirement). Valid until
    /// the caller unloads.
    pub fn mv_interface(name: StrRef) -> *const Handle;
    /// Bracket every call through a [`Handle`]: the loader swaps a provider
    /// only while no CPU is between the two.
    pub fn mv_call_enter();
    pub fn mv_call_exit();
    /// Registers a shell command owned by the calling plugin (removed when
    /// it unloads); 0 on success.
    pub fn mv_register_command(name: StrRef, help: StrRef, f: CommandFn) -> i32;
    /// Runs `f(ctx)` in thread context (from the shell's idle loop) each
    /// time GPE0 bit `gpe` fires, and enables that GPE; the loader clears
    /// its status bit in the SCI handler. One handler per GPE; removed when
    /// the caller unloads or is swapped out (the new version registers
    /// again in its init). 0 on success, -1 if taken or not in GPE0.
    /// CPU hotplug: `gpe` = [`crate::acpihp::GPE_BIT`].
    pub fn mv_gpe_register(gpe: u32, f: extern "C" fn(usize), ctx: usize) -> i32;
    /// Disables `gpe` and drops the caller's handler; 0 on success.
    pub fn mv_gpe_unregister(gpe: u32) -> i32;
    /// Queues `f(ctx)` to run once in thread context (the shell's idle
    /// loop); 0 on success, -1 if the queue (64 items) is full. Dropped if
    /// the caller unloads first.
    pub fn mv_defer(f: extern "C" fn(usize), ctx: usize) -> i32;
    /// The I/O base of QEMU's CPU hotplug register block as the DSDT
    /// declares it (0x0cd8 on q35, 0xaf00 on pc), or -1 if there is none.
    /// Drive it with [`crate::acpihp::CpuHotplug`] over
    /// [`crate::acpihp::HwPorts`].
    pub fn mv_acpi_cpu_hotplug_base() -> i32;
    /// How many possible CPUs the MADT lists (logical CPUs 0..count).
    pub fn mv_cpu_count() -> u32;
    /// Fills `*info` for logical CPU `cpu`; 0 or a [`cpu_error`] code.
    pub fn mv_cpu_info(cpu: u32, info: *mut CpuInfo) -> i32;
    /// Starts `cpu` and waits until it runs, idle with interrupts on: a
    /// parked CPU is woken in its park loop, any other (or one that does not
    /// answer the wake) started with INIT-SIPI-SIPI; 0 or a [`cpu_error`]
    /// code.
    pub fn mv_cpu_start(cpu: u32) -> i32;
    /// Parks a running `cpu`: its timer stopped, halted in a park loop (only
    /// the wake and NMIs reach it) until the next start.
    pub fn mv_cpu_park(cpu: u32) -> i32;
    /// Runs `f(arg)` on running `cpu` (inline when it is the caller's) and
    /// waits; `*result` gets its return value. [`run_on::IRQS_OFF`] in
    /// `flags` runs it with interrupts off. 0 or a [`cpu_error`] code (then
    /// `*result` is untouched). Panics in `f` are contained. The call is
    /// bracketed on the target CPU so that no swap frees `f` under it.
    pub fn mv_run_on(cpu: u32, f: RemoteFn, arg: usize, flags: u32, result: *mut i32) -> i32;
    /// The logical number of the CPU running the caller.
    pub fn mv_current_cpu() -> u32;
    /// The physical address `addr` maps to (for structures the CPU reads
    /// by physical address, such as a VMXON region), or `u64::MAX` if
    /// nothing is mapped there.
    pub fn mv_virt_to_phys(addr: *const u8) -> u64;
    /// The [`system_state`] now.
    pub fn mv_system_state() -> u32;
    /// Registers the caller's [`SystemHooks`] (one set per plugin; copied;
    /// dropped when the caller unloads or is swapped out, so a new version
    /// registers again in its init). 0, -1 if the caller has a set already,
    /// -2 if every slot is taken. A shutdown that begins after this returns
    /// calls the hooks; check [`mv_system_state`] afterwards to catch one
    /// that began before.
    pub fn mv_system_register(hooks: *const SystemHooks) -> i32;
    /// Drops the caller's hooks; 0, or -1 if it had none.
    pub fn mv_system_unregister() -> i32;
    /// 1 while the caller is the new version of a swap (from its init to
    /// its state import): its predecessor still runs, and what the
    /// predecessor set up comes with the state.
    pub fn mv_swapping_in() -> u32;
    /// Registers the caller's exception table: `pairs` pairs of addresses
    /// (an instruction that may fault, where to resume when it does) at
    /// `start`, all inside the caller's image. A fault at a listed
    /// instruction resumes at its pair instead of ending the run, as the
    /// loader's own probes do. One table per plugin, dropped when it
    /// unloads. 0, or -1 if refused (logged).
    pub fn mv_exception_table(start: *const u64, pairs: usize) -> i32;
    /// Makes the shell's `cpus` print each CPU's lifecycle state and origin
    /// as `f` describes them (it is asked once per CPU, in thread context,
    /// and must not block) instead of the loader's own view. One plugin at
    /// a time describes CPUs; the description goes when the caller unloads,
    /// and a version swapped in registers again in its init (it takes over
    /// when the swap commits). 0, or -1 if another plugin describes CPUs.
    pub fn mv_cpu_describer(f: CpuDescribeFn) -> i32;
    /// How many of the CPUs enabled at boot, the boot CPU included, a CPU
    /// lifecycle policy brings online when it loads: `maxcpus=` of the
    /// kernel command line (at least 1), `u32::MAX` without it. The others
    /// stay offline until asked for, as with Linux's `maxcpus=`.
    pub fn mv_boot_cpu_limit() -> u32;
    /// `count` contiguous physical frames (4 KiB), the first aligned to
    /// `align_pages` frames, charged to the plugin whose image holds
    /// `caller` (as [`mv_alloc`]; the SDK's [`crate::runtime::image_address`]).
    /// Its leftovers are reported and freed when it ends. Their physical
    /// address (identity-mapped read-write, contents undefined), or 0 if
    /// refused.
    pub fn mv_frames_alloc(caller: *const u8, count: u64, align_pages: u64) -> u64;
    /// Frees a block from [`mv_frames_alloc`], whole, held by the plugin
    /// whose image holds `caller`; 0, or -1 if `addr` and `count` name no
    /// block it holds (nothing is freed).
    pub fn mv_frames_free(caller: *const u8, addr: u64, count: u64) -> i32;
    /// The bytes of the initrd file at `path` (e.g. `guests/hello.elf`):
    /// its address, with its length in `*len`; null if there is none.
    pub fn mv_initrd_file(path: StrRef, len: *mut usize) -> *const u8;
    /// The bytes of the guest file uploaded over COM2 as `name`: its
    /// address, with its length in `*len`; null if there is none. They
    /// stay for good.
    pub fn mv_uploaded_file(name: StrRef, len: *mut usize) -> *const u8;
    /// Makes `f` the idle work of every online CPU (one plugin at a time;
    /// dropped when the caller ends, and a version swapped in registers
    /// again). 0, or -1 if another plugin has idle work.
    pub fn mv_idle_register(f: IdleFn) -> i32;
    /// Drops the caller's idle work; 0, or -1 if it had none.
    pub fn mv_idle_unregister() -> i32;
    /// Interrupts `cpu` with a vector that does nothing but end what it
    /// was doing: a guest's run (VM exit) or a halt. 0 or a [`cpu_error`].
    pub fn mv_kick(cpu: u32) -> i32;
    /// The TSC's rate in kHz, as the loader measured or read it at boot.
    pub fn mv_tsc_khz() -> u64;
}

/// How many items the ABI has.
pub const ITEM_COUNT: usize = TYPE_ITEMS.len() + FN_TYPE_ITEMS.len() + EXPORT_ITEMS.len();

/// Every item of the ABI, in declaration order: what
/// [`crate::ABI_FINGERPRINT`] hashes and metadata notes list.
pub const ITEMS: [Item; ITEM_COUNT] = abi::concat(&[TYPE_ITEMS, FN_TYPE_ITEMS, EXPORT_ITEMS]);

impl StrRef {
    pub const fn new(s: &'static str) -> StrRef {
        StrRef { ptr: s.as_ptr(), len: s.len() }
    }

    pub fn borrowed(s: &str) -> StrRef {
        StrRef { ptr: s.as_ptr(), len: s.len() }
    }

    /// # Safety
    /// `ptr`/`len` must describe valid UTF-8 that lives for `'a`.
    pub unsafe fn as_str<'a>(self) -> &'a str {
        // SAFETY: forwarded from the caller: `len` bytes live at `ptr`.
        let bytes = unsafe { core::slice::from_raw_parts(self.ptr, self.len) };
        // SAFETY: forwarded from the caller: the bytes are UTF-8.
        unsafe { core::str::from_utf8_unchecked(bytes) }
    }
}

impl<T> Slice<T> {
    pub const fn new(s: &'static [T]) -> Slice<T> {
        Slice { ptr: s.as_ptr(), len: s.len() }
    }

    /// # Safety
    /// `ptr`/`len` must describe a live slice for `'a`.
    pub unsafe fn as_slice<'a>(&self) -> &'a [T] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: forwarded from the caller.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }
}

// SAFETY: descriptors and tables are immutable statics in the plugin image.
unsafe impl Sync for Provided {}

pub const DESCRIPTOR_MAGIC: [u8; 8] = *b"MVPLUGIN";

// SAFETY: a descriptor is an immutable static.
unsafe impl Sync for Descriptor {}

impl Handle {
    pub const fn new(table: *mut c_void) -> Handle {
        Handle { table: AtomicPtr::new(table) }
    }

    pub fn table(&self) -> *const c_void {
        self.table.load(Ordering::Acquire)
    }
}

/// Log levels of [`mv_log`], as in the `log` crate.
pub mod level {
    pub const ERROR: u32 = 1;
    pub const WARN: u32 = 2;
    pub const INFO: u32 = 3;
    pub const DEBUG: u32 = 4;
    pub const TRACE: u32 = 5;
}

/// What [`mv_system_state`] says, as Linux's `system_state`: a shutdown
/// never ends, so any value but [`system_state::RUNNING`] stays.
pub mod system_state {
    pub const RUNNING: u32 = 0;
    pub const POWER_OFF: u32 = 1;
    pub const RESTART: u32 = 2;
    /// A panic is taking the machine down.
    pub const PANIC: u32 = 3;
}

const _: () = assert!(core::mem::size_of::<CpuInfo>() == 12);

/// [`CpuInfo::class`] values: what the MADT said at boot.
pub mod cpu_class {
    /// Enabled at boot.
    pub const BOOT: u32 = 0;
    /// An online-capable slot: a CPU may be inserted at run time.
    pub const HOT_PLUGGABLE: u32 = 1;
}

/// Longest word of a [`CpuLifecycle`], in bytes.
pub const LIFECYCLE_WORD: usize = 16;

impl CpuLifecycle {
    /// Longer words are cut to [`LIFECYCLE_WORD`] bytes.
    pub fn new(state: &str, origin: &str) -> CpuLifecycle {
        CpuLifecycle { state: padded(state), origin: padded(origin) }
    }

    /// The state, or `?` if the field holds no word.
    pub fn state(&self) -> &str {
        word(&self.state)
    }

    /// The origin, or `?` if the field holds no word.
    pub fn origin(&self) -> &str {
        word(&self.origin)
    }
}

fn padded(w: &str) -> [u8; LIFECYCLE_WORD] {
    let mut b = [0; LIFECYCLE_WORD];
    let n = w.len().min(LIFECYCLE_WORD);
    b[..n].copy_from_slice(&w.as_bytes()[..n]);
    b
}

fn word(b: &[u8; LIFECYCLE_WORD]) -> &str {
    let w = &b[..b.iter().position(|&c| c == 0).unwrap_or(LIFECYCLE_WORD)];
    match core::str::from_utf8(w) {
        Ok(s) if !s.is_empty() && w.iter().all(u8::is_ascii_graphic) => s,
        _ => "?",
    }
}

/// Flags of [`mv_run_on`].
pub mod run_on {
    /// Run the function with interrupts disabled (IF clear) for its whole
    /// duration, as CPU hotplug's STARTING callbacks need; without it the
    /// function runs with interrupts enabled.
    pub const IRQS_OFF: u32 = 1;
}

/// Error codes of the CPU exports (all negative; 0 is success).
pub mod cpu_error {
    /// No such logical CPU in the MADT.
    pub const NO_SUCH_CPU: i32 = -1;
    /// The CPU is the one making the call (it cannot start or park itself).
    pub const IS_CALLER: i32 = -2;
    /// Start: the CPU already runs. Park or run-on: it does not run.
    pub const WRONG_STATE: i32 = -3;
    /// The CPU did not come up in time (no CPU in that slot, or broken).
    pub const START_TIMEOUT: i32 = -4;
    /// The CPU did not finish the call or the park in time.
    pub const CALL_TIMEOUT: i32 = -5;
    /// No memory for the CPU's stacks.
    pub const NO_MEMORY: i32 = -6;
    /// The local APIC refused the IPI.
    pub const APIC: i32 = -7;
    /// The function panicked on the target CPU (the panic was contained).
    pub const PANICKED: i32 = -8;
    /// Unknown bits in `flags`.
    pub const BAD_FLAGS: i32 = -9;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_words_are_padded_cut_and_checked() {
        let l = CpuLifecycle::new("online", "hot-added");
        assert_eq!((l.state(), l.origin()), ("online", "hot-added"));
        assert_eq!(l.state[6..], [0; LIFECYCLE_WORD - 6]);
        assert_eq!(CpuLifecycle::new("a-very-long-state-word", "-").state(), "a-very-long-stat");
        // Nothing, a space or a control character is no word.
        for bad in ["", "two words", "line\n"] {
            assert_eq!(CpuLifecycle::new(bad, bad).state(), "?", "{bad:?}");
        }
        let mut l = CpuLifecycle::default();
        l.origin[0] = 0xc3;
        assert_eq!(l.origin(), "?");
    }
}
