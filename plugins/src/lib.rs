//! The modvisor plugin SDK, shared by the loader, the host runner and every
//! plugin.
//!
//! A plugin is a position-independent ELF shared object that exports one
//! symbol, [`DESCRIPTOR_SYMBOL`] (a [`Descriptor`]), carries its metadata in
//! an ELF note ([`meta`]) that the loader reads without running plugin code,
//! and is signed ([`sig`]). The ABI between plugins and the loader is
//! declared once, in [`ffi`]. Everything that crosses between a plugin and
//! the loader or another plugin is `#[repr(C)]`: strings as [`StrRef`],
//! interfaces as tables of `extern "C"` functions ([`Interface`]) reached
//! through a [`Handle`] that the loader re-points when the provider is
//! swapped.
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

pub mod abi;
pub mod acpihp;
pub mod ffi;
mod interface;
pub mod manifest;
pub mod meta;
#[cfg(feature = "plugin")]
pub mod runtime;
pub mod sig;
pub mod upload;

pub use ffi::*;
pub use interface::Interface;

/// The hash of every item of the ABI ([`ffi::ITEMS`]: the boundary types'
/// layouts, the function types and the exports' signatures); plugin and
/// loader must agree on it.
pub const ABI_FINGERPRINT: u64 = abi::fingerprint(&ITEMS);

/// The C status of an entry point's result: 0, or the error code (an error
/// of 0 becomes -1, so that it still reads as a failure).
pub fn status(r: Result<(), i32>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(0) => -1,
        Err(e) => e,
    }
}

/// The one symbol a plugin exports.
pub const DESCRIPTOR_SYMBOL: &str = "MODVISOR_PLUGIN";

/// Declares a plugin: its descriptor, its metadata note and the `extern "C"`
/// wrappers around the entry points. See the crate docs for an example.
///
/// - optionally `needs: [VMX, ...]`: CPU features ([`meta::cpu`]) the
///   plugin cannot run without; the loader refuses it, unhashed, on a CPU
///   that lacks one;
/// - `init: fn() -> Result<(), i32>`; `fini: fn()`;
/// - optionally `retire: fn()`, run on the version a swap replaced once the
///   swap committed ([`Descriptor::retire`]): it frees what this version
///   allocated and did not hand over;
/// - `provides: [(Table, &TABLE), (Other as "2.0.0", &OTHER), ...]`, where
///   `Table` is an [`Interface`] and `TABLE` a `static` of it; the
///   interface's name and table size come from the type, its version too
///   unless `as` names another (for builds that offer the same table
///   under other versions);
/// - `requires: [(Table, "^1.0"), ...]` (semver ranges); the plugin then
///   reaches it with `plugins::runtime::Required::<Table>::get()`;
/// - `state: None` or `Some((layout_version, export, import))` with
///   `export: fn(&mut [u8]) -> Result<usize, i32>` and
///   `import: fn(u32, &[u8]) -> Result<(), i32>`.
#[macro_export]
macro_rules! plugin {
    (
        name: $name:literal, version: $version:literal,
        $(needs: [$($need:ident),* $(,)?],)?
        init: $init:expr, fini: $fini:expr,
        $(retire: $retire:expr,)?
        provides: [$(($pty:ty $(as $pver:literal)?, $ptable:expr)),* $(,)?],
        requires: [$(($rty:ty, $rrange:literal)),* $(,)?],
        state: $state:expr $(,)?
    ) => {
        $crate::plugin!(@note $name, $version,
            [$($crate::meta::LinkSpec::of::<$pty>($crate::plugin!(@version $pty $(as $pver)?))),*],
            [$($crate::meta::LinkSpec::of::<$rty>($rrange)),*],
            0 $($(| $crate::meta::cpu::$need)*)?);
        $crate::plugin!(@body $init, $fini, [$(($pty, $ptable)),*], $state, $crate::plugin!(@retire $($retire)?));
    };
    (@retire) => { None };
    (@retire $retire:expr) => {{
        unsafe extern "C" fn __mv_retire() {
            let f: fn() = $retire;
            f()
        }
        Some(__mv_retire as unsafe extern "C" fn())
    }};
    (@version $t:ty) => { <$t as $crate::Interface>::VERSION };
    (@version $t:ty as $v:literal) => { $v };
    (@note $name:literal, $version:literal, [$($p:expr),*], [$($r:expr),*], $needs:expr) => {
        const _: () = {
            const __MV_TEXT: $crate::meta::NoteText = $crate::meta::NoteText {
                name: $name, version: $version, provides: &[$($p),*], requires: &[$($r),*], needs: $needs,
            };
            #[used]
            #[link_section = ".note.modvisor"]
            static __MV_NOTE: $crate::meta::Note<{ $crate::meta::padded(__MV_TEXT.written_len()) }> =
                $crate::meta::Note::new($crate::ABI_FINGERPRINT, &$crate::ITEMS, &__MV_TEXT);
        };
    };
    (@body $init:expr, $fini:expr, [$(($pty:ty, $ptable:expr)),*], $state:expr, $retire:expr) => {
        const _: () = {
            unsafe extern "C" fn __mv_init() -> i32 {
                let f: fn() -> Result<(), i32> = $init;
                $crate::status(f())
            }
            unsafe extern "C" fn __mv_fini() {
                let f: fn() = $fini;
                f()
            }
            static __MV_PROVIDES: &[$crate::Provided] = &[$($crate::Provided::of::<$pty>($ptable)),*];
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
                $crate::status(import(version, buf))
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
                retire: $retire,
            };
        };
    };
}
