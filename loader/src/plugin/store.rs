//! The plugin store: signed plugin files from the initrd (a ustar archive,
//! `plugins/<name>-<version>.mvp`) and those uploaded at run time.

use alloc::string::String;
use alloc::vec::Vec;
use semver::Version;
use spin::Mutex;
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

fn archive() -> Option<TarArchiveRef<'static>> {
    TarArchiveRef::new(crate::boot::initrd()?).ok()
}

/// Every plugin in the store: name, version, source, size.
pub fn list() -> Vec<(String, Version, Source, usize)> {
    let mut out: Vec<_> = archive()
        .into_iter()
        .flat_map(|a| {
            a.entries()
                .filter_map(|e| {
                    let path = e.filename();
                    let (name, version) = loader_core::plugin::resolve::store_path(path.as_str().ok()?)?;
                    Some((String::from(name), version, Source::Initrd, e.size()))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    out.extend(UPLOADED.lock().iter().map(|e| (e.name.clone(), e.version.clone(), e.source, e.bytes.len())));
    out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    out
}

/// The file of plugin `name` at `version`, or its highest version. An
/// uploaded file wins over the initrd's of the same version.
pub fn find(name: &str, version: Option<&Version>) -> Option<(Version, Vec<u8>)> {
    let uploaded = UPLOADED
        .lock()
        .iter()
        .filter(|e| e.name == name && version.is_none_or(|v| *v == e.version))
        .max_by(|a, b| a.version.cmp(&b.version))
        .map(|e| (e.version.clone(), e.bytes.clone()));
    let from_initrd = archive().and_then(|a| {
        a.entries()
            .filter_map(|e| {
                let path = e.filename();
                let (n, v) = loader_core::plugin::resolve::store_path(path.as_str().ok()?)?;
                (n == name && version.is_none_or(|want| *want == v)).then(|| (v, e.data().to_vec()))
            })
            .max_by(|a, b| a.0.cmp(&b.0))
    });
    match (uploaded, from_initrd) {
        (Some(u), Some(i)) if i.0 > u.0 => Some(i),
        (Some(u), _) => Some(u),
        (None, i) => i,
    }
}

/// Adds an uploaded (already verified) plugin file.
pub fn add_uploaded(name: String, version: Version, bytes: Vec<u8>) {
    let mut up = UPLOADED.lock();
    up.retain(|e| !(e.name == name && e.version == version));
    up.push(Entry { name, version, source: Source::Uploaded, bytes });
}
