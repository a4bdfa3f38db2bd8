//! `runner swap`: sends a freshly built plugin to the image that `runner
//! run` is running, over the guest's COM2 (a unix socket on the host), and
//! turns the loader's reply into a GDB script.
//!
//! The frame and the reply grammar are `plugins::upload`, which the loader
//! uses too.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use plugins::upload::{self, Command, Loaded, ReplyLine, ReplyParser};

use crate::builder::shown;
use crate::plugin_build::{self, StoreFile};
use crate::{out_dir, Error, Result};

/// Far above a swap under TCG; the loader answers once the new version
/// runs or was refused.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// The files of the interactive session (`runner run`).
pub fn run_dir() -> PathBuf {
    out_dir().join("run")
}

/// The host end of the guest's COM2.
pub fn com2_socket() -> PathBuf {
    run_dir().join("com2.sock")
}

/// Where the GDB script of the last swap is written.
pub fn gdb_script_path() -> PathBuf {
    run_dir().join("plugins.gdb")
}

/// A complete upload frame.
pub fn frame(command: Command, payload: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(payload.len())
        .map_err(|_| Error::Usage(format!("a plugin of {} bytes is too large to upload", payload.len())))?;
    let mut f = upload::header(command, len).to_vec();
    f.extend_from_slice(payload);
    f.extend_from_slice(&upload::trailer(payload));
    Ok(f)
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

/// Sends one frame (whole or damaged on purpose) and returns the loader's
/// reply. Frames go one at a time: the loader answers each before the next.
pub fn push(stream: &UnixStream, frame: &[u8]) -> Result<Vec<String>> {
    let mut writer = stream;
    writer.write_all(frame).map_err(|e| Error::io("writing to the COM2 socket", e))?;
    read_reply(stream)
}

/// The reply's lines up to and including `end` or `error: ...`. The
/// loader sends nothing unasked, so the buffer dropped here holds nothing
/// of the next reply on the same stream.
fn read_reply(stream: &UnixStream) -> Result<Vec<String>> {
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(|e| Error::io("setting a timeout on the COM2 socket", e))?;
    let mut reader = BufReader::new(stream);
    let mut parser = ReplyParser::default();
    let mut lines = Vec::new();
    loop {
        let mut raw = Vec::new();
        let n = reader.read_until(b'\n', &mut raw).map_err(|e| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Error::Environment(format!(
                "no complete reply on COM2 within {} s (does this loader listen on COM2?)",
                REPLY_TIMEOUT.as_secs()
            )),
            _ => Error::io("reading the loader's reply from COM2", e),
        })?;
        if n == 0 {
            return Err(Error::Environment("QEMU closed COM2 before the reply was complete".into()));
        }
        let line = String::from_utf8_lossy(&raw).trim_end().to_string();
        let done = match parser.line(&line).map_err(|e| Error::Environment(e.to_string()))? {
            Some(ReplyLine::End | ReplyLine::Error(_)) => true,
            Some(_) => false,
            None => continue,
        };
        lines.push(line);
        if done {
            return Ok(lines);
        }
    }
}

/// `runner swap`: build, upload with store-and-swap, report.
pub fn swap_command(plugin: &str, version: Option<&str>) -> Result<ExitCode> {
    let store = plugin_build::build_plugins()?;
    let file = choose(&store, plugin, version)?;
    let socket = com2_socket();
    let stream = UnixStream::connect(&socket).map_err(|e| {
        Error::Environment(format!("cannot connect to {} ({e}); start the image with `make run` first", shown(&socket)))
    })?;
    println!("swap: sending {} ({} bytes) to COM2", file.path, file.bytes.len());
    let lines = push(&stream, &frame(Command::StoreAndSwap, &file.bytes)?)?;
    for line in &lines {
        println!("loader: {line}");
    }
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

/// The QEMU `-serial` value for COM2 on `socket`: a listening socket that
/// does not wait for a client, so the guest boots at once.
pub fn com2_serial_arg(socket: &Path) -> Result<String> {
    let text = socket.to_str().unwrap_or_default();
    // sun_path holds 108 bytes with the NUL; QEMU's option syntax gives
    // commas a meaning.
    if text.is_empty() || text.len() > 107 || text.contains(',') {
        return Err(Error::Environment(format!(
            "{} cannot be a QEMU unix socket (at most 107 bytes, no commas): move the workspace",
            socket.display()
        )));
    }
    Ok(format!("unix:{text},server=on,wait=off"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn store_file(name: &str, version: &str) -> StoreFile {
        StoreFile {
            path: format!("plugins/{name}-{version}.mvp"),
            bytes: version.as_bytes().to_vec(),
            plugin: Some((name.into(), version.into())),
        }
    }

    #[test]
    fn frames_decode_with_the_loaders_decoder() {
        let f = frame(Command::StoreAndSwap, b"payload").unwrap();
        let mut d = upload::Decoder::new(1024);
        let events: Vec<upload::Event> = f.iter().map(|b| d.feed(*b)).collect();
        assert_eq!(events.last(), Some(&upload::Event::Done { command: Command::StoreAndSwap }));
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

    #[test]
    fn com2_argument() {
        assert_eq!(
            com2_serial_arg(Path::new("/w/images/out/run/com2.sock")).unwrap(),
            "unix:/w/images/out/run/com2.sock,server=on,wait=off"
        );
        assert!(com2_serial_arg(Path::new("/a,b/com2.sock")).is_err());
        assert!(com2_serial_arg(&Path::new("/").join("x".repeat(120))).is_err());
    }

    #[test]
    fn replies_are_read_up_to_their_end() {
        let dir = std::env::temp_dir().join(format!("modvisor-swap-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let listener = UnixListener::bind(&path).unwrap();
        let loader = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"ok swapped\r\nplugin c 2.0.0 0x1000 plugins/c-2.0.0.mvp\r\n\r\nend\r\nnot read\n").unwrap();
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"error: bad signature\n").unwrap();
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"ok\nplugin c").unwrap();
        });
        let reply = |p: &Path| read_reply(&UnixStream::connect(p).unwrap());
        assert_eq!(reply(&path).unwrap(), ["ok swapped", "plugin c 2.0.0 0x1000 plugins/c-2.0.0.mvp", "end"]);
        assert_eq!(reply(&path).unwrap(), ["error: bad signature"]);
        let e = reply(&path).unwrap_err().to_string();
        assert!(e.contains("unexpected reply line `plugin c`"), "{e}");
        loader.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
