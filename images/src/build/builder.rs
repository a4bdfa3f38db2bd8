//! Building images: the loader (by cargo, twice: test images get the one
//! with the in-image suites, feature `ktest`), every plugin variant
//! (`plugin_build`), the test guests (`guest_build`) and the Hermit apps
//! (`hermit_build`, for the images that run them), then for every
//! recipe a directory `images/out/<name>/` with `loader.elf` (stripped),
//! `loader.debug.elf` (its twin with symbols and debug info, for GDB),
//! `initrd` (the plugin store and the guests) and `cmdline`, and a GRUB
//! ISO `images/out/<name>.iso` made from the shipped pieces.
//!
//! Only stale pieces are rebuilt, so a repeated `runner build` costs one
//! no-op cargo call: `loader.elf` and the ISO are compared by mtime with
//! their inputs; `initrd` and `cmdline` are rewritten only when their bytes
//! change, which keeps their mtimes (and so the ISO) put otherwise.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use super::guest_build::{self, GuestFile};
use super::hermit_build;
use super::plugin_build::{self, StoreFile};
use super::recipes::{self, Recipe, RECIPES};
use super::shared::{cargo, is_stale, mtime, write_if_changed, KERNEL_TARGET};
use super::strip;
use super::{Error, Result};
use crate::machine::firmware::firmware_for;
use crate::machine::layout::QemuLayout;
use crate::machine::qemu::{Accel, QemuBoot};
use crate::machine::Serial;
use crate::{out_dir, shown, workspace_root};

pub const LOADER_FILE: &str = "loader.elf";
pub const LOADER_DEBUG_FILE: &str = "loader.debug.elf";
pub const INITRD_FILE: &str = "initrd";
pub const CMDLINE_FILE: &str = "cmdline";

/// The built pieces of one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub name: String,
    pub dir: PathBuf,
    pub iso: PathBuf,
}

impl Image {
    pub fn of(name: &str) -> Image {
        Image { name: name.to_string(), dir: out_dir().join(name), iso: out_dir().join(format!("{name}.iso")) }
    }

    pub fn loader(&self) -> PathBuf {
        self.dir.join(LOADER_FILE)
    }

    /// The unstripped twin of `loader()`, for GDB and the profiler.
    pub fn loader_debug(&self) -> PathBuf {
        self.dir.join(LOADER_DEBUG_FILE)
    }

    pub fn initrd(&self) -> PathBuf {
        self.dir.join(INITRD_FILE)
    }

    /// How the image boots in QEMU: its loader, initrd and firmware, with
    /// no COM2, no reboot and no icount, which callers change as needed.
    pub fn qemu_boot<'a>(
        &self,
        cmdline: &'a str,
        layout: QemuLayout,
        accel: Accel,
        serial: Serial<'a>,
    ) -> QemuBoot<'a> {
        QemuBoot {
            kernel: self.loader(),
            initrd: self.initrd(),
            cmdline,
            layout,
            accel,
            serial,
            reboots: false,
            icount: false,
            com2: None,
            firmware: firmware_for(&self.name),
        }
    }

    /// The command line the image was built with, as the boot uses it.
    pub fn cmdline(&self) -> Result<String> {
        let path = self.dir.join(CMDLINE_FILE);
        fs::read_to_string(&path)
            .map(|s| s.trim().to_string())
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))
    }
}

/// Builds the loader, the plugins, the guests and every image; prints each
/// piece it (re)builds.
pub fn build_all() -> Result<()> {
    recipes::validate_all()?;
    let plain = cargo_build_loader(&[], "loader.elf")?;
    let with_tests = cargo_build_loader(&["--features", "ktest"], "loader-ktest.elf")?;
    let store = plugin_build::build_plugins()?;
    let guests = guest_build::build_guests()?;
    let with_hermit: Vec<GuestFile> = guests.iter().cloned().chain(hermit_build::build_hermit()?).collect();
    let mut built = 0;
    for recipe in RECIPES {
        let loader = if recipe.runs_suites() { &with_tests } else { &plain };
        let carried = if hermit_build::IMAGES.contains(&recipe.name) { &with_hermit } else { &guests };
        let written = build_image(recipe, loader, &strip::strip(loader)?, &store, carried)?;
        if !written.is_empty() {
            let names: Vec<String> = written.iter().map(|p| shown(p)).collect();
            println!("build: {}", names.join(" "));
            built += 1;
        }
    }
    if built == 0 {
        println!("build: all {} images up to date", RECIPES.len());
    }
    Ok(())
}

