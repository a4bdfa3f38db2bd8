//! The modvisor plugin SDK, shared by the loader, the host runner and every
//! plugin.
//!
//! A plugin is a position-independent ELF shared object that exports one
//! symbol, [`DESCRIPTOR_SYMBOL`] (a [`Descriptor`]), carries its metadata in
//! an ELF note ([`meta`]) that the loader reads without running plugin code,
//! and is signed ([`sig`]). Everything that crosses between a plugin and the
//! loader or another plugin is `#[repr(C)]`: strings as [`StrRef`],
//! interfaces as tables of `extern "C"` functions reached through a
//! [`Handle`] that the loader re-points when the provider is swapped.
//!
//! A minimal plugin:
//! ```ignore
//! #![no_std]
//! fn init() -> Result<(), i32> { plugins::info!("hello"); Ok(()) }
//! plugins::plugin! {
//!     name: "hello-plugin", version: "0.1.0",
//!     init: init, fini: || {},
//!     provides: [], requires: [], state: None,
//! }
//! ```
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(test)]
extern crate std;

pub mod acpihp;
pub mod ffi;
pub mod meta;
#[cfg(feature = "plugin")]
pub mod runtime;
pub mod sig;
pub mod upload;

pub use ffi::*;

/// Hash of the SDK version and the compiler (see build.rs); plugin and
/// loader must agree on it.
pub const ABI_FINGERPRINT: u64 = parse_hex(env!("MODVISOR_ABI"));

const fn parse_hex(s: &str) -> u64 {
    let b = s.as_bytes();
    let mut v = 0u64;
    let mut i = 0;
    while i < b.len() {
        let d = match b[i] {
            c @ b'0'..=b'9' => c - b'0',
            c @ b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("MODVISOR_ABI is not lower-case hex"),
        };
        v = (v << 4) | d as u64;
        i += 1;
    }
    v
}

/// The one symbol a plugin exports.
pub const DESCRIPTOR_SYMBOL: &str = "MODVISOR_PLUGIN";

/// Declares a plugin: its descriptor, its metadata note and the `extern "C"`
/// wrappers around the entry points. See the crate docs for an example.
///
/// - `init: fn() -> Result<(), i32>`; `fini: fn()`;
/// - `provides: [("iface", "1.2.0", &TABLE), ...]`, where `TABLE` is a
///   `static` `#[repr(C)]` table of `extern "C"` functions;
/// - `requires: [("iface", "^1.0"), ...]` (semver ranges);
/// - `state: None` or `Some((layout_version, export, import))` with
///   `export: fn(&mut [u8]) -> Result<usize, i32>` and
///   `import: fn(u32, &[u8]) -> Result<(), i32>`.
#[macro_export]
macro_rules! plugin {
    (
        name: $name:literal, version: $version:literal,
        init: $init:expr, fini: $fini:expr,
        provides: [$(($pname:literal, $pver:literal, $ptable:expr)),* $(,)?],
        requires: [$(($rname:literal, $rrange:literal)),* $(,)?],
        state: $state:expr $(,)?
    ) => {
        $crate::plugin!(@note
            concat!("name=", $name, "\nversion=", $version, "\n",
                $("provides=", $pname, " ", $pver, "\n",)*
                $("requires=", $rname, " ", $rrange, "\n",)*),
            $crate::ABI_FINGERPRINT);
        $crate::plugin!(@body $init, $fini, [$(($pname, $ptable)),*], $state);
    };
    (@note $text:expr, $abi:expr) => {
        const _: () = {
            const __MV_TEXT: &str = $text;
            #[used]
            #[link_section = ".note.modvisor"]
            static __MV_NOTE: $crate::meta::Note<{ $crate::meta::padded(__MV_TEXT.len()) }> = $crate::meta::Note::new($abi, __MV_TEXT);
        };
    };
    (@body $init:expr, $fini:expr, [$(($pname:literal, $ptable:expr)),*], $state:expr) => {
        const _: () = {
            unsafe extern "C" fn __mv_init() -> i32 {
                let f: fn() -> Result<(), i32> = $init;
                match f() { Ok(()) => 0, Err(e) if e != 0 => e, Err(_) => -1 }
            }
            unsafe extern "C" fn __mv_fini() {
                let f: fn() = $fini;
                f()
            }
            static __MV_PROVIDES: &[$crate::Provided] = &[
                $($crate::Provided {
                    name: $crate::StrRef::new($pname),
                    table: $ptable as *const _ as *const core::ffi::c_void,
                }),*
            ];
            const __MV_STATE: Option<(u32, fn(&mut [u8]) -> Result<usize, i32>, fn(u32, &[u8]) -> Result<(), i32>)> = $state;
            unsafe extern "C" fn __mv_export_state(buf: *mut u8, cap: usize) -> isize {
                let Some((_, export, _)) = __MV_STATE else { return -1 };
                // SAFETY: the loader passes a buffer of `cap` writable bytes.
                let buf = unsafe { core::slice::from_raw_parts_mut(buf, cap) };
                match export(buf) { Ok(n) if n <= cap => n as isize, Ok(_) => -1, Err(e) => -(e.unsigned_abs() as isize).max(1) }
            }
            unsafe extern "C" fn __mv_import_state(version: u32, buf: *const u8, len: usize) -> i32 {
                let Some((_, _, import)) = __MV_STATE else { return -1 };
                // SAFETY: the loader passes `len` readable bytes.
                let buf = unsafe { core::slice::from_raw_parts(buf, len) };
                match import(version, buf) { Ok(()) => 0, Err(e) if e != 0 => e, Err(_) => -1 }
            }
            #[no_mangle]
            #[used]
            pub static MODVISOR_PLUGIN: $crate::Descriptor = $crate::Descriptor {
                magic: $crate::DESCRIPTOR_MAGIC,
                abi: $crate::ABI_FINGERPRINT,
                init: __mv_init,
                fini: __mv_fini,
                provides: $crate::Slice::new(__MV_PROVIDES),
                state_version: match __MV_STATE { Some((v, _, _)) => v, None => 0 },
                export_state: if __MV_STATE.is_some() { Some(__mv_export_state) } else { None },
                import_state: if __MV_STATE.is_some() { Some(__mv_import_state) } else { None },
            };
        };
    };
}
