//! The plugin runtime's decisions: what a plugin file must be (signature,
//! ELF rules, metadata, load plan), which provider satisfies which
//! requirement, and whose each plugin heap block is.

pub mod elf;
pub mod heap;
pub mod resolve;
