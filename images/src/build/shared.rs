//! What the loader build and the plugin builds share: how cargo is
//! started, and when a file is stale.

use std::ffi::OsString;
use std::fs;
use std::path::Path;
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
