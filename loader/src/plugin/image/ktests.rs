//! The `plugin-image` suite: real plugin files from the initrd (put there,
//! signed, by the runner) loaded, checked in memory, and unloaded.

use super::{load, Image};
use crate::ktest::{Failure, Test};
use crate::memory::{self, Stats};
use crate::{check, check_eq, failure};
use alloc::vec::Vec;
use loader_core::memory::frames::PAGE_SIZE;
use loader_core::memory::Protection;
use loader_core::plugin::elf::Error;

crate::suite!(SUITE_PLUGIN_IMAGE, "plugin-image", TESTS);
static TESTS: &[Test] = &[
    Test { name: "counter-loads-and-unloads", run: counter_loads_and_unloads },
    Test { name: "missing-imports-named", run: missing_imports_named },
    Test { name: "flipped-byte-refused", run: flipped_byte_refused },
    Test { name: "truncated-file-refused", run: truncated_file_refused },
];

const COUNTER: &str = "plugins/counter-plugin-1.0.0.mvp";

/// Where the dummy imports point: non-canonical, so a call through one
/// faults at once instead of running something.
const DUMMY_IMPORTS: u64 = 0xdead_0000_0000_0000;

fn dummy(name: &str) -> Option<u64> {
    let i = plugins::LOADER_EXPORTS.iter().position(|e| *e == name)?;
    Some(DUMMY_IMPORTS + 16 * i as u64)
}

fn plugin_file(name: &str) -> Result<&'static [u8], Failure> {
    crate::boot::initrd_file(name).ok_or_else(|| {
        failure!("the initrd holds no {name}: the runner packs signed plugins into it as plugins/<name>-<version>.mvp")
    })
}

fn loaded(file: &[u8]) -> Result<Image, Failure> {
    load(file, dummy).map_err(|e| failure!("loading: {e}"))
}

/// Loads and unloads once, so that what a load leaves behind for good
/// (page tables from splitting large pages, which `protect` keeps) is
/// already there, and returns the counters to come back to.
fn baseline(file: &[u8]) -> Result<Stats, Failure> {
    drop(loaded(file)?);
    Ok(memory::stats())
}

fn counter_loads_and_unloads() -> Result<(), Failure> {
    let file = plugin_file(COUNTER)?;
    let before = baseline(file)?;
    let image = loaded(file)?;
    let (base, size) = (image.base(), image.size());
    check!(base % PAGE_SIZE == 0 && size % PAGE_SIZE == 0, "image {base:#x}+{size:#x} is not page aligned");
    check_eq!(memory::stats().frames_free, before.frames_free - size / PAGE_SIZE, "free frames while loaded");

    let m = image.metadata();
    check_eq!((m.name.as_str(), m.version.as_str()), ("counter-plugin", "1.0.0"), "name and version");
    check_eq!(m.abi, plugins::ABI_FINGERPRINT, "note ABI");
    let provides: Vec<(&str, &str)> = m.provides.iter().map(|l| (l.interface.as_str(), l.version.as_str())).collect();
    check_eq!(provides, [("counter", "1.0.0")], "provides");
    // Heap memory of the test's own counts against the baseline.
    drop(provides);
    check!(m.requires.is_empty(), "counter 1.0.0 requires nothing, the note says {:?}", m.requires);

    let d = image.descriptor();
    let expected = (plugins::DESCRIPTOR_MAGIC, plugins::ABI_FINGERPRINT, 1);
    check_eq!((d.magic, d.abi, d.state_version), expected, "descriptor magic, ABI, state layout");
    check_eq!(d.provides.len, 1, "descriptor provides");
    // Relocated pointers: the entry points into the executable pages.
    let init = d.init as usize as u64;
    let rx = |a: u64| {
        image
            .regions()
            .iter()
            .any(|r| r.protection == Protection::ReadExecute && (base + r.offset..base + r.offset + r.len).contains(&a))
    };
    check!(rx(init) && rx(d.fini as usize as u64), "init {init:#x} or fini is outside the image's code");

    let mut covered = 0;
    for r in image.regions() {
        for page in (base + r.offset..base + r.offset + r.len).step_by(PAGE_SIZE as usize) {
            let leaf = memory::translate(page).map_err(|e| failure!("translate {page:#x}: {e}"))?;
            let leaf = leaf.ok_or_else(|| failure!("image page {page:#x} is not mapped"))?;
            check_eq!((leaf.phys, leaf.protection()), (page, Some(r.protection)), "page {page:#x}");
            covered += PAGE_SIZE;
        }
    }
    check_eq!(covered, size, "bytes of the image the regions cover");
    check!(image.regions().iter().any(|r| r.protection == Protection::ReadExecute), "no executable region");
    check!(image.regions().iter().any(|r| r.protection == Protection::ReadWrite), "no writable region");

    // The GOT: every import resolved to its dummy address somewhere in the
    // writable pages.
    let rw_words = image.regions().iter().filter(|r| r.protection == Protection::ReadWrite).flat_map(|r| {
        (base + r.offset..base + r.offset + r.len).step_by(8).map(|a| {
            // SAFETY: an 8-byte aligned address in a readable page of the
            // live image.
            unsafe { core::ptr::read(a as *const u64) }
        })
    });
    let imports = rw_words.filter(|w| (DUMMY_IMPORTS..DUMMY_IMPORTS + 0x1000).contains(w)).count();
    check!(imports >= 1, "no GOT entry holds a dummy import address");

    drop(image);
    check_eq!(memory::stats(), before, "memory counters after unloading");
    Ok(())
}

fn missing_imports_named() -> Result<(), Failure> {
    let file = plugin_file(COUNTER)?;
    let before = baseline(file)?;
    let only_log = |name: &str| (name == "mv_log").then(|| dummy(name)).flatten();
    match load(file, only_log) {
        Err(Error::MissingImports(names)) => {
            check!(!names.iter().any(|n| n == "mv_log"), "mv_log was provided but reported missing");
            for expected in ["mv_print", "mv_register_command"] {
                check!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
            }
        }
        Err(e) => return Err(failure!("expected missing imports, got: {e}")),
        Ok(_) => return Err(failure!("loaded without mv_print and mv_register_command")),
    }
    check_eq!(memory::stats(), before, "memory counters after the refused load");
    Ok(())
}

fn flipped_byte_refused() -> Result<(), Failure> {
    let file = plugin_file(COUNTER)?;
    let before = baseline(file)?;
    let mut copy = file.to_vec();
    let signature_byte = copy.len() - 8 - 30;
    for at in [signature_byte, 0x40, copy.len() / 2] {
        copy[at] ^= 0x20;
        match load(&copy, dummy) {
            Err(Error::BadSignature) => {}
            Err(e) => return Err(failure!("byte {at:#x} flipped: expected a bad signature, got: {e}")),
            Ok(_) => return Err(failure!("byte {at:#x} flipped: the file loaded")),
        }
        copy[at] ^= 0x20;
    }
    drop(copy);
    check_eq!(memory::stats(), before, "memory counters after the refused loads");
    Ok(())
}

fn truncated_file_refused() -> Result<(), Failure> {
    let file = plugin_file(COUNTER)?;
    for len in [0, 100, file.len() / 2, file.len() - 72, file.len() - 1] {
        match load(&file[..len], dummy) {
            Err(Error::Unsigned) => {}
            Err(e) => return Err(failure!("cut to {len} bytes: expected `unsigned or truncated`, got: {e}")),
            Ok(_) => return Err(failure!("cut to {len} bytes: the file loaded")),
        }
    }
    Ok(())
}