/// Builds the loader with `extra` cargo arguments and keeps the binary as
/// `images/out/<kept>` (rewritten only when it changed, so its mtime tells
/// the images whether they are stale): both builds leave theirs at the same
/// `release/loader`.
fn cargo_build_loader(extra: &[&str], kept: &str) -> Result<PathBuf> {
    let mut args = vec!["build", "--release", "-p", "loader", "--bin", "loader", "--target", KERNEL_TARGET];
    args.extend_from_slice(extra);
    args.push("--message-format=json-render-diagnostics");
    let command = || format!("cargo {}", args.join(" "));
    let out = Command::new(cargo())
        .args(&args)
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::io("starting cargo", e))?;
    if !out.status.success() {
        return Err(Error::Tool { command: command(), detail: format!("{} (its errors are above)", out.status) });
    }
    let built = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "loader")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| Error::Tool { command: command(), detail: "cargo reported no loader executable".into() })?;
    let bytes = fs::read(&built).map_err(|e| Error::io(format!("reading {}", built.display()), e))?;
    fs::create_dir_all(out_dir()).map_err(|e| Error::io(format!("creating {}", out_dir().display()), e))?;
    let path = out_dir().join(kept);
    write_if_changed(&path, &bytes)?;
    Ok(path)
}

/// Brings one image up to date from the loader's `debug` build and its
/// `stripped` twin; returns the paths it wrote.
fn build_image(
    recipe: &Recipe,
    debug: &Path,
    stripped: &Path,
    store: &[StoreFile],
    guests: &[GuestFile],
) -> Result<Vec<PathBuf>> {
    let image = Image::of(recipe.name);
    fs::create_dir_all(&image.dir).map_err(|e| Error::io(format!("creating {}", image.dir.display()), e))?;
    let mut written = Vec::new();

    for (from, to) in [(stripped, image.loader()), (debug, image.loader_debug())] {
        let source_time = mtime(from).ok_or_else(|| {
            Error::Environment(format!("the build reported success but {} is missing", from.display()))
        })?;
        if is_stale(mtime(&to), &[source_time]) {
            fs::copy(from, &to).map_err(|e| Error::io(format!("copying {}", from.display()), e))?;
            written.push(to);
        }
    }
    if write_if_changed(&image.initrd(), &initrd_bytes(recipe.name, store, guests)?)? {
        written.push(image.initrd());
    }
    let cmdline_path = image.dir.join(CMDLINE_FILE);
    if write_if_changed(&cmdline_path, format!("{}\n", recipe.cmdline()).as_bytes())? {
        written.push(cmdline_path.clone());
    }

    let inputs: Vec<SystemTime> =
        [image.loader(), image.initrd(), cmdline_path].iter().filter_map(|p| mtime(p)).collect();
    if is_stale(mtime(&image.iso), &inputs) {
        make_iso(&image, &recipe.cmdline(), &image.iso)?;
        written.push(image.iso.clone());
    }
    Ok(written)
}

/// The initrd: a ustar archive that the loader reads as its plugin store:
/// `image.txt` with the image's name, then every store file (signed
/// plugins under `plugins/`), then every test guest (`guests/<name>.elf`,
/// unsigned: the store indexes only `plugins/`). Fixed metadata (mtime 0,
/// owner 0) keeps it byte-identical across builds.
pub fn initrd_bytes(name: &str, store: &[StoreFile], guests: &[GuestFile]) -> Result<Vec<u8>> {
    let image_txt = format!("{name}\n");
    let files = std::iter::once(("image.txt", image_txt.as_bytes()))
        .chain(store.iter().map(|f| (f.path.as_str(), f.bytes.as_slice())))
        .chain(guests.iter().map(|g| (g.path.as_str(), g.bytes.as_slice())));
    let mut archive = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        archive
            .append_data(&mut header, path, bytes)
            .map_err(|e| Error::io(format!("adding {path} to the initrd archive"), e))?;
    }
    archive.into_inner().map_err(|e| Error::io("writing the initrd archive", e))
}

/// GRUB's configuration: boot at once, loader plus initrd as module.
pub fn grub_cfg(cmdline: &str) -> String {
    format!(
        "set timeout=0\n\
         multiboot2 /boot/{LOADER_FILE} {cmdline}\n\
         module2 /boot/{INITRD_FILE} initrd\n\
         boot\n"
    )
}

