//! The shipped loader (and every shipped test guest) is stripped (`llvm-strip --strip-all`, the
//! toolchain's own, from rustup's llvm-tools): its debug info and symbol
//! tables are most of its 15-19 MB and the loader never reads them. The
//! unstripped build stays beside it as `loader.debug.elf` for GDB and the
//! bench profiler, with the same addresses, since stripping removes only
//! sections that no segment loads.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::shared::{is_stale, mtime, toolchain_tool};
use super::{Error, Result};

/// The toolchain's `llvm-strip`.
fn llvm_strip() -> Result<PathBuf> {
    toolchain_tool("llvm-strip", "`make setup` adds llvm-tools (rustup)")
}

/// Where the stripped twin of `debug` (`x.elf`) is kept: `x.stripped.elf`.
pub fn stripped_path(debug: &Path) -> PathBuf {
    debug.with_extension("stripped.elf")
}

/// Writes the stripped twin of `debug` when it is missing or older;
/// returns its path.
pub fn strip(debug: &Path) -> Result<PathBuf> {
    let out = stripped_path(debug);
    strip_into(debug, &out)?;
    Ok(out)
}

/// Writes `debug` stripped as `out` when `out` is missing or older;
/// returns whether it wrote.
pub fn strip_into(debug: &Path, out: &Path) -> Result<bool> {
    let source = mtime(debug).ok_or_else(|| Error::Environment(format!("{} is missing", debug.display())))?;
    if !is_stale(mtime(out), &[source]) {
        return Ok(false);
    }
    let tool = llvm_strip()?;
    let status = Command::new(&tool)
        .arg("--strip-all")
        .arg("-o")
        .arg(out)
        .arg(debug)
        .status()
        .map_err(|e| Error::io(format!("starting {}", tool.display()), e))?;
    if !status.success() {
        return Err(Error::Tool {
            command: format!("llvm-strip --strip-all {}", debug.display()),
            detail: status.to_string(),
        });
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stripped_twin_sits_beside() {
        assert_eq!(stripped_path(Path::new("/o/loader.elf")), Path::new("/o/loader.stripped.elf"));
        assert_eq!(stripped_path(Path::new("/o/loader-ktest.elf")), Path::new("/o/loader-ktest.stripped.elf"));
    }
}
