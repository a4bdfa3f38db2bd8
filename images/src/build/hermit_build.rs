//! Building the Hermit apps (`images/guests/hermit/`) that the `guests`
//! image's initrd carries under `guests/hermit/<app>.elf`.
//!
//! A Hermit app is one ELF: the app and its std, linked with the Hermit
//! kernel as a library. Three steps make them, all with the Hermit
//! toolchain (`nightly-2025-03-15`, which `make setup` installs; called as
//! `rustup run <toolchain> …`, the same as `cargo +<toolchain> …`, so the
//! project's stable toolchain stays the default):
//!
//! 1. the kernel's source: `cargo metadata` on the pinned manifest
//!    `images/guests/hermit/kernel/` fetches hermit-kernel 0.11.0 from
//!    crates.io into cargo's registry and names its folder;
//! 2. the kernel: built there with its own Cargo.lock for
//!    `x86_64-unknown-none` (features `pci,acpi,fsgsbase,smp`, no default
//!    ones: those add a network stack and virtio drivers uhyve does not
//!    have), then turned into `images/out/hermit/libhermit.a` by the
//!    archive step (`hermit_archive`; the toolchain's llvm-objcopy
//!    renames);
//! 3. the apps: one cargo build of their workspace for
//!    `x86_64-unknown-hermit`, with std built from rust-src, each linking
//!    that library (their build script); kept as `images/out/hermit/<app>`
//!    and checked as uhyve's loader would (`hermit_elf`).
//!
//! Steps 2 and 3 are skipped when their stamp (`<output>.from`) says the
//! output was made from the same inputs: the toolchain's `rustc -vV`, the
//! kernel manifest and lock, the features and flags, the archive step's
//! code, and for the apps the library's bytes and every file of their
//! workspace. So an unchanged tree runs no cargo at all here. Hermit's
//! libm side-car (hermit-builtins) is not on crates.io and is left out:
//! none of the apps calls a libm function.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::guest_build::{initrd_path, GuestFile};
use super::hermit_archive as archive;
use super::hermit_elf::check_hermit_app;
use super::shared::{made_from_other, record_stamp, target_root, KERNEL_TARGET};
use super::{Error, Result};
use crate::{out_dir, shown, workspace_root};

/// The Hermit toolchain: the nightly that hermit-kernel 0.11.0 names in
/// its rust-toolchain.toml.
pub const TOOLCHAIN: &str = "nightly-2025-03-15";
/// The kernel version; images/guests/hermit/kernel/Cargo.toml pins it.
pub const KERNEL_VERSION: &str = "0.11.0";
/// `smp` for more than one vCPU; `pci` and `acpi` are probed and skipped
/// under uhyve; `fsgsbase` for the thread-local storage of the app.
pub const KERNEL_FEATURES: &str = "pci,acpi,fsgsbase,smp";
/// Hermit's own build passes this flag to the kernel; it is built the way
/// its authors build it.
const KERNEL_RUSTFLAGS: &str = "-Zmutable-noalias=no";
pub const APP_TARGET: &str = "x86_64-unknown-hermit";
/// Every app, one per workspace member (a host test keeps them in step).
pub const APPS: &[&str] = &["files", "hello", "threads", "timers"];
/// The images whose initrd carries the apps: those that run Hermit guests.
pub const IMAGES: &[&str] = &["guests"];
/// The crates.io registry, as cargo metadata names a package's source.
const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";
/// The archive step's decisions are an input of the library.
const ARCHIVE_STEP: &str = include_str!("hermit_archive.rs");

/// The apps' workspace.
pub fn source_dir() -> PathBuf {
    workspace_root().join("images/guests/hermit")
}

/// `images/out/hermit/`: the library and the apps.
pub fn hermit_out() -> PathBuf {
    out_dir().join("hermit")
}

/// The cargo target folders of the kernel and of the apps.
pub fn target_dirs() -> [PathBuf; 2] {
    [target_root().join("hermit-kernel"), target_root().join("hermit-apps")]
}

/// Where an app sits in the initrd: `guests/hermit/<app>.elf`.
pub fn app_initrd_path(app: &str) -> String {
    initrd_path(&format!("hermit/{app}"))
}

