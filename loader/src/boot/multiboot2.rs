//! Multiboot2 boot (GRUB, for Bochs), parsed with the `multiboot2` crate.

use super::{BootInfo, Error, Protocol};
use loader_core::memory::memmap::{Range, RangeSet};
use multiboot2::{BootInformation, BootInformationHeader, MemoryAreaType};

/// # Safety
/// `info` must be the multiboot2 information address from %ebx,
/// identity-mapped and never written again.
pub unsafe fn parse(info: u64) -> Result<BootInfo, Error> {
    // SAFETY: forwarded from the caller; the crate checks size and tags.
    let mbi = unsafe { BootInformation::load(info as *const BootInformationHeader) }
        .map_err(|_| Error::BadStructure("multiboot2 information header"))?;
    let mut in_use = RangeSet::default();
    in_use.insert(Range::new(info, info + mbi.total_size() as u64))?;

    let map = mbi.memory_map_tag().ok_or(Error::NoMemoryMap(Protocol::Multiboot2))?;
    let mut usable = RangeSet::default();
    for a in map.memory_areas().iter().filter(|a| MemoryAreaType::from(a.typ()) == MemoryAreaType::Available) {
        usable.insert(Range::new(a.start_address(), a.end_address()))?;
    }

    let initrd = match mbi.module_tags().next() {
        Some(m) => {
            let r = Range::new(m.start_address() as u64, m.end_address() as u64);
            in_use.insert(r)?;
            Some(r)
        }
        None => None,
    };
    let cmdline = match mbi.command_line_tag() {
        Some(tag) => tag.cmdline().map_err(|_| Error::CommandLineNotUtf8)?,
        None => "",
    };
    // SAFETY: the string lives inside the information structure, which is
    // reserved above and never written again, so it outlives the loader.
    let cmdline: &'static str = unsafe { &*(cmdline as *const str) };
    Ok(BootInfo {
        protocol: Protocol::Multiboot2,
        cmdline,
        usable,
        in_use,
        initrd,
        // GRUB hands over a copy of the RSDP, not its address; the BIOS area
        // search finds the original.
        rsdp: None,
    })
}
