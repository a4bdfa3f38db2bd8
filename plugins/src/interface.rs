//! Interfaces between plugins, typed: a table type names its interface and
//! version, so that a provider announces and a consumer asks for the type,
//! and the table's size goes into the metadata note with it.

use crate::ffi::{Provided, StrRef};
use core::ffi::c_void;

/// A `#[repr(C)]` table of `extern "C"` functions that one plugin
/// provides and others call, under the interface name [`Interface::NAME`].
///
/// The table may only grow, at its end, each addition taking a minor
/// version; the loader links a consumer only to a provider whose table is
/// at least as large as the type the consumer was built against.
///
/// # Safety
/// Every type that implements `Interface` with one `NAME` must agree on
/// the layout of the fields they share (a later version only appends):
/// consumers read the provider's table as their own type.
pub unsafe trait Interface: Sync + 'static {
    /// The interface's name in metadata notes (`provides=`, `requires=`).
    const NAME: &'static str;
    /// The version whose table this type is: what a provider announces
    /// unless it names another.
    const VERSION: &'static str;
}

impl Provided {
    /// The descriptor entry of `table`, which a plugin provides as `T`.
    pub const fn of<T: Interface>(table: &'static T) -> Provided {
        Provided { name: StrRef::new(T::NAME), table: table as *const T as *const c_void }
    }
}
