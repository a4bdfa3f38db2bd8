//! What the loader, plugin and guest builds share: how cargo is started,
//! where it builds, where the toolchain's own tools are, when a file is
//! stale, and an ELF's loadable segments.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use super::{Error, Result};

pub const KERNEL_TARGET: &str = "x86_64-unknown-none";

/// The cargo the runner was started by, so a `cargo +toolchain run` is
/// honoured; plain `cargo` (rust-toolchain.toml picks the toolchain) otherwise.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the
/// workspace) or `target/`. The plugin and guest builds use folders of
/// their own below it, since their RUSTFLAGS would otherwise invalidate
/// each other's and the loader's builds.
pub fn target_root() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| crate::workspace_root().join(d))
        .unwrap_or_else(|| crate::workspace_root().join("target"))
}

/// The loadable segments (address, size in memory) of an ELF file; empty
/// when it is none. A stripped file must keep its original's, or GDB's
/// symbols from the original are off.
pub fn load_layout(elf: &[u8]) -> Vec<(u64, u64)> {
    use object::{Object, ObjectSegment};
    object::File::parse(elf).map(|f| f.segments().map(|s| (s.address(), s.size())).collect()).unwrap_or_default()
}

/// What `output` was made from, as a line: `input`'s inode, size and
/// mtime. Cargo hard-links `release/lib*.a` to the artifact of the build
/// asked for, and after a profile setting flips back that is an older
/// cached one: its mtime goes back, so only a changed stamp tells.
pub fn stamp(input: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(input).ok()?;
    Some(format!("{} {} {}.{:09}\n", m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

/// Where the stamp of what `output` was made from is kept.
fn stamp_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".from");
    PathBuf::from(name)
}

/// Whether `output` is missing or was made from something else than
/// `stamp` describes.
pub fn made_from_other(output: &Path, stamp: &str) -> bool {
    !output.exists() || fs::read_to_string(stamp_path(output)).ok().as_deref() != Some(stamp)
}

/// Records that `output` was made from what `stamp` describes.
pub fn record_stamp(output: &Path, stamp: &str) -> Result<()> {
    let path = stamp_path(output);
    fs::write(&path, stamp).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// A target needs rebuilding when it is missing or older than any input.
pub fn is_stale(target: Option<SystemTime>, inputs: &[SystemTime]) -> bool {
    match target {
        None => true,
        Some(t) => inputs.iter().any(|i| *i > t),
    }
}

pub fn mtime(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Writes `bytes` unless the file already holds exactly them.
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    fs::write(path, bytes).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(true)
}

/// A tool of the toolchain's own, in `<sysroot>/lib/rustlib/<host>/bin/`
/// (rust-lld ships with it; llvm-strip comes with rustup's llvm-tools);
/// `missing` says how to get it.
pub fn toolchain_tool(name: &str, missing: &str) -> Result<PathBuf> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let query = |arg: &str| -> Result<String> {
        let out = Command::new(&rustc).arg(arg).output().map_err(|e| Error::io("starting rustc", e))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let sysroot = query("--print=sysroot")?;
    let verbose = query("-vV")?;
    let host = verbose
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .ok_or_else(|| Error::Environment("`rustc -vV` names no host".into()))?;
    let tool = Path::new(sysroot.trim()).join("lib/rustlib").join(host).join("bin").join(name);
    if !tool.is_file() {
        return Err(Error::Environment(format!("{} is missing: {missing}", tool.display())));
    }
    Ok(tool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn staleness_by_mtime() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let older = t - Duration::from_secs(1);
        let newer = t + Duration::from_secs(1);
        assert!(is_stale(None, &[older]));
        assert!(is_stale(Some(t), &[older, newer]));
        assert!(!is_stale(Some(t), &[older, t]));
        assert!(!is_stale(Some(t), &[]));
    }

    #[test]
    fn an_output_is_remade_when_its_input_is_another_file_even_an_older_one() {
        let dir = std::env::temp_dir().join(format!("mv-stamp-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (old, new, out, link) = (dir.join("old.a"), dir.join("new.a"), dir.join("out.so"), dir.join("lib.a"));
        fs::write(&old, b"old build").unwrap();
        fs::write(&new, b"new build").unwrap();
        let link_to = |target: &Path| {
            let _ = fs::remove_file(&link);
            fs::hard_link(target, &link).unwrap();
            stamp(&link).unwrap()
        };
        let from_new = link_to(&new);
        assert!(made_from_other(&out, &from_new), "no output yet");
        fs::write(&out, b"linked").unwrap();
        record_stamp(&out, &from_new).unwrap();
        assert!(!made_from_other(&out, &from_new));
        // The link goes back to the older artifact, as cargo's does.
        assert!(made_from_other(&out, &link_to(&old)));
        fs::remove_dir_all(&dir).unwrap();
    }
}
