//! The plugin runtime's decisions: what a plugin file must be (signature,
//! ELF rules, metadata, load plan) and which provider satisfies which
//! requirement.

pub mod elf;
pub mod resolve;
