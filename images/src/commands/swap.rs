//! `runner swap`: sends a freshly built plugin to the image that `runner
//! run` is running, over the guest's COM2 (a unix socket on the host, with
//! the client of `link::com2`), and turns the loader's reply into a GDB
//! script. `runner guest-upload` sends a guest program the same way.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use plugins::upload::{Command, Loaded};

use super::run::{com2_socket, run_dir};
use super::{Error, Result};
use crate::build::plugin_build::{self, StoreFile};
use crate::link::com2::{frame, Uplink};
use crate::shown;

/// Where the GDB script of the last swap is written.
pub fn gdb_script_path() -> PathBuf {
    run_dir().join("plugins.gdb")
}

/// The store file of plugin `name`: version `version`, or the highest.
pub fn choose<'a>(store: &'a [StoreFile], name: &str, version: Option<&str>) -> Result<&'a StoreFile> {
    let candidates: Vec<(&StoreFile, semver::Version)> = store
        .iter()
        .filter_map(|f| {
            let (n, v) = f.plugin.as_ref()?;
            (n == name).then(|| semver::Version::parse(v).ok().map(|parsed| (f, parsed)))?
        })
        .collect();
    if candidates.is_empty() {
        let mut names: Vec<&str> = store.iter().filter_map(|f| f.plugin.as_ref().map(|(n, _)| n.as_str())).collect();
        names.dedup();
        return Err(Error::Usage(format!("runner swap: no plugin `{name}`; plugins: {}", names.join(", "))));
    }
    let chosen = match version {
        Some(v) => candidates.iter().find(|(f, _)| f.plugin.as_ref().is_some_and(|(_, fv)| fv == v)),
        None => candidates.iter().max_by(|a, b| a.1.cmp(&b.1)),
    };
    chosen.map(|(f, _)| *f).ok_or_else(|| {
        let versions: Vec<String> = candidates.iter().map(|(_, v)| v.to_string()).collect();
        Error::Usage(format!(
            "runner swap: `{name}` has no version {}; built versions: {}",
            version.unwrap_or_default(),
            versions.join(", ")
        ))
    })
}

/// `add-symbol-file` lines for every loaded plugin, with paths relative
/// to the workspace root (where GDB is started).
pub fn gdb_script(loaded: &[Loaded]) -> String {
    loaded
        .iter()
        .map(|l| format!("add-symbol-file {} -o {:#x}\n", shown(&plugin_build::debug_object(l.path)), l.load_address))
        .collect()
}

/// Sends `frame` to the running image's COM2 (again when the loader asks
/// for it) and prints every reply; the last one's lines.
fn push(what: &str, frame: &[u8]) -> Result<Vec<String>> {
    let socket = com2_socket();
    let stream = UnixStream::connect(&socket).map_err(|e| {
        Error::Environment(format!(
            "cannot connect to {} ({e}); start the image with `make run` (or `make bochs`) first",
            shown(&socket)
        ))
    })?;
    let replies = Uplink::new(stream)?.push(frame, Some(frame))?;
    let (last, asked) = replies.split_last().expect("a push returns at least one reply");
    for reply in asked {
        println!("loader: {}", reply.lines.join(" / "));
        println!("{what}: sent it again, as the loader asked");
    }
    for line in &last.lines {
        println!("loader: {line}");
    }
    Ok(last.lines.clone())
}

/// `runner guest-upload`: sends `file` as guest file `name`.
pub fn guest_upload_command(file: &std::path::Path, name: Option<&str>) -> Result<ExitCode> {
    let bytes = std::fs::read(file).map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
    let name = name.map(str::to_string).or_else(|| file.file_name().map(|n| n.to_string_lossy().into_owned()));
    let name = name.unwrap_or_default();
    let (prefix, n) = plugins::upload::guest_prefix(&name).ok_or_else(|| {
        Error::Usage(format!(
            "runner guest-upload: `{name}` cannot name a guest file: 1 to {} letters, digits, `.`, `-` or `_` \
             (--name NAME)",
            plugins::upload::GUEST_NAME_MAX
        ))
    })?;
    let mut payload = prefix[..n].to_vec();
    payload.extend_from_slice(&bytes);
    println!("guest-upload: sending {} ({} bytes) to COM2 as uploads/{name}", shown(file), bytes.len());
    let lines = push("guest-upload", &frame(Command::GuestFile, &payload)?)?;
    Ok(if lines.first().is_some_and(|l| l.starts_with("ok ")) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `runner swap`: build, upload with store-and-swap, report.
pub fn swap_command(plugin: &str, version: Option<&str>) -> Result<ExitCode> {
    let store = plugin_build::build_plugins()?;
    let file = choose(&store, plugin, version)?;
    println!("swap: sending {} ({} bytes) to COM2", file.path, file.bytes.len());
    let lines = push("swap", &frame(Command::StoreAndSwap, &file.bytes)?)?;
    let loaded: Vec<Loaded> = lines.iter().filter_map(|l| Loaded::parse(l)).collect();
    if loaded.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    let script = gdb_script(&loaded);
    let path = gdb_script_path();
    std::fs::write(&path, &script).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    println!("GDB script ({}; `source` it after `target remote`):", shown(&path));
    print!("{script}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_file(name: &str, version: &str) -> StoreFile {
        StoreFile {
            path: format!("plugins/{name}-{version}.mvp"),
            bytes: version.as_bytes().to_vec(),
            plugin: Some((name.into(), version.into())),
        }
    }

    #[test]
    fn choosing_a_version() {
        let store = [
            store_file("counter-plugin", "2.0.0"),
            store_file("counter-plugin", "10.0.0"),
            store_file("counter-plugin", "1.0.0"),
            store_file("consumer-plugin", "1.0.0"),
            StoreFile { path: "plugins/bad-abi.mvp".into(), bytes: vec![], plugin: None },
        ];
        assert_eq!(choose(&store, "counter-plugin", None).unwrap().path, "plugins/counter-plugin-10.0.0.mvp");
        assert_eq!(choose(&store, "counter-plugin", Some("2.0.0")).unwrap().path, "plugins/counter-plugin-2.0.0.mvp");
        let e = choose(&store, "counter-plugin", Some("4.0.0")).unwrap_err().to_string();
        assert!(e.contains("4.0.0") && e.contains("10.0.0, 1.0.0"), "{e}");
        let e = choose(&store, "counter", None).unwrap_err().to_string();
        assert!(e.contains("`counter`") && e.contains("counter-plugin, consumer-plugin"), "{e}");
    }

    #[test]
    fn gdb_script_names_the_debug_objects() {
        let loaded = [Loaded { name: "c", version: "2.0.0", load_address: 0x20_0000, path: "plugins/c-2.0.0.mvp" }];
        assert_eq!(gdb_script(&loaded), "add-symbol-file images/out/plugins/c-2.0.0.so -o 0x200000\n");
    }
}
