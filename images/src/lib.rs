//! modvisor's image recipes and the host side of testing them.
//!
//! The `runner` binary (src/main.rs) only parses its arguments and calls
//! into this library. Everything that decides something — which image has
//! which command line, which layouts a test runs on, how an emulator's exit
//! is judged, whether a banner fits its layout — is pure and unit-tested
//! here; the few functions that spawn processes or touch files stay thin.
//!
//! The library is five layers; each imports only the layers below it:
//!
//! | layer        | what it holds                                                        |
//! |--------------|----------------------------------------------------------------------|
//! | `commands`   | `runner`'s command line and one module per command                   |
//! | `scenarios`  | scripted runs: shell sessions, uploads, QMP hotplug, the cpuhp model |
//! | `link`       | talking to a running guest: COM1 expect engine, QMP, COM2 uploads    |
//! | `build`      | the recipe table, loader and plugin builds, signing, ELF edits       |
//! | `machine`    | emulators: layouts, QEMU and Bochs arguments, the process guard, how a boot ended |
//!
//! `build` sits above `machine` because a recipe says where it boots
//! (layouts, Bochs models) and how it must end (outcomes); `machine` knows
//! nothing of images beyond the paths it is given.

pub mod build;
pub mod commands;
pub mod link;
pub mod machine;
pub mod scenarios;

use std::path::{Path, PathBuf};

/// The workspace root. The runner is always built from this workspace, so
/// the compile-time manifest path is the one place that knows where it is,
/// whatever the current directory of the caller.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the images crate lives one level below the workspace root")
}

/// Where built images, ISOs and the logs of test runs go (git-ignored).
pub fn out_dir() -> PathBuf {
    workspace_root().join("images").join("out")
}

/// A path as the user best recognises it: relative to the workspace.
pub fn shown(path: &Path) -> String {
    path.strip_prefix(workspace_root()).unwrap_or(path).display().to_string()
}

/// The message of a serial line: the text after the loader's log prefix
/// (`[   0.123456 0 INFO  loader::x] `) when it has one, else the line.
pub fn log_message(line: &str) -> &str {
    match line.find("] ") {
        Some(i) if line.trim_start().starts_with('[') => line[i + 2..].trim(),
        _ => line.trim(),
    }
}

/// A log file as text, whatever bytes the guest wrote; empty if missing
/// (an emulator that failed to start writes none).
pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_keeps_the_tail() {
        assert_eq!(last_lines("a\nb\nc\n", 2), ["b", "c"]);
        assert_eq!(last_lines("a", 40), ["a"]);
        assert!(last_lines("", 3).is_empty());
    }

    #[test]
    fn log_prefix_is_stripped() {
        assert_eq!(log_message("[   0.123456 0 INFO  loader::x] cpus: 1"), "cpus: 1");
        assert_eq!(log_message("cpus: 1\r"), "cpus: 1");
        assert_eq!(log_message("a] b"), "a] b");
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(out_dir().ends_with("images/out"));
        assert_eq!(shown(&out_dir().join("boot.iso")), "images/out/boot.iso");
        assert_eq!(shown(Path::new("/elsewhere/x")), "/elsewhere/x");
    }
}
