//! The plugin runtime: images (ELF loading and linking), the store, the
//! registry (load, unload, swap), the loader's export table, containment of
//! plugin panics, each plugin's heap account, and the shell's plugin
//! commands.

pub mod commands;
pub mod exports;
pub mod frames;
pub mod guard;
pub mod guest_files;
pub mod heap;
pub mod image;
#[cfg(feature = "ktest")]
mod ktests;
pub mod registry;
pub mod store;
pub mod upload;
