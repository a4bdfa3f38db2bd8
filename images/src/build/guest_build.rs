//! Building the test guests (`guests/`, package `test-guests`) that every
//! image's initrd carries under `guests/`, for vmx-plugin to run as VMs.
//!
//! One cargo build makes every guest: release, for `x86_64-unknown-none`,
//! with a static relocation model and `guests/link.ld` passed through
//! `CARGO_ENCODED_RUSTFLAGS` (guests only: plugins are PIC), in a target
//! folder of its own so the loader's and the plugins' builds stay cached.
//! Each executable is kept as `images/out/guests/<name>.debug.elf` (for
//! GDB) and stripped into `images/out/guests/<name>.elf`, the file the
//! initrd ships; both are rewritten only when they change, so an
//! unchanged tree rebuilds nothing. Every shipped guest is checked against
//! the guest ABI (`test_guests::abi`): ET_EXEC, x86_64, each PT_LOAD with
//! `p_paddr == p_vaddr` inside the load window. Guests are not signed:
//! they are data for vmx-plugin, not code the loader links.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use object::elf::{FileHeader64, EM_X86_64, ET_DYN, ET_EXEC, PF_X, PT_LOAD};
use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;
use test_guests::abi::{LOAD_BASE, LOAD_LIMIT};

use super::shared::{cargo, load_layout, target_root, write_if_changed, KERNEL_TARGET};
use super::{strip, Error, Result};
use crate::{out_dir, shown, workspace_root};

/// Every guest, one per `guests/src/bin/<name>.rs` (a host test keeps the
/// two in step).
pub const GUESTS: &[&str] = &[
    "counter", "cpuid", "flood", "fpu", "hello", "ipi", "msr", "nmi", "spin", "timer", "timing", "triple", "unmapped",
];

/// The guests' package.
pub const PACKAGE: &str = "test-guests";

/// The guests' folder inside the initrd (and in `images/out/`).
pub const GUEST_DIR: &str = "guests";

/// A built guest as the initrd carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestFile {
    pub name: String,
    /// `guests/<name>.elf`.
    pub path: String,
    /// The stripped ELF.
    pub bytes: Vec<u8>,
}

/// Where a guest sits in the initrd.
pub fn initrd_path(name: &str) -> String {
    format!("{GUEST_DIR}/{name}.elf")
}

/// The guests' linker script.
pub fn linker_script() -> PathBuf {
    workspace_root().join("guests").join("link.ld")
}

/// The rustc flags of a guest build, as `CARGO_ENCODED_RUSTFLAGS` wants
/// them (separated by 0x1f, so a path with spaces stays one argument):
/// static code (no PIE: the guest runs at its link address) linked by
/// `script`, segments aligned to 4 KiB only.
pub fn rustflags(script: &Path) -> OsString {
    let mut flags = OsString::from("-C\x1frelocation-model=static\x1f-C\x1flink-arg=-T");
    flags.push(script);
    flags.push("\x1f-C\x1flink-arg=-zmax-page-size=4096");
    flags
}

/// Where cargo builds the guests.
fn target_dir() -> PathBuf {
    target_root().join("guests")
}

/// What the guest ABI allows of one loadable segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub address: u64,
    pub file_size: u64,
    pub memory_size: u64,
    pub executable: bool,
}

/// A guest's checked layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub entry: u64,
    pub segments: Vec<Segment>,
}

impl Layout {
    /// The guest-physical range its segments span.
    pub fn span(&self) -> (u64, u64) {
        let start = self.segments.iter().map(|s| s.address).min().unwrap_or(0);
        let end = self.segments.iter().map(|s| s.address + s.memory_size).max().unwrap_or(0);
        (start, end)
    }
}

/// Checks a guest ELF against the guest ABI; the error says what to fix.
pub fn check_guest_elf(elf: &[u8]) -> Result<Layout, String> {
    let header = FileHeader64::<Endianness>::parse(elf).map_err(|e| format!("not an ELF64 file: {e}"))?;
    let endian = header.endian().map_err(|e| format!("unreadable ELF header: {e}"))?;
    if endian != Endianness::Little {
        return Err("big-endian ELF, not x86_64".into());
    }
    let machine = header.e_machine(endian);
    if machine != EM_X86_64 {
        return Err(format!("ELF machine {machine}, not x86_64 ({EM_X86_64})"));
    }
    match header.e_type(endian) {
        ET_EXEC => {}
        ET_DYN => {
            return Err("ET_DYN (position-independent), not ET_EXEC: a guest is linked static at its address \
                        (-C relocation-model=static)"
                .into())
        }
        other => return Err(format!("ELF type {other}, not ET_EXEC")),
    }
    let headers = header.program_headers(endian, elf).map_err(|e| format!("unreadable program headers: {e}"))?;
    let mut segments = Vec::new();
    for ph in headers.iter().filter(|ph| ph.p_type(endian) == PT_LOAD) {
        let (vaddr, paddr) = (ph.p_vaddr(endian), ph.p_paddr(endian));
        let (file_size, memory_size) = (ph.p_filesz(endian), ph.p_memsz(endian));
        let end = vaddr.checked_add(memory_size).ok_or_else(|| format!("segment at {vaddr:#x} wraps around"))?;
        if paddr != vaddr {
            return Err(format!("segment at {vaddr:#x} has p_paddr {paddr:#x}: the ABI wants p_paddr == p_vaddr"));
        }
        if vaddr < LOAD_BASE || end > LOAD_LIMIT {
            return Err(format!(
                "segment {vaddr:#x}..{end:#x} is outside the guest load window {LOAD_BASE:#x}..{LOAD_LIMIT:#x}"
            ));
        }
        if file_size > memory_size {
            return Err(format!("segment at {vaddr:#x} has more file bytes ({file_size}) than memory ({memory_size})"));
        }
        let executable = ph.p_flags(endian) & PF_X != 0;
        segments.push(Segment { address: vaddr, file_size, memory_size, executable });
    }
    if segments.is_empty() {
        return Err("no PT_LOAD segment".into());
    }
    let entry = header.e_entry(endian);
    if !segments.iter().any(|s| s.executable && (s.address..s.address + s.memory_size).contains(&entry)) {
        return Err(format!("the entry {entry:#x} is in no executable segment"));
    }
    Ok(Layout { entry, segments })
}