/// The Hermit toolchain's `tool`. The runner itself may run under cargo,
/// whose RUSTC and flags are the stable toolchain's: those are dropped.
fn toolchain_command(tool: &str) -> Command {
    let mut command = Command::new("rustup");
    command.args(["run", TOOLCHAIN, tool]);
    for var in ["RUSTC", "RUSTC_WRAPPER", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_TARGET_DIR"] {
        command.env_remove(var);
    }
    command
}

/// Runs a command with its stderr on the terminal; returns its stdout.
fn run(command: &mut Command, shown_as: &str) -> Result<String> {
    let out = command.stderr(Stdio::inherit()).output().map_err(|e| Error::io(format!("starting {shown_as}"), e))?;
    if !out.status.success() {
        return Err(Error::Tool { command: shown_as.into(), detail: format!("{} (its errors are above)", out.status) });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The Hermit toolchain's `rustc -vV` and its LLVM tools' folder; an
/// error that says to run `make setup` when either is missing.
fn toolchain() -> Result<(String, PathBuf)> {
    let setup = format!("the Hermit toolchain {TOOLCHAIN} is missing: `make setup` installs it (rustup)");
    let listed = Command::new("rustup").args(["toolchain", "list"]).output();
    if !listed.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.starts_with(TOOLCHAIN))) {
        return Err(Error::Environment(setup));
    }
    let version = run(toolchain_command("rustc").arg("-vV"), "rustc -vV")?;
    let sysroot = run(toolchain_command("rustc").arg("--print=sysroot"), "rustc --print=sysroot")?;
    let host = version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .ok_or_else(|| Error::Environment("`rustc -vV` names no host".into()))?;
    let bin = Path::new(sysroot.trim()).join("lib/rustlib").join(host).join("bin");
    if !bin.join("llvm-objcopy").is_file() {
        return Err(Error::Environment(format!(
            "{} lacks llvm-objcopy: `make setup` adds llvm-tools to {TOOLCHAIN}",
            bin.display()
        )));
    }
    Ok((version, bin))
}

/// A digest of `parts` for a stamp. DefaultHasher may change with the
/// runner's Rust release; that only costs one rebuild.
fn digest<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut hasher = DefaultHasher::new();
    for part in parts {
        hasher.write_usize(part.len());
        hasher.write(part);
    }
    hasher.finish()
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

