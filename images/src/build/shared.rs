//! What the loader build and the plugin builds share: how cargo is
//! started, where the toolchain's own tools are, and when a file is stale.

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
}
