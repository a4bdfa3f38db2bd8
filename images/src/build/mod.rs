//! Building images: the recipe table (`recipes`), the loader and every
//! image's pieces (`builder`), the plugin variants (`plugin_build`), their
//! signatures (`signing`), the deliberately broken store files
//! (`plugin_elf`), the test guests (`guest_build`), the Hermit apps
//! (`hermit_build`, with the kernel's archive step in `hermit_archive` and
//! uhyve's ELF checks in `hermit_elf`) and the stripped loader and guests
//! (`strip`).

pub mod builder;
pub mod guest_build;
pub mod hermit_archive;
pub mod hermit_build;
pub mod hermit_elf;
pub mod plugin_build;
pub mod plugin_elf;
pub mod recipes;
mod shared;
pub mod signing;
pub mod strip;

use std::io;

/// Why a build stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or process operation failed; `context` says which.
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    /// An external tool (cargo, rust-lld, grub-mkrescue) ran and failed.
    #[error("`{command}` failed: {detail}")]
    Tool { command: String, detail: String },
    /// A recipe or a plugin is inconsistent (caught before anything boots).
    #[error("bad image recipe: {0}")]
    Recipe(String),
    /// A name that is not in the recipe table.
    #[error("unknown image `{name}`; known images: {known}")]
    UnknownImage { name: String, known: String },
    /// The host's tools or the tree's key are unusable.
    #[error("{0}")]
    Environment(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
