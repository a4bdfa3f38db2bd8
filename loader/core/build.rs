//! Makes the plugin signing key: a per-tree ed25519 seed in `<workspace>/keys/`,
//! never committed, whose public key is built into the loader (the plugin
//! check in `plugin::elf`) and with which the runner signs plugins.
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const KEY_FILE: &str = "keys/plugin-signing.key";
const SEED_LEN: usize = 32;

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let key_path = Path::new(&dir).join("../..").join(KEY_FILE);
    let seed = read_or_make_seed(&key_path);
    let public = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed)).pk;
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("plugin-signing.pub");
    fs::write(&out, public.as_ref()).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
    println!("cargo:rerun-if-changed={}", key_path.display());
}

/// The seed in `path`, made first if the file does not exist.
fn read_or_make_seed(path: &Path) -> [u8; SEED_LEN] {
    if !path.exists() {
        make_seed(path);
    }
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("reading the plugin signing key {}: {e}", path.display()));
    bytes.try_into().unwrap_or_else(|b: Vec<u8>| {
        panic!(
            "the plugin signing key {} holds {} bytes, not a {SEED_LEN}-byte ed25519 seed; delete it to make a new \
             one (plugins signed with the old key must then be signed again)",
            path.display(),
            b.len()
        )
    })
}

/// Writes a fresh random seed to `path`, mode 0600. The host and kernel
/// builds run this script concurrently, so the seed goes to a private
/// temporary file first and is then hard-linked into place: `link` fails if
/// the other build got there first, and nobody ever reads a half-written key.
fn make_seed(path: &Path) {
    let dir = path.parent().unwrap();
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let mut seed = [0u8; SEED_LEN];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .unwrap_or_else(|e| panic!("reading /dev/urandom for a new plugin signing key: {e}"));
    let tmp = dir.join(format!(".plugin-signing.key.{}", std::process::id()));
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&seed))
        .unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => println!(
            "cargo:warning=made a new per-tree plugin signing key {} (keep it out of git; plugins signed with \
             another tree's key will not load)",
            path.display()
        ),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => panic!("installing the plugin signing key {}: {e}", path.display()),
    }
}
