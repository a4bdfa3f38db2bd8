//! The plugin runtime's decisions: what a plugin file must be (signature,
//! ELF rules, metadata, load plan), which provider satisfies which
//! requirement, whose each plugin heap block is, and how upload frames are
//! reassembled from COM2's bytes.

pub mod elf;
pub mod heap;
pub mod resolve;
pub mod store;
pub mod upload;
