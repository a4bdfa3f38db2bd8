//! Signing plugins: the tree's ed25519 key and the signed-file format of
//! `plugins::sig` (ELF bytes, 64-byte signature over them, trailer magic).
//!
//! The key is a 32-byte seed at `keys/plugin-signing.key`, made on the
//! first build and never committed. The loader's build script makes the
//! same file when it is missing and builds the public key in, so whichever
//! runs first creates it and the other reads it.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_compact::{KeyPair, Seed};
use plugins::sig::{SIGNATURE_LEN, TRAILER_MAGIC};

use super::{Error, Result};
use crate::workspace_root;

pub const SEED_LEN: usize = 32;

pub fn key_path() -> PathBuf {
    workspace_root().join("keys").join("plugin-signing.key")
}

/// The signing key, made first if the tree has none.
pub fn signing_key() -> Result<KeyPair> {
    let path = key_path();
    if !path.exists() {
        create_key(&path)?;
    }
    let bytes = fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let seed: [u8; SEED_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
        Error::Environment(format!(
            "{} holds {} bytes, not a {SEED_LEN}-byte ed25519 seed; delete it to make a new key \
             (then rebuild the loader too, which builds the public key in)",
            path.display(),
            b.len()
        ))
    })?;
    Ok(KeyPair::from_seed(Seed::new(seed)))
}

/// A fresh seed from the kernel's random source: for the tree's key, and
/// for the throwaway keys that prove a foreign signature is refused.
pub fn random_seed() -> Result<[u8; SEED_LEN]> {
    let mut seed = [0u8; SEED_LEN];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| Error::io("reading /dev/urandom for a new signing key", e))?;
    Ok(seed)
}

/// Writes 32 random bytes (mode 0600) to a private file and links it into
/// place, so a reader never sees a half-written key, and a key another
/// process made meanwhile wins.
fn create_key(path: &Path) -> Result<()> {
    let dir = path.parent().expect("the key path has a directory");
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let seed = random_seed()?;
    let tmp = dir.join(format!(".plugin-signing.key.{}", std::process::id()));
    let io = |what: &str, e| Error::io(format!("{what} {}", tmp.display()), e);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&seed).and_then(|()| f.sync_all()))
        .map_err(|e| io("writing", e))?;
    let linked = fs::hard_link(&tmp, path);
    fs::remove_file(&tmp).map_err(|e| io("removing", e))?;
    match linked {
        Ok(()) => {
            println!("build: made a new plugin signing key {}", crate::shown(path));
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(format!("linking {}", path.display()), e)),
    }
}

/// `body` followed by its signature and the trailer magic.
pub fn sign(body: &[u8], key: &KeyPair) -> Vec<u8> {
    let signature = key.sk.sign(body, None);
    let mut file = Vec::with_capacity(body.len() + SIGNATURE_LEN + TRAILER_MAGIC.len());
    file.extend_from_slice(body);
    file.extend_from_slice(signature.as_ref());
    file.extend_from_slice(&TRAILER_MAGIC);
    file
}

/// The store manifest (`plugins::manifest`), signed: each listed file
/// (name under `plugins/`, the hash it must have, the CPU features its
/// metadata says it needs).
pub fn manifest(entries: &[plugins::manifest::Entry], key: &KeyPair) -> Result<Vec<u8>> {
    if let Some(e) = entries.iter().find(|e| e.name.is_empty() || e.name.len() > usize::from(u8::MAX)) {
        return Err(Error::Recipe(format!("store file name `{}` does not fit the manifest (1 to 255 bytes)", e.name)));
    }
    let mut body = Vec::new();
    plugins::manifest::encode(entries, &mut body);
    Ok(sign(&body, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_compact::Signature;

    #[test]
    fn signed_files_split_and_verify() {
        let key = KeyPair::from_seed(Seed::new([9; SEED_LEN]));
        let file = sign(b"\x7fELF body", &key);
        assert_eq!(file, sign(b"\x7fELF body", &key), "signatures are deterministic");
        let (body, sig) = plugins::sig::split(&file).unwrap();
        assert_eq!(body, b"\x7fELF body");
        key.pk.verify(body, &Signature::new(*sig)).unwrap();
        assert!(key.pk.verify(b"\x7fELF bodY", &Signature::new(*sig)).is_err());
    }

    #[test]
    fn the_manifest_is_signed_and_lists_the_files() {
        use loader_core::plugin::store::{file_hash, Index, Trust};
        use plugins::manifest::Entry;
        let key = KeyPair::from_seed(Seed::new([9; SEED_LEN]));
        let file = sign(b"\x7fELF body", &key);
        let hash = file_hash(&file);
        let m = manifest(&[Entry { name: "a-plugin-1.0.0.mvp", hash: &hash, needs: 0 }], &key).unwrap();
        let files = [("plugins/a-plugin-1.0.0.mvp", &file[..]), (plugins::manifest::PATH, &m[..])];
        let (mut index, problem) = Index::build(files.into_iter(), &key.pk);
        assert_eq!(problem, None);
        assert_eq!(index.entries()[0].trust, Trust::Listed { hash, needs: 0 });
        assert_eq!(index.open(0, 0).unwrap(), b"\x7fELF body");
        let other = KeyPair::from_seed(Seed::new([8; SEED_LEN]));
        let (_, problem) = Index::build(files.into_iter(), &other.pk);
        assert!(problem.is_some(), "a manifest signed in another tree is refused");
        assert!(manifest(&[Entry { name: "", hash: &hash, needs: 0 }], &key).is_err());
        assert!(manifest(&[Entry { name: &"x".repeat(256), hash: &hash, needs: 0 }], &key).is_err());
    }

    #[test]
    fn a_new_key_is_private_and_an_existing_one_is_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("modvisor-key-test-{}", std::process::id()));
        let path = dir.join("keys").join("k");
        create_key(&path).unwrap();
        let first = fs::read(&path).unwrap();
        assert_eq!(first.len(), SEED_LEN);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        create_key(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), first);
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temporary left");
        fs::remove_dir_all(&dir).unwrap();
    }
}