/// An ISO of `image`'s loader and initrd that boots with `cmdline`, at
/// `iso` (beside it a staging folder while it is made): the image's own,
/// or one for a single run that adds to the recipe's command line (a
/// Bochs boot's command line is in the ISO).
pub fn make_iso(image: &Image, cmdline: &str, iso: &Path) -> Result<()> {
    let staging = iso.with_extension("iso-staging");
    let io = |what: &str, e| Error::io(format!("{what} in {}", staging.display()), e);
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| io("clearing", e))?;
    }
    let grub_dir = staging.join("boot").join("grub");
    fs::create_dir_all(&grub_dir).map_err(|e| io("creating boot/grub", e))?;
    fs::copy(image.loader(), staging.join("boot").join(LOADER_FILE)).map_err(|e| io("copying", e))?;
    fs::copy(image.initrd(), staging.join("boot").join(INITRD_FILE)).map_err(|e| io("copying", e))?;
    fs::write(grub_dir.join("grub.cfg"), grub_cfg(cmdline)).map_err(|e| io("writing", e))?;

    // Written beside the ISO and renamed into place, so an interrupted
    // build never leaves a half-written ISO that looks up to date.
    let partial = iso.with_extension("iso.partial");
    let mut command = Command::new("grub-mkrescue");
    // Without locales, fonts, themes and unused modules the ISO shrinks
    // from 9.5 MB to under 1 MB; grub.cfg needs only these commands.
    command
        .args(["--locales=", "--fonts=", "--themes="])
        .arg("--install-modules=multiboot2 normal configfile")
        .arg("-o")
        .arg(&partial)
        .arg(&staging);
    run_captured(&mut command, "grub-mkrescue")?;
    fs::rename(&partial, iso).map_err(|e| Error::io(format!("renaming {}", partial.display()), e))?;
    fs::remove_dir_all(&staging).map_err(|e| io("removing", e))
}

/// Runs a tool with its chatter captured; shows the chatter only on failure.
fn run_captured(command: &mut Command, name: &str) -> Result<()> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("starting {name} (is it installed? `make setup`)"), e))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(Error::Tool {
        command: format!("{command:?}"),
        detail: format!("{}\n{}", out.status, crate::last_lines(&stderr, 20).join("\n")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn initrd_is_a_reproducible_ustar_with_the_image_name_the_store_and_the_guests() {
        let store = [
            StoreFile {
                path: "plugins/a-1.0.0.mvp".into(),
                bytes: vec![1, 2, 3],
                plugin: Some(("a".into(), "1.0.0".into())),
            },
            StoreFile { path: "plugins/bad-unsigned.mvp".into(), bytes: vec![], plugin: None },
        ];
        let guests = [GuestFile { name: "hello".into(), path: "guests/hello.elf".into(), bytes: vec![0x7f, b'E'] }];
        let bytes = initrd_bytes("smp", &store, &guests).unwrap();
        assert_eq!(bytes, initrd_bytes("smp", &store, &guests).unwrap());
        assert_eq!(&bytes[257..263], b"ustar\0", "ustar magic");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let entries: Vec<(String, Vec<u8>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut content = Vec::new();
                e.read_to_end(&mut content).unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), content)
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("image.txt".to_string(), b"smp\n".to_vec()),
                ("plugins/a-1.0.0.mvp".to_string(), vec![1, 2, 3]),
                ("plugins/bad-unsigned.mvp".to_string(), vec![]),
                ("guests/hello.elf".to_string(), vec![0x7f, b'E']),
            ]
        );
    }

    #[test]
    fn grub_cfg_boots_the_loader_with_its_module() {
        assert_eq!(
            grub_cfg("image=smp test=smp"),
            "set timeout=0\nmultiboot2 /boot/loader.elf image=smp test=smp\n\
             module2 /boot/initrd initrd\nboot\n"
        );
    }

    #[test]
    fn image_paths() {
        let i = Image::of("boot");
        assert!(i.loader().ends_with("images/out/boot/loader.elf"));
        assert!(i.loader_debug().ends_with("images/out/boot/loader.debug.elf"));
        assert!(i.initrd().ends_with("images/out/boot/initrd"));
        assert!(i.iso.ends_with("images/out/boot.iso"));
        assert_eq!(shown(&i.iso), "images/out/boot.iso");
    }
}