/// Guest names in `guests/src/bin/` (the `.rs` files, sorted).
pub fn guest_sources(bin_dir: &Path) -> Result<Vec<String>> {
    let entries = fs::read_dir(bin_dir).map_err(|e| Error::io(format!("reading {}", bin_dir.display()), e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("reading {}", bin_dir.display()), e))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "rs") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                names.push(stem.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Runs the one cargo build of every guest; returns each executable by name.
fn cargo_build_guests() -> Result<BTreeMap<String, PathBuf>> {
    let args = [
        "build",
        "--quiet",
        "--release",
        "-p",
        PACKAGE,
        "--bins",
        "--target",
        KERNEL_TARGET,
        "--message-format=json-render-diagnostics",
    ];
    let command = || format!("cargo {}", args.join(" "));
    let out = Command::new(cargo())
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir())
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags(&linker_script()))
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::io("starting cargo", e))?;
    if !out.status.success() {
        return Err(Error::Tool { command: command(), detail: format!("{} (its errors are above)", out.status) });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["package_id"].as_str().is_some_and(|p| p.contains(PACKAGE)))
        .filter_map(|m| Some((m["target"]["name"].as_str()?.to_string(), PathBuf::from(m["executable"].as_str()?))))
        .collect())
}

/// Builds every guest, checks it and keeps its debug and shipped copies in
/// `images/out/guests/`; returns the shipped guests in [`GUESTS`] order.
pub fn build_guests() -> Result<Vec<GuestFile>> {
    println!("guests: cargo build -p {PACKAGE} ({} guests, {KERNEL_TARGET}, static, guests/link.ld)", GUESTS.len());
    let built = cargo_build_guests()?;
    if let Some(extra) = built.keys().find(|name| !GUESTS.contains(&name.as_str())) {
        return Err(Error::Recipe(format!(
            "guests/src/bin/{extra}.rs is no guest the runner knows: add it to GUESTS in images/src/build/guest_build.rs"
        )));
    }
    let dir = out_dir().join(GUEST_DIR);
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut written = Vec::new();
    let mut guests = Vec::new();
    for (n, name) in GUESTS.iter().enumerate() {
        let artifact = built.get(*name).ok_or_else(|| {
            Error::Recipe(format!("cargo built no guest `{name}`: is guests/src/bin/{name}.rs there?"))
        })?;
        let read = |path: &Path| fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e));
        let full = read(artifact)?;
        let debug = dir.join(format!("{name}.debug.elf"));
        if write_if_changed(&debug, &full)? {
            written.push(debug.clone());
        }
        let shipped = dir.join(format!("{name}.elf"));
        if strip::strip_into(&debug, &shipped)? {
            written.push(shipped.clone());
        }
        let bytes = read(&shipped)?;
        let layout = check_guest_elf(&bytes)
            .map_err(|e| Error::Recipe(format!("guest {name} ({}) breaks the guest ABI: {e}", shown(&shipped))))?;
        if load_layout(&full) != load_layout(&bytes) {
            return Err(Error::Recipe(format!("guest {name}: stripping moved its segments; GDB symbols would be off")));
        }
        let (start, end) = layout.span();
        println!(
            "guests: [{}/{}] {name}: {} bytes, {} segments at {start:#x}..{end:#x}, entry {:#x}",
            n + 1,
            GUESTS.len(),
            bytes.len(),
            layout.segments.len(),
            layout.entry
        );
        guests.push(GuestFile { name: name.to_string(), path: initrd_path(name), bytes });
    }
    if !written.is_empty() {
        let names: Vec<String> = written.iter().map(|p| shown(p)).collect();
        println!("build: {}", names.join(" "));
    }
    Ok(guests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_list_is_the_guest_sources() {
        let sources = guest_sources(&workspace_root().join("guests/src/bin")).unwrap();
        let mut listed: Vec<&str> = GUESTS.to_vec();
        listed.sort();
        assert_eq!(sources, listed, "GUESTS and guests/src/bin/*.rs differ");
        assert_eq!(listed, GUESTS, "keep GUESTS sorted");
    }

    #[test]
    fn the_readme_table_lists_every_guest() {
        let readme = fs::read_to_string(workspace_root().join("README.md")).unwrap();
        let section =
            readme.split("\n### ").find(|s| s.starts_with("Test guests\n")).expect("README has `### Test guests`");
        for name in GUESTS {
            assert!(
                section.lines().any(|l| l.starts_with(&format!("| `{name}` "))),
                "README's guest table has no row for `{name}`"
            );
        }
    }

    #[test]
    fn guests_go_under_their_own_folder() {
        assert_eq!(initrd_path("hello"), "guests/hello.elf");
        assert!(!initrd_path("hello").starts_with(super::super::plugin_build::STORE_DIR));
    }

    #[test]
    fn flags_are_one_argument_each() {
        let flags = rustflags(Path::new("/w x/guests/link.ld"));
        let parts: Vec<&str> = flags.to_str().unwrap().split('\x1f').collect();
        assert_eq!(
            parts,
            [
                "-C",
                "relocation-model=static",
                "-C",
                "link-arg=-T/w x/guests/link.ld",
                "-C",
                "link-arg=-zmax-page-size=4096"
            ]
        );
    }

    /// An ELF64 header and program headers: (type, flags, vaddr, paddr, filesz, memsz).
    fn elf(e_type: u16, machine: u16, entry: u64, segments: &[(u32, u32, u64, u64, u64, u64)]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..8].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
        b[16..18].copy_from_slice(&e_type.to_le_bytes());
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[52..54].copy_from_slice(&64u16.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        for &(p_type, flags, vaddr, paddr, filesz, memsz) in segments {
            for word in [u64::from(p_type) | (u64::from(flags) << 32), 0x1000, vaddr, paddr, filesz, memsz, 0x1000] {
                b.extend_from_slice(&word.to_le_bytes());
            }
        }
        b
    }

    const RX: u32 = 5;
    const RW: u32 = 6;

    #[test]
    fn a_guest_as_the_abi_wants_it() {
        let good = elf(
            ET_EXEC,
            EM_X86_64,
            0x10_0000,
            &[(PT_LOAD, RX, 0x10_0000, 0x10_0000, 0x3000, 0x3000), (PT_LOAD, RW, 0x10_4000, 0x10_4000, 0x100, 0x2000)],
        );
        let layout = check_guest_elf(&good).unwrap();
        assert_eq!(layout.entry, 0x10_0000);
        assert_eq!(layout.span(), (0x10_0000, 0x10_6000));
        assert_eq!(
            layout.segments[1],
            Segment { address: 0x10_4000, file_size: 0x100, memory_size: 0x2000, executable: false }
        );
    }

    #[test]
    fn guests_that_break_the_abi_are_refused_with_the_reason() {
        let text = |vaddr, paddr, size| (PT_LOAD, RX, vaddr, paddr, size, size);
        let refused = |e_type, machine, entry, segments: &[_]| {
            check_guest_elf(&elf(e_type, machine, entry, segments)).unwrap_err()
        };
        assert!(refused(ET_DYN, EM_X86_64, 0x10_0000, &[text(0x10_0000, 0x10_0000, 0x1000)]).contains("ET_DYN"));
        assert!(refused(ET_EXEC, 3, 0x10_0000, &[text(0x10_0000, 0x10_0000, 0x1000)]).contains("not x86_64"));
        assert!(refused(ET_EXEC, EM_X86_64, 0x10_0000, &[text(0x10_0000, 0x20_0000, 0x1000)]).contains("p_paddr"));
        assert!(refused(ET_EXEC, EM_X86_64, 0xf_f000, &[text(0xf_f000, 0xf_f000, 0x2000)]).contains("load window"));
        assert!(
            refused(ET_EXEC, EM_X86_64, 0x10_0000, &[text(0x10_0000, 0x10_0000, 0x10_0001)]).contains("load window")
        );
        assert!(refused(ET_EXEC, EM_X86_64, 0x10_0000, &[]).contains("no PT_LOAD"));
        assert!(refused(ET_EXEC, EM_X86_64, 0x10_2000, &[text(0x10_0000, 0x10_0000, 0x1000)]).contains("entry"));
        let data_only = [(PT_LOAD, RW, 0x10_0000, 0x10_0000, 0x1000, 0x1000)];
        assert!(refused(ET_EXEC, EM_X86_64, 0x10_0000, &data_only).contains("entry"));
        let bloated = [(PT_LOAD, RX, 0x10_0000, 0x10_0000, 0x2000, 0x1000)];
        assert!(refused(ET_EXEC, EM_X86_64, 0x10_0000, &bloated).contains("more file bytes"));
        assert!(check_guest_elf(b"not an elf").unwrap_err().contains("ELF64"));
    }
}
