//! The plugin runtime: images (ELF loading and linking), the store, the
//! registry (load, unload, swap), the loader's export table, containment of
//! plugin panics, and the shell's plugin commands.

pub mod commands;
pub mod cpuhp_tests;
pub mod exports;
pub mod guard;
pub mod image;
pub mod registry;
pub mod store;
pub mod tests;
pub mod vmx_tests;
