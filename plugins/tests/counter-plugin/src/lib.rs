//! `counter`: a counter behind the `counter` interface. Version 1 keeps a
//! u32 and steps by 1; version 2 keeps a u64 plus a swap count and steps
//! by 2, so a test sees which version answers and that the state crossed.
//! Version 3 steps by 3 and refuses version 1's state layout (the "import
//! refuses the state" test); 3.0.0 is also outside the range consumer 1.0.0
//! accepts (the "swap would break a consumer" test) but inside consumer
//! 2.0.0's (the two swapped in one transaction).
//!
//! Built without a version feature the crate is only the [`Counter`] type,
//! which plugins that require `counter` use as an rlib dependency.
#![no_std]

// Links the SDK's panic handler and allocator even when no version feature
// uses it: cargo also builds the staticlib when this crate is only a
// dependency, and a staticlib without a panic handler does not compile.
extern crate plugins;

/// The `counter` interface table, the same in every version.
#[repr(C)]
pub struct Counter {
    /// Advances the counter and returns the new value.
    pub next: extern "C" fn() -> u64,
    /// The version of the code answering (1, 2 or 3).
    pub generation: extern "C" fn() -> u32,
}

#[cfg(any(feature = "v1", feature = "v2", feature = "v3"))]
mod plugin;
