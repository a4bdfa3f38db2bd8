//! The initrd's plugin store, indexed once at boot: which plugin files it
//! holds, and how each is trusted.
//!
//! Trust comes from one signed manifest (`plugins::manifest`) when the
//! initrd has one signed with this tree's key: one ed25519 check at boot
//! covers every file it lists, and a listed file is then checked by its
//! BLAKE3 hash on its first load (a file whose bytes differ is refused, even
//! if its own signature would pass: the manifest is what the image was
//! built with). A file the manifest does not list, or every file when the
//! manifest is missing or not signed by this tree, is checked by its own
//! signature, as uploads are. A file passes its check once: the initrd's
//! bytes do not change after boot, so later loads skip it.
//!
//! The manifest also says which CPU features each plugin needs, so a
//! plugin that cannot run here (vmx-plugin without VMX) is refused before
//! its hash is spent; [`lacking`] is the same rule for the metadata of a
//! file trusted by its own signature.

use super::elf;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use plugins::manifest::{self, HASH_LEN};
use semver::Version;

/// Every way the store can refuse a file or its manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The manifest has no signature trailer.
    ManifestUnsigned,
    /// The manifest is not signed with this tree's key.
    ManifestSignature,
    /// The manifest's body is malformed.
    Manifest(manifest::Error),
    /// The manifest lists the same file twice.
    ManifestDuplicate(String),
    /// A listed file's bytes are not those the manifest was made from.
    HashMismatch { file: String },
    /// An unlisted file's own signature check failed.
    File(elf::Error),
    /// The plugin needs CPU features (`plugins::meta::cpu`) this CPU lacks.
    CpuLacks { plugin: String, missing: u32 },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ManifestUnsigned => write!(f, "the store manifest has no signature trailer; rebuild the image"),
            Error::ManifestSignature => write!(
                f,
                "the store manifest is not signed with this tree's key (built in another tree?); each plugin \
                 file is checked by its own signature instead"
            ),
            Error::Manifest(e) => write!(f, "store manifest: {e}"),
            Error::ManifestDuplicate(name) => write!(f, "the store manifest lists {name} twice; rebuild the image"),
            Error::HashMismatch { file } => write!(
                f,
                "{file} differs from the store manifest's hash of it (changed after the image was built); \
                 rebuild the image or upload the file"
            ),
            Error::File(e) => write!(f, "{e}"),
            Error::CpuLacks { plugin, missing } => {
                write!(f, "{plugin} needs {}, which this CPU does not have", plugins::meta::cpu::Names(*missing))
            }
        }
    }
}

/// The hash the manifest lists for a store file.
pub fn file_hash(file: &[u8]) -> [u8; HASH_LEN] {
    *blake3::hash(file).as_bytes()
}

/// Refuses `plugin` when it needs CPU features outside `have`.
pub fn lacking(plugin: &str, needs: u32, have: u32) -> Result<(), Error> {
    match needs & !have {
        0 => Ok(()),
        missing => Err(Error::CpuLacks { plugin: plugin.into(), missing }),
    }
}

/// How a file is checked before its first load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Listed in the verified manifest with this hash and these CPU needs.
    Listed { hash: [u8; HASH_LEN], needs: u32 },
    /// Checked by its own signature.
    Signature,
}

/// One plugin file of the initrd.
#[derive(Clone, Debug)]
pub struct Entry<'a> {
    pub name: String,
    pub version: Version,
    pub file: &'a [u8],
    pub trust: Trust,
    /// Passed its check already.
    checked: bool,
}

/// The initrd's plugin files, and what the manifest said about them.
#[derive(Debug)]
pub struct Index<'a> {
    entries: Vec<Entry<'a>>,
    key: [u8; 32],
}

/// The verified manifest's entries (name, hash); `Err` when it cannot be
/// trusted.
fn verified_manifest<'m>(file: &'m [u8], key: &[u8; 32]) -> Result<Vec<manifest::Entry<'m>>, Error> {
    let (body, signature) = plugins::sig::split(file).map_err(|_| Error::ManifestUnsigned)?;
    ed25519_compact::PublicKey::new(*key)
        .verify(body, &ed25519_compact::Signature::new(*signature))
        .map_err(|_| Error::ManifestSignature)?;
    let listed: Vec<_> = manifest::parse(body).map_err(Error::Manifest)?.collect();
    for (i, e) in listed.iter().enumerate() {
        if listed[..i].iter().any(|o| o.name == e.name) {
            return Err(Error::ManifestDuplicate(e.name.into()));
        }
    }
    Ok(listed)
}

impl<'a> Index<'a> {
    /// Indexes the initrd's `files` (path, bytes); plugin files are those
    /// at `plugins/<name>-<version>.mvp`. Returns the manifest's problem
    /// beside the index when it had one (then no file is listed).
    pub fn build<'p>(files: impl Iterator<Item = (&'p str, &'a [u8])>, key: &[u8; 32]) -> (Index<'a>, Option<Error>) {
        let mut entries = Vec::new();
        let mut manifest_file = None;
        for (path, file) in files {
            if path == manifest::PATH {
                manifest_file = Some(file);
            } else if let Some((name, version)) = super::resolve::store_path(path) {
                entries.push(Entry { name: name.into(), version, file, trust: Trust::Signature, checked: false });
            }
        }
        let listed = manifest_file.map(|m| verified_manifest(m, key));
        let problem = match listed {
            Some(Ok(listed)) => {
                for e in &mut entries {
                    let file_name = alloc::format!("{}-{}.mvp", e.name, e.version);
                    if let Some(l) = listed.iter().find(|l| l.name == file_name) {
                        e.trust = Trust::Listed { hash: *l.hash, needs: l.needs };
                    }
                }
                None
            }
            Some(Err(e)) => Some(e),
            None => None,
        };
        (Index { entries, key: *key }, problem)
    }

    pub fn entries(&self) -> &[Entry<'a>] {
        &self.entries
    }

    /// The entry of plugin `name` at `version`, or at its highest version.
    pub fn find(&self, name: &str, version: Option<&Version>) -> Option<usize> {
        let matching = self.entries.iter().enumerate();
        matching
            .filter(|(_, e)| e.name == name && version.is_none_or(|v| *v == e.version))
            .max_by(|a, b| a.1.version.cmp(&b.1.version))
            .map(|(i, _)| i)
    }

    /// Checks entry `index` (the first time only) and returns its ELF
    /// bytes; a listed plugin that needs CPU features outside `have` is
    /// refused before its bytes are read.
    pub fn open(&mut self, index: usize, have: u32) -> Result<&'a [u8], Error> {
        let key = self.key;
        let e = &mut self.entries[index];
        if let Trust::Listed { needs, .. } = e.trust {
            lacking(&e.name, needs, have)?;
        }
        let body = match (e.checked, e.trust) {
            (false, Trust::Listed { hash, .. }) if file_hash(e.file) != hash => {
                return Err(Error::HashMismatch { file: alloc::format!("{}-{}.mvp", e.name, e.version) })
            }
            (false, Trust::Signature) => elf::verify(e.file, &key).map_err(Error::File)?,
            // Listed and matching, or checked before: only the trailer goes.
            _ => plugins::sig::split(e.file).map_err(|_| Error::File(elf::Error::Unsigned))?.0,
        };
        e.checked = true;
        Ok(body)
    }
}

#[cfg(test)]
mod tests;
