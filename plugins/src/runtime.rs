//! What every plugin gets from the SDK: the panic handler and the global
//! allocator (both forward to the loader), logging and printing, shell
//! commands, and typed access to required interfaces.

use crate::ffi::{self, Handle, StrRef};
use crate::Interface;
use core::fmt::{self, Write};
use core::marker::PhantomData;

/// A message formatted on the stack: plugins log without allocating.
pub struct Buf {
    bytes: [u8; 256],
    len: usize,
}

impl Buf {
    pub fn format(args: fmt::Arguments) -> Buf {
        let mut b = Buf { bytes: [0; 256], len: 0 };
        let _ = b.write_fmt(args);
        b
    }

    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are appended, cut at a character boundary.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl Write for Buf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut n = s.len().min(self.bytes.len() - self.len);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

pub fn log(level: u32, args: fmt::Arguments) {
    let b = Buf::format(args);
    // SAFETY: the loader copies the message before returning.
    unsafe { ffi::mv_log(level, StrRef::borrowed(b.as_str())) }
}

pub fn print(args: fmt::Arguments) {
    let b = Buf::format(args);
    // SAFETY: as in `log`.
    unsafe { ffi::mv_print(StrRef::borrowed(b.as_str())) }
}

#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::runtime::log($crate::level::INFO, format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::runtime::log($crate::level::WARN, format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::runtime::print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Registers a shell command owned by this plugin; `f` is the `extern "C"`
/// shim [`crate::register_command!`] makes.
pub fn register_command(name: &'static str, help: &'static str, f: ffi::CommandFn) -> Result<(), i32> {
    // SAFETY: the strings are 'static; the loader keeps the function only
    // while this plugin is loaded.
    match unsafe { ffi::mv_register_command(StrRef::new(name), StrRef::new(help), f) } {
        0 => Ok(()),
        e => Err(e),
    }
}

/// Registers the shell command `name` (with `help`) owned by this plugin:
/// `f: fn(&str) -> Result<(), i32>` gets the arguments, and its error code
/// is the command's status. Makes the `extern "C"` shim the loader calls.
#[macro_export]
macro_rules! register_command {
    ($name:expr, $help:expr, $f:expr $(,)?) => {{
        unsafe extern "C" fn __mv_command(args: $crate::StrRef) -> i32 {
            let f: fn(&str) -> Result<(), i32> = $f;
            // SAFETY: the loader passes the command's arguments as a live
            // `&str`.
            $crate::status(f(unsafe { args.as_str() }))
        }
        $crate::runtime::register_command($name, $help, __mv_command)
    }};
}

/// A required interface `T`. Every call is bracketed so that the loader
/// can swap the provider between calls, never during one.
pub struct Required<T: Interface> {
    handle: &'static Handle,
    _table: PhantomData<&'static T>,
}

impl<T: Interface> Required<T> {
    /// Interface `T` among this plugin's declared requirements.
    pub fn get() -> Option<Required<T>> {
        // SAFETY: a plain request to the loader; the name is 'static.
        let h = unsafe { ffi::mv_interface(StrRef::new(T::NAME)) };
        // SAFETY: the loader returns null or a handle valid until this
        // plugin unloads.
        let h = unsafe { h.as_ref() }?;
        Some(Required { handle: h, _table: PhantomData })
    }

    /// Calls into the provider through its current table.
    pub fn call<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        // SAFETY: a plain request to the loader.
        unsafe { ffi::mv_call_enter() };
        // SAFETY: the loader linked the handle to a provider of `T::NAME`
        // whose table is at least as large as `T` (the note's sizes), and
        // keeps it valid until `mv_call_exit`.
        let r = f(unsafe { &*(self.handle.table() as *const T) });
        // SAFETY: closes the bracket opened above.
        unsafe { ffi::mv_call_exit() };
        r
    }
}

/// The SDK's allocator. Every plugin image has its own, so its address
/// tells the loader whose allocation it is: the plugin whose code runs,
/// even when another plugin or the loader called into it. (Not zero-sized:
/// a zero-sized static need not have an address of its own.)
struct LoaderAlloc {
    _in_image: u8,
}

impl LoaderAlloc {
    fn me(&self) -> *const u8 {
        (self as *const LoaderAlloc).cast()
    }
}

/// An address inside the calling plugin's image, for the exports that
/// charge what they hand out to the plugin whose code asks
/// ([`ffi::mv_frames_alloc`]).
pub fn image_address() -> *const u8 {
    ALLOC.me()
}

// SAFETY: forwards to the loader's heap, which is a correct allocator.
unsafe impl core::alloc::GlobalAlloc for LoaderAlloc {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        // SAFETY: plain forwarding, with this image's allocator address.
        unsafe { ffi::mv_alloc(self.me(), layout.size(), layout.align()) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
        // SAFETY: plain forwarding of a pointer `alloc` returned.
        unsafe { ffi::mv_dealloc(ptr, layout.size(), layout.align()) }
    }
}

#[global_allocator]
static ALLOC: LoaderAlloc = LoaderAlloc { _in_image: 0 };

/// Takes over `ptr`, a heap block of the version this plugin replaces,
/// handed over in the swap state: call it from the state import for every
/// block kept by pointer. Without it the block stays the predecessor's and
/// is freed as its leak when the swap commits.
pub fn adopt(ptr: *mut u8) -> Result<(), i32> {
    // SAFETY: a plain request to the loader, which checks the block.
    match unsafe { ffi::mv_adopt(ALLOC.me(), ptr) } {
        0 => Ok(()),
        e => Err(e),
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let b = Buf::format(format_args!("{info}"));
    // SAFETY: the loader copies the message and never returns here.
    unsafe { ffi::mv_panic(StrRef::borrowed(b.as_str())) }
}
