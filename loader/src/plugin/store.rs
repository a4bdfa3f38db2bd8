//! The plugin store: signed plugin files from the initrd (a ustar archive,
//! `plugins/<name>-<version>.mvp`, with the signed manifest
//! `plugins/manifest.mvm`) and those uploaded at run time. The initrd is
//! read and its manifest verified once, at boot (`init`); how each file is
//! trusted is `loader_core::plugin::store`'s decision.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use loader_core::plugin::elf::SIGNING_KEY;
use loader_core::plugin::store::{Error, Index, Trust};
use semver::Version;
use spin::{Mutex, Once};
use tar_no_std::TarArchiveRef;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Initrd,
    Uploaded,
}

pub struct Entry {
    pub name: String,
    pub version: Version,
    pub source: Source,
    pub bytes: Vec<u8>,
}

/// Uploaded files; a later upload of the same name and version replaces an
/// earlier one.
static UPLOADED: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// The initrd's index, built on first use (`init` at boot).
static INDEX: Once<Mutex<Index<'static>>> = Once::new();

fn build() -> Mutex<Index<'static>> {
    let archive = crate::boot::initrd().and_then(|i| TarArchiveRef::new(i).ok());
    // The archive's names are copied out: the index keeps only the bytes.
    let files: Vec<(String, &'static [u8])> = archive
        .iter()
        .flat_map(|a| a.entries())
        .filter_map(|e| Some((String::from(e.filename().as_str().ok()?), e.data())))
        .collect();
    let (index, problem) = Index::build(files.iter().map(|(p, f)| (p.as_str(), *f)), &SIGNING_KEY);
    if let Some(problem) = problem {
        log::error!("plugin store: {problem}");
    }
    let listed = index.entries().iter().filter(|e| matches!(e.trust, Trust::Listed { .. })).count();
    log::info!("plugin store: {} files in the initrd, {listed} listed by its signed manifest", index.entries().len());
    Mutex::new(index)
}

fn index() -> &'static Mutex<Index<'static>> {
    INDEX.call_once(build)
}

/// Reads the initrd's store and verifies its manifest (once).
pub fn init() {
    index();
}

/// Every plugin in the store: name, version, source, size.
pub fn list() -> Vec<(String, Version, Source, usize)> {
    let mut out: Vec<_> = index()
        .lock()
        .entries()
        .iter()
        .map(|e| (e.name.clone(), e.version.clone(), Source::Initrd, e.file.len()))
        .collect();
    out.extend(UPLOADED.lock().iter().map(|e| (e.name.clone(), e.version.clone(), e.source, e.bytes.len())));
    out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    out
}

/// A store file's checked ELF bytes: borrowed from the initrd, or copied
/// out of an upload (which may be replaced while the load runs).
pub type Opened = Result<Cow<'static, [u8]>, Error>;

/// The ELF bytes of plugin `name` at `version`, or at its highest version,
/// checked (`None`: no such file). An uploaded file wins over the initrd's
/// of the same version; uploads were checked when they came. An initrd
/// plugin the CPU cannot run is refused before it is hashed.
pub fn open(name: &str, version: Option<&Version>) -> Option<(Version, Opened)> {
    let uploaded = UPLOADED
        .lock()
        .iter()
        .filter(|e| e.name == name && version.is_none_or(|v| *v == e.version))
        .max_by(|a, b| a.version.cmp(&b.version))
        .map(|e| (e.version.clone(), plugins::sig::split(&e.bytes).map(|(body, _)| body.to_vec())));
    let have = crate::cpu::plugin_features();
    let mut index = index().lock();
    let from_initrd = index.find(name, version).map(|i| (index.entries()[i].version.clone(), i));
    match (uploaded, from_initrd) {
        (Some(u), Some(i)) if i.0 > u.0 => Some((i.0, index.open(i.1, have).map(Cow::Borrowed))),
        (Some((v, body)), _) => {
            let body = body.map_err(|_| Error::File(loader_core::plugin::elf::Error::Unsigned));
            Some((v, body.map(Cow::Owned)))
        }
        (None, Some(i)) => Some((i.0, index.open(i.1, have).map(Cow::Borrowed))),
        (None, None) => None,
    }
}

/// How the initrd's file of `name` at `version` is trusted (the suites).
#[cfg(feature = "ktest")]
pub fn trust_of(name: &str, version: &Version) -> Option<Trust> {
    let index = index().lock();
    index.find(name, Some(version)).map(|i| index.entries()[i].trust)
}

/// The initrd's file of `name` at `version`, signature trailer included
/// (the suites upload it again).
#[cfg(feature = "ktest")]
pub fn initrd_file(name: &str, version: &Version) -> Option<&'static [u8]> {
    let index = index().lock();
    index.find(name, Some(version)).map(|i| index.entries()[i].file)
}

/// Adds an uploaded (already verified) plugin file.
pub fn add_uploaded(name: String, version: Version, bytes: Vec<u8>) {
    let mut up = UPLOADED.lock();
    up.retain(|e| !(e.name == name && e.version == version));
    up.push(Entry { name, version, source: Source::Uploaded, bytes });
}