/// Every file of the apps' workspace but the kernel manifest's, relative
/// to it and sorted, so that a stamp does not depend on listing order.
pub fn app_sources(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries = fs::read_dir(&folder).map_err(|e| Error::io(format!("reading {}", folder.display()), e))?;
        for entry in entries {
            let path = entry.map_err(|e| Error::io(format!("reading {}", folder.display()), e))?.path();
            let relative = path.strip_prefix(dir).expect("below its folder").to_path_buf();
            if path.is_dir() {
                // `target` only if someone built the apps by hand there.
                if relative != Path::new("kernel") && relative != Path::new("target") {
                    pending.push(path);
                }
            } else {
                files.push(relative);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// What the library is made from, as its stamp's text.
pub fn kernel_stamp(toolchain: &str, manifest: &[u8], lock: &[u8]) -> String {
    format!(
        "toolchain {}\nhermit-kernel {KERNEL_VERSION} (manifest and lock {:016x})\nfeatures {KERNEL_FEATURES}\n\
         rustflags {KERNEL_RUSTFLAGS}\narchive step {:016x}\n",
        toolchain.lines().next().unwrap_or_default(),
        digest([manifest, lock]),
        digest([ARCHIVE_STEP.as_bytes()]),
    )
}

/// What the apps are made from: the library's stamp and bytes and every
/// source file (path and bytes).
pub fn apps_stamp(kernel_stamp: &str, library: &[u8], sources: &[(String, Vec<u8>)]) -> String {
    let files = sources.iter().flat_map(|(path, bytes)| [path.as_bytes(), bytes.as_slice()]);
    format!("{kernel_stamp}library {:016x}\nsources {:016x}\n", digest([library]), digest(files))
}

/// The folder of the pinned kernel's source, from `cargo metadata`'s
/// JSON: the package must be hermit-kernel KERNEL_VERSION from crates.io.
pub fn kernel_source(metadata: &str) -> Result<PathBuf, String> {
    let json: serde_json::Value = serde_json::from_str(metadata).map_err(|e| format!("unreadable metadata: {e}"))?;
    let packages = json["packages"].as_array().ok_or("metadata lists no packages")?;
    let kernel = packages
        .iter()
        .find(|p| p["name"] == "hermit-kernel")
        .ok_or("the kernel manifest does not depend on hermit-kernel")?;
    if kernel["version"] != KERNEL_VERSION || kernel["source"] != CRATES_IO {
        return Err(format!(
            "hermit-kernel is {} from {}, not {KERNEL_VERSION} from crates.io",
            kernel["version"], kernel["source"]
        ));
    }
    let manifest = kernel["manifest_path"].as_str().ok_or("hermit-kernel has no manifest path")?;
    Path::new(manifest).parent().map(Path::to_path_buf).ok_or_else(|| format!("odd manifest path {manifest}"))
}

/// The file cargo's JSON messages report for the target `name` whose
/// path ends in `suffix`.
fn artifact(messages: &str, name: &str, suffix: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .flat_map(|m| {
            let files = m["filenames"].as_array().cloned().unwrap_or_default();
            files.into_iter().chain(std::iter::once(m["executable"].clone()))
        })
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.to_string_lossy().ends_with(suffix))
}

/// Fetches and builds the kernel; returns the raw `libhermit.a`.
fn cargo_build_kernel() -> Result<PathBuf> {
    let manifest = source_dir().join("kernel/Cargo.toml");
    let mut metadata = toolchain_command("cargo");
    metadata.args(["metadata", "--locked", "--format-version", "1", "--manifest-path"]).arg(&manifest);
    let source = kernel_source(&run(&mut metadata, "cargo metadata (the pinned hermit-kernel)")?)
        .map_err(|e| Error::Recipe(format!("{}: {e}", shown(&manifest))))?;
    println!("hermit: kernel source {}", source.display());
    let args = [
        "build",
        "--quiet",
        "--release",
        "--locked",
        "--target",
        KERNEL_TARGET,
        "-Zbuild-std=core,alloc",
        "-Zbuild-std-features=compiler-builtins-mem",
        "--no-default-features",
        "--features",
        KERNEL_FEATURES,
        "--message-format=json-render-diagnostics",
    ];
    let shown_as = format!("cargo +{TOOLCHAIN} {} (in {})", args.join(" "), source.display());
    let mut build = toolchain_command("cargo");
    // In the kernel's folder, so that its cargo configuration applies
    // and the project's does not.
    build.args(args).arg("--target-dir").arg(&target_dirs()[0]).env("RUSTFLAGS", KERNEL_RUSTFLAGS).current_dir(&source);
    let messages = run(&mut build, &shown_as)?;
    artifact(&messages, "hermit", "libhermit.a")
        .ok_or_else(|| Error::Tool { command: shown_as, detail: "cargo reported no libhermit.a".into() })
}

/// The archive step: `raw` renamed and marked into `library`, written
/// beside it and renamed into place, so no half-made library is left.
/// The rename map stays beside it (`libhermit.renames`), to look up what
/// a kernel symbol in an app is called.
fn make_library(raw: &Path, library: &Path, llvm_bin: &Path) -> Result<()> {
    let recipe = |e: String| Error::Recipe(format!("{}: {e}", shown(raw)));
    let members = archive::members(&read(raw)?).map_err(recipe)?;
    let exports = archive::exports(&members);
    let renames = archive::renames(&members, &exports);
    let renames_file = library.with_extension("renames");
    fs::write(&renames_file, archive::redefine_syms_file(&renames).map_err(recipe)?)
        .map_err(|e| Error::io(format!("writing {}", renames_file.display()), e))?;
    let partial = library.with_extension("a.partial");
    let mut objcopy = Command::new(llvm_bin.join("llvm-objcopy"));
    objcopy.arg(format!("--redefine-syms={}", renames_file.display())).arg(raw).arg(&partial);
    run(&mut objcopy, "llvm-objcopy --redefine-syms")?;
    let mut bytes = read(&partial)?;
    let marked = archive::mark_hermit_osabi(&mut bytes).map_err(recipe)?;
    archive::check_processed(&bytes, &exports, &renames).map_err(recipe)?;
    fs::write(&partial, &bytes).map_err(|e| Error::io(format!("writing {}", partial.display()), e))?;
    fs::rename(&partial, library).map_err(|e| Error::io(format!("renaming {}", partial.display()), e))?;
    println!(
        "hermit: {}: {} members ({marked} marked Hermit), {} exports kept, {} symbols renamed",
        shown(library),
        members.len(),
        exports.len(),
        renames.len()
    );
    Ok(())
}

/// Builds the apps' workspace; returns each app's executable.
fn cargo_build_apps() -> Result<Vec<(String, PathBuf)>> {
    let args = [
        "build",
        "--quiet",
        "--release",
        "--locked",
        "--workspace",
        "--target",
        APP_TARGET,
        "-Zbuild-std=std,panic_abort",
        "-Zbuild-std-features=compiler-builtins-mem",
        "--message-format=json-render-diagnostics",
    ];
    let shown_as = format!("cargo +{TOOLCHAIN} {} (in images/guests/hermit)", args.join(" "));
    let mut build = toolchain_command("cargo");
    build
        .args(args)
        .arg("--target-dir")
        .arg(&target_dirs()[1])
        .env("HERMIT_LIB_DIR", hermit_out())
        .current_dir(source_dir());
    let messages = run(&mut build, &shown_as)?;
    APPS.iter()
        .map(|app| {
            artifact(&messages, app, &format!("/{app}")).map(|path| (app.to_string(), path)).ok_or_else(|| {
                Error::Tool { command: shown_as.clone(), detail: format!("cargo reported no executable `{app}`") }
            })
        })
        .collect()
}

/// Brings `libhermit.a` up to date; returns its stamp.
fn build_library(version: &str, llvm_bin: &Path) -> Result<String> {
    let kernel_dir = source_dir().join("kernel");
    let stamp = kernel_stamp(version, &read(&kernel_dir.join("Cargo.toml"))?, &read(&kernel_dir.join("Cargo.lock"))?);
    let library = hermit_out().join("libhermit.a");
    if !made_from_other(&library, &stamp) {
        println!("hermit: {} up to date", shown(&library));
        return Ok(stamp);
    }
    println!("hermit: building hermit-kernel {KERNEL_VERSION} ({KERNEL_FEATURES}) with {TOOLCHAIN}");
    let started = Instant::now();
    let raw = cargo_build_kernel()?;
    make_library(&raw, &library, llvm_bin)?;
    record_stamp(&library, &stamp)?;
    println!("hermit: kernel library made in {:.1} s", started.elapsed().as_secs_f64());
    Ok(stamp)
}

/// Brings every app in `images/out/hermit/` up to date.
fn build_apps(kernel_stamp: &str) -> Result<()> {
    let dir = source_dir();
    let sources = app_sources(&dir)?
        .into_iter()
        .map(|p| Ok((p.display().to_string(), read(&dir.join(&p))?)))
        .collect::<Result<Vec<_>>>()?;
    let stamp = apps_stamp(kernel_stamp, &read(&hermit_out().join("libhermit.a"))?, &sources);
    let outputs: Vec<PathBuf> = APPS.iter().map(|app| hermit_out().join(app)).collect();
    if !outputs.iter().any(|o| made_from_other(o, &stamp)) {
        println!("hermit: apps up to date ({})", APPS.join(", "));
        return Ok(());
    }
    println!("hermit: building the apps ({}) for {APP_TARGET}, std from rust-src", APPS.join(", "));
    let started = Instant::now();
    for ((_, built), output) in cargo_build_apps()?.iter().zip(&outputs) {
        fs::copy(built, output).map_err(|e| Error::io(format!("copying {}", built.display()), e))?;
        record_stamp(output, &stamp)?;
    }
    println!("hermit: apps built in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Builds what is stale, checks every app and returns them as the initrd
/// carries them, in [`APPS`] order.
pub fn build_hermit() -> Result<Vec<GuestFile>> {
    let (version, llvm_bin) = toolchain()?;
    fs::create_dir_all(hermit_out()).map_err(|e| Error::io(format!("creating {}", hermit_out().display()), e))?;
    let kernel_stamp = build_library(&version, &llvm_bin)?;
    build_apps(&kernel_stamp)?;
    let mut apps = Vec::new();
    for app in APPS {
        let path = hermit_out().join(app);
        let bytes = read(&path)?;
        let checked = check_hermit_app(&bytes)
            .map_err(|e| Error::Recipe(format!("Hermit app {app} ({}) would not boot: {e}", shown(&path))))?;
        let (major, minor, patch) = checked.kernel;
        println!(
            "hermit: {app}: {} bytes, {} KiB in memory, entry {:#x}, notes: entry version {}, Hermit {major}.{minor}.{patch}; \
             {} relocations",
            bytes.len(),
            checked.memory_size / 1024,
            checked.entry,
            super::hermit_elf::ENTRY_VERSION,
            checked.relocations
        );
        apps.push(GuestFile { name: format!("hermit/{app}"), path: app_initrd_path(app), bytes });
    }
    Ok(apps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::recipes::RECIPES;

    #[test]
    fn the_app_list_is_the_workspace_and_the_images_exist() {
        let manifest = fs::read_to_string(source_dir().join("Cargo.toml")).unwrap();
        let members = manifest.lines().find_map(|l| l.strip_prefix("members = ")).expect("a members line");
        let mut listed: Vec<String> =
            members.trim_matches(['[', ']']).split(", ").map(|m| m.trim_matches('"').into()).collect();
        listed.sort();
        assert_eq!(listed, APPS, "APPS and the workspace members differ (keep APPS sorted)");
        for app in APPS {
            assert!(source_dir().join(app).join("src/main.rs").is_file(), "{app} has no src/main.rs");
        }
        for image in IMAGES {
            assert!(RECIPES.iter().any(|r| r.name == *image), "no image `{image}`");
        }
    }

    #[test]
    fn the_kernel_is_pinned_to_the_version_the_runner_names() {
        let dir = source_dir().join("kernel");
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("hermit-kernel = \"={KERNEL_VERSION}\"")),
            "Cargo.toml pins another version"
        );
        let lock = fs::read_to_string(dir.join("Cargo.lock")).unwrap();
        let locked =
            format!("name = \"hermit-kernel\"\nversion = \"{KERNEL_VERSION}\"\nsource = \"{CRATES_IO}\"\nchecksum = ");
        assert!(lock.contains(&locked), "Cargo.lock does not lock hermit-kernel {KERNEL_VERSION} from crates.io");
    }

    #[test]
    fn neither_workspace_holds_the_hermit_crates() {
        let root = fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        assert!(!root.contains("images/guests"), "the root workspace must not build the Hermit crates");
        assert!(fs::read_to_string(source_dir().join("Cargo.toml")).unwrap().contains("[workspace]"));
        let kernel = fs::read_to_string(source_dir().join("kernel/Cargo.toml")).unwrap();
        assert!(kernel.lines().any(|l| l == "[workspace]"), "the kernel manifest must be a workspace of its own");
    }

    const METADATA: &str = r#"{"packages": [
        {"name": "hermit-kernel-source", "version": "0.0.0", "source": null, "manifest_path": "/t/kernel/Cargo.toml"},
        {"name": "hermit-kernel", "version": "0.11.0",
         "source": "registry+https://github.com/rust-lang/crates.io-index",
         "manifest_path": "/c/registry/src/index/hermit-kernel-0.11.0/Cargo.toml"}]}"#;

    #[test]
    fn the_kernel_source_is_the_pinned_crates_io_package() {
        assert_eq!(kernel_source(METADATA).unwrap(), Path::new("/c/registry/src/index/hermit-kernel-0.11.0"));
        let other = METADATA.replace("\"0.11.0\"", "\"0.11.1\"");
        assert!(kernel_source(&other).unwrap_err().contains("is \"0.11.1\""));
        let git = METADATA.replace("registry+https://github.com/rust-lang/crates.io-index", "git+https://x/kernel");
        assert!(kernel_source(&git).unwrap_err().contains("not 0.11.0 from crates.io"));
        let without = r#"{"packages": [{"name": "other"}]}"#;
        assert!(kernel_source(without).unwrap_err().contains("does not depend on hermit-kernel"));
    }

    #[test]
    fn every_input_changes_its_stamp() {
        let base = kernel_stamp("rustc 1.87.0-nightly (ecade534c 2025-03-14)\nbinary: rustc", b"toml", b"lock");
        assert!(base.starts_with("toolchain rustc 1.87.0-nightly (ecade534c 2025-03-14)\nhermit-kernel 0.11.0"));
        assert!(base.contains("features pci,acpi,fsgsbase,smp\n"));
        assert_eq!(base, kernel_stamp("rustc 1.87.0-nightly (ecade534c 2025-03-14)\nbinary: rustc", b"toml", b"lock"));
        for other in [
            kernel_stamp("rustc 1.88.0-nightly", b"toml", b"lock"),
            kernel_stamp("rustc 1.87.0-nightly (ecade534c 2025-03-14)", b"toml2", b"lock"),
            kernel_stamp("rustc 1.87.0-nightly (ecade534c 2025-03-14)", b"toml", b"lock2"),
        ] {
            assert_ne!(base, other);
        }
        let sources = vec![("hello/src/main.rs".to_string(), b"fn main() {}".to_vec())];
        let apps = apps_stamp(&base, b"lib", &sources);
        assert!(apps.starts_with(&base));
        assert_eq!(apps, apps_stamp(&base, b"lib", &sources));
        assert_ne!(apps, apps_stamp(&base, b"lib2", &sources));
        let edited = vec![("hello/src/main.rs".to_string(), b"fn main() { }".to_vec())];
        assert_ne!(apps, apps_stamp(&base, b"lib", &edited));
        let moved = vec![("timers/src/main.rs".to_string(), b"fn main() {}".to_vec())];
        assert_ne!(apps, apps_stamp(&base, b"lib", &moved));
        // A byte moved from one file to the next is another tree.
        let split =
            |a: &str, b: &str| vec![("a".to_string(), a.as_bytes().to_vec()), ("b".to_string(), b.as_bytes().to_vec())];
        assert_ne!(apps_stamp(&base, b"", &split("xy", "z")), apps_stamp(&base, b"", &split("x", "yz")));
    }

    #[test]
    fn the_sources_are_the_workspace_files_but_the_kernel_manifest() {
        let sources = app_sources(&source_dir()).unwrap();
        for expected in ["Cargo.toml", "Cargo.lock", "link_hermit.rs", "hello/src/main.rs", "timers/Cargo.toml"] {
            assert!(sources.contains(&PathBuf::from(expected)), "{expected} is not an app source");
        }
        assert!(!sources.iter().any(|p| p.starts_with("kernel")), "the kernel manifest is the library's input");
        assert!(sources.windows(2).all(|w| w[0] < w[1]), "sorted");
    }

    #[test]
    fn cargo_artifacts_are_found_by_target_and_file() {
        let messages = [
            r#"{"reason":"compiler-artifact","target":{"name":"hermit"},"filenames":["/t/libhermit.rlib","/t/libhermit.a"],"executable":null}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"hello"},"filenames":["/t/hello"],"executable":"/t/hello"}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");
        assert_eq!(artifact(&messages, "hermit", "libhermit.a"), Some(PathBuf::from("/t/libhermit.a")));
        assert_eq!(artifact(&messages, "hello", "/hello"), Some(PathBuf::from("/t/hello")));
        assert_eq!(artifact(&messages, "threads", "/threads"), None);
    }

    #[test]
    fn setup_installs_the_toolchain_the_runner_calls() {
        let setup = fs::read_to_string(workspace_root().join("images/setup.sh")).unwrap();
        assert!(
            setup.lines().any(|l| l == format!("hermit_toolchain={TOOLCHAIN}")),
            "images/setup.sh installs another"
        );
        let pinned = fs::read_to_string(workspace_root().join("rust-toolchain.toml")).unwrap();
        assert!(!pinned.contains(TOOLCHAIN), "the Hermit toolchain must not become the project's default");
    }

    #[test]
    fn apps_go_under_the_hermit_folder_of_the_guests() {
        assert_eq!(app_initrd_path("hello"), "guests/hermit/hello.elf");
    }
}
