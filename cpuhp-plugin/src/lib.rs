//! `cpuhp`: the CPU lifecycle as an explicit, ordered, failure-safe state
//! machine that other plugins hook into (see [`machine`] for the rules and
//! the `cpuhp-api` crate for the interface). At load it brings every CPU enabled at boot
//! online; the shell command `cpu` drives it by hand.
//!
//! Built without a version feature the crate is the pure parts only,
//! tested on the host.
#![cfg_attr(target_os = "none", no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;
// Links the SDK's panic handler and allocator into the staticlib when a
// plugin build turns them on (see counter-plugin).
extern crate plugins;

pub mod blob;
pub mod events;
pub mod lock;
pub mod machine;
pub mod physical;

#[cfg(test)]
mod tests;

#[cfg(any(feature = "v1", feature = "v2"))]
mod plugin;
