//! The `boot` suite: what PVH or multiboot2 handed over is consistent with
//! itself, with the command line, and with where the loader sits.

use crate::ktest::{Failure, Test};
use crate::{check, check_eq, failure};
use ::acpi::rsdp::Rsdp;
use loader_core::boot::cmdline::CommandLine;
use loader_core::memory::memmap::{Range, RangeSet};
use tar_no_std::TarArchiveRef;

crate::suite!(SUITE_BOOT, "boot", TESTS);
static TESTS: &[Test] = &[
    Test { name: "command-line", run: command_line },
    Test { name: "memory-map", run: memory_map },
    Test { name: "initrd", run: initrd },
    Test { name: "rsdp", run: rsdp },
];

extern "C" {
    static __image_start: [u8; 0];
    static __image_end: [u8; 0];
}

const MIB: u64 = 1 << 20;

/// Where the loader's image lies in physical memory (it runs identity-mapped).
fn image() -> Range {
    Range::new(&raw const __image_start as u64, &raw const __image_end as u64)
}

fn covers(set: &RangeSet, r: Range) -> bool {
    set.iter().any(|x| x.start <= r.start && r.end <= x.end)
}

fn overlaps(a: Range, b: Range) -> bool {
    a.start < b.end && b.start < a.end
}

fn command_line() -> Result<(), Failure> {
    let (boot, cl) = crate::boot_info();
    let p = boot.protocol.name();
    let line = boot.cmdline;
    check!(!line.trim().is_empty(), "{p}: the command line is empty");
    check_eq!(CommandLine::parse(line).ok(), Some(*cl), "{p}: `{line}` parsed again");
    let at = Range::new(line.as_ptr() as u64, line.as_ptr() as u64 + line.len() as u64);
    // The parsed values borrow from the boot protocol's buffer, and that
    // buffer must be reserved, or the allocator could hand it out.
    check!(covers(&boot.in_use, at), "{p}: the command line at {:#x}..{:#x} is not reserved", at.start, at.end);
    if let Some(name) = cl.image {
        let n = name.as_ptr() as u64;
        check!(at.start <= n && n + name.len() as u64 <= at.end, "{p}: image= does not point into the command line");
    }
    Ok(())
}

fn memory_map() -> Result<(), Failure> {
    let (boot, _) = crate::boot_info();
    let p = boot.protocol.name();
    let above_1mib: u64 = boot.usable.iter().map(|r| r.end.saturating_sub(r.start.max(MIB))).sum();
    check!(above_1mib > 0, "{p}: no usable RAM above 1 MiB");
    let img = image();
    check!(covers(&boot.usable, img), "{p}: the loader image {:#x}..{:#x} is not in usable RAM", img.start, img.end);
    // VGA memory and the BIOS live in 640 KiB..1 MiB; a map calling any of
    // it usable would let the allocator hand out device memory.
    let legacy = Range::new(0xa_0000, MIB);
    check!(!boot.usable.iter().any(|r| overlaps(r, legacy)), "{p}: the memory map calls part of 640 KiB..1 MiB usable");
    Ok(())
}

fn initrd() -> Result<(), Failure> {
    let (boot, cl) = crate::boot_info();
    let p = boot.protocol.name();
    let r = boot.initrd.ok_or_else(|| failure!("{p}: no initrd (the runner passes one with -initrd or module2)"))?;
    check!(!r.is_empty(), "{p}: the initrd is empty");
    check!(covers(&boot.usable, r), "{p}: the initrd {:#x}..{:#x} is not in usable RAM", r.start, r.end);
    check!(!overlaps(r, image()), "{p}: the initrd {:#x}..{:#x} overlaps the loader image", r.start, r.end);
    let bytes =
        crate::boot::initrd().ok_or_else(|| failure!("{p}: boot::initrd() disagrees with the boot information"))?;
    check!(TarArchiveRef::new(bytes).is_ok(), "{p}: the initrd ({} bytes) is not a tar archive", bytes.len());
    let file = crate::boot::initrd_file("image.txt").ok_or_else(|| failure!("{p}: the initrd holds no image.txt"))?;
    let text = core::str::from_utf8(file).map_err(|_| failure!("{p}: image.txt is not UTF-8"))?;
    let name = cl.image.ok_or_else(|| failure!("{p}: no image= on the command line to compare image.txt with"))?;
    check_eq!(text.strip_suffix('\n'), Some(name), "{p}: image.txt (without its newline) against image=");
    Ok(())
}

fn rsdp() -> Result<(), Failure> {
    let (boot, _) = crate::boot_info();
    let p = boot.protocol.name();
    // `kernel_entry` records the RSDP the boot protocol passed, or else the
    // one it found in the BIOS area, and reads the tables from it.
    let at = boot.rsdp.ok_or_else(|| failure!("{p}: no RSDP was recorded"))?;
    // SAFETY: `acpi::init` found an RSDP at this identity-mapped address in
    // firmware memory, which nothing writes.
    let rsdp = unsafe { &*(at as *const Rsdp) };
    check!(rsdp.validate().is_ok(), "{p}: the RSDP at {at:#x} fails its signature or checksum check");
    log::debug!("rsdp: {p}: RSDP at {at:#x}, revision {}", rsdp.revision());
    // GRUB passes a copy of the RSDP, not its address, so under multiboot2
    // the loader searched the EBDA and the BIOS ROM (ACPI 6.5, 5.2.5.1), all
    // below 1 MiB.
    if boot.protocol == crate::boot::Protocol::Multiboot2 {
        check!((0x8_0000..MIB).contains(&at), "{p}: the RSDP at {at:#x} is outside the BIOS areas");
    }
    let (root, signature) = match rsdp.revision() {
        0 => (rsdp.rsdt_address() as u64, b"RSDT"),
        _ => (rsdp.xsdt_address(), b"XSDT"),
    };
    // SAFETY: a valid RSDP points at the root table in identity-mapped
    // firmware memory; only its 4-byte signature is read.
    let found = unsafe { core::ptr::read_unaligned(root as *const [u8; 4]) };
    check_eq!(&found, signature, "{p}: signature of the root table at {root:#x}");
    Ok(())
}
