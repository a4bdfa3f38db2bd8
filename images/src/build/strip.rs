//! The shipped loader is stripped (`llvm-strip --strip-all`, the
//! toolchain's own, from rustup's llvm-tools): its debug info and symbol
//! tables are most of its 15-19 MB and the loader never reads them. The
//! unstripped build stays beside it as `loader.debug.elf` for GDB and the
//! bench profiler, with the same addresses, since stripping removes only
//! sections that no segment loads.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::shared::{is_stale, mtime};
use super::{Error, Result};

/// The toolchain's `llvm-strip`: `<sysroot>/lib/rustlib/<host>/bin/`.
fn llvm_strip() -> Result<PathBuf> {
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
    let tool = Path::new(sysroot.trim()).join("lib/rustlib").join(host).join("bin/llvm-strip");
    if !tool.is_file() {
        return Err(Error::Environment(format!(
            "{} is missing: `make setup` adds llvm-tools (rustup)",
            tool.display()
        )));
    }
    Ok(tool)
}

/// Where the stripped twin of `debug` (`x.elf`) is kept: `x.stripped.elf`.
pub fn stripped_path(debug: &Path) -> PathBuf {
    debug.with_extension("stripped.elf")
}

/// Writes the stripped twin of `debug` when it is missing or older;
/// returns its path.
pub fn strip(debug: &Path) -> Result<PathBuf> {
    let out = stripped_path(debug);
    let source = mtime(debug).ok_or_else(|| Error::Environment(format!("{} is missing", debug.display())))?;
    if !is_stale(mtime(&out), &[source]) {
        return Ok(out);
    }
    let tool = llvm_strip()?;
    let status = Command::new(&tool)
        .arg("--strip-all")
        .arg("-o")
        .arg(&out)
        .arg(debug)
        .status()
        .map_err(|e| Error::io(format!("starting {}", tool.display()), e))?;
    if !status.success() {
        return Err(Error::Tool {
            command: format!("llvm-strip --strip-all {}", debug.display()),
            detail: status.to_string(),
        });
    }
    Ok(out)
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
