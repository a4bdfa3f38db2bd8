//! The shell's plugin commands: `plugins`, `store`, `load`, `unload`,
//! `swap`, `info`, `upload`, registered with the shell at boot (owner 0, the loader;
//! plugins are owners 1 and up).

use super::{registry, store};
use crate::println;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// (name, usage, help)
pub const BUILTINS: &[(&str, &str, &str)] = &[
    ("plugins", "plugins", "loaded plugins: version, state, interfaces, load address, size, load time, heap held"),
    ("store", "store", "plugin files in the store (initrd and uploads)"),
    ("load", "load <plugin> [version]", "load a plugin from the store (highest version by default)"),
    ("unload", "unload [-r] <plugin>", "unload a plugin; -r unloads the plugins that depend on it first"),
    (
        "swap",
        "swap <plugin> <version> [<plugin> <version> ...]",
        "replace loaded plugins by other versions in one transaction, carrying their state",
    ),
    ("info", "info <plugin>", "everything about one loaded plugin"),
    (
        "upload",
        "upload [hold|release]",
        "COM2 uploads: frames answered and refused, bytes skipped, the receive ring; \
         `hold` stops decoding COM2 (the sender is held back), `release` resumes",
    ),
];

/// Registers the commands above with the shell.
pub fn register() {
    for (i, (name, usage, help)) in BUILTINS.iter().enumerate() {
        let text = alloc::format!("{help}\nusage: {usage}");
        if let Err(e) = crate::shell::register(0, name, &text, builtin, i) {
            log::warn!("shell command `{name}` is not available: {e}");
        }
    }
}

fn builtin(index: usize, args: &str) -> Result<(), String> {
    run(BUILTINS[index].0, args)
}

fn us_of(tsc: u64) -> u64 {
    match crate::time::tsc_hz() {
        0 => 0,
        hz => (tsc as u128 * 1_000_000 / hz as u128) as u64,
    }
}

/// Runs builtin `cmd` of the table above.
fn run(cmd: &str, args: &str) -> Result<(), String> {
    let mut words = args.split_whitespace();
    match cmd {
        "plugins" => {
            plugins();
            Ok(())
        }
        "store" => {
            store();
            Ok(())
        }
        "load" => match (words.next(), words.next(), words.next()) {
            (Some(name), version, None) => {
                registry::load(name, version).map(|(n, v)| println!("loaded {n} {v}")).map_err(|e| e.to_string())
            }
            _ => Err("usage: load <plugin> [version]".into()),
        },
        "unload" => {
            let (recursive, name) = match (words.next(), words.next(), words.next()) {
                (Some("-r"), Some(n), None) => (true, n),
                (Some(n), None, None) if n != "-r" => (false, n),
                _ => return Err("usage: unload [-r] <plugin>".into()),
            };
            registry::unload(name, recursive)
                .map(|done| println!("unloaded {}", done.join(", ")))
                .map_err(|e| e.to_string())
        }
        "swap" => swap(words.collect()),
        "info" => match (words.next(), words.next()) {
            (Some(name), None) => info(name),
            _ => Err("usage: info <plugin>".into()),
        },
        "upload" => upload(args),
        _ => unreachable!("only the names of BUILTINS are registered"),
    }
}

/// `a, b`, or `-` for none.
fn listed(l: &[String]) -> String {
    if l.is_empty() {
        "-".to_string()
    } else {
        l.join(", ")
    }
}

fn plugins() {
    let list = registry::list();
    if list.is_empty() {
        println!("no plugins loaded; `store` lists what can be loaded");
    }
    for p in list {
        println!(
            "{} {} [{}] at {:#x}, {} KiB, loaded in {} us, heap {} bytes; provides: {}; requires: {}",
            p.name,
            p.version,
            p.state,
            p.base,
            p.size / 1024,
            us_of(p.load_tsc),
            p.heap.bytes,
            listed(&p.provides),
            listed(&p.requires),
        );
    }
}

fn upload(args: &str) -> Result<(), String> {
    use loader_core::plugin::upload::Request;
    match Request::parse(args)? {
        Request::Status => println!("{}", super::upload::stats()),
        Request::Hold => {
            super::upload::hold();
            println!("holding COM2: what arrives waits, and the sender is held back, until `upload release`");
        }
        Request::Release => {
            super::upload::release();
            println!("released COM2: decoding what waited");
        }
    }
    Ok(())
}

fn store() {
    for (name, version, source, size) in store::list() {
        println!(
            "{name} {version} ({} bytes, {})",
            size,
            if source == store::Source::Initrd { "initrd" } else { "uploaded" }
        );
    }
    for (name, size) in super::guest_files::list() {
        println!("guest file uploads/{name} ({size} bytes, uploaded, not signed)");
    }
}

fn swap(words: Vec<&str>) -> Result<(), String> {
    if words.is_empty() || !words.len().is_multiple_of(2) {
        return Err("usage: swap <plugin> <version> [<plugin> <version> ...]".into());
    }
    let pairs: Vec<(&str, &str)> = words.chunks(2).map(|c| (c[0], c[1])).collect();
    registry::swap_all(&pairs)
        .map(|()| println!("swapped (world stopped for {} us)", us_of(registry::last_blackout_tsc())))
        .map_err(|e| e.to_string())
}

fn info(name: &str) -> Result<(), String> {
    let want = loader_core::plugin::resolve::plugin_name(name);
    let Some(p) = registry::list().into_iter().find(|p| p.name == want) else {
        return Err(registry::Error::NotLoaded(want).to_string());
    };
    println!("{} {} [{}]", p.name, p.version, p.state);
    println!("  image: {:#x}..{:#x} ({} bytes)", p.base, p.base + p.size, p.size);
    println!("  loaded at {} us after boot, load and link took {} us", p.loaded_at_us, us_of(p.load_tsc));
    println!("  heap: {} on the loader's heap (account of plugin id {})", p.heap, p.id);
    println!("  provides: {}", listed(&p.provides));
    println!("  requires: {}", listed(&p.requires));
    for (c, h) in p.commands {
        println!("  command {c}: {h}");
    }
    Ok(())
}
