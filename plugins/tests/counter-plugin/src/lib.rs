//! `counter`: a counter behind the `counter` interface. Version 1 keeps a
//! u32 and steps by 1; version 2 keeps a u64 plus a swap count and steps
//! by 2, so a test sees which version answers and that the state crossed.
//! Version 3 steps by 3 and refuses version 1's state layout (the "import
//! refuses the state" test); 3.0.0 is also outside the range consumer 1.0.0
//! accepts (the "swap would break a consumer" test) but inside consumer
//! 2.0.0's (the two swapped in one transaction).
//!
//! Built without a version feature the crate is empty: `cargo build` and
//! `cargo test` at the workspace root build it for the host. The `Counter`
//! table is in the `counter-api` crate.
#![cfg_attr(target_os = "none", no_std)]

// Links the SDK's panic handler and allocator into the staticlib when a
// plugin build turns them on with a version feature, whatever else of the
// SDK the plugin uses.
extern crate plugins;

#[cfg(any(feature = "v1", feature = "v2", feature = "v3"))]
mod plugin;
