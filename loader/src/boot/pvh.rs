//! PVH boot (QEMU `-kernel` with the Xen ELF note). Layouts from Xen's
//! `xen/include/public/arch-x86/hvm/start_info.h`.

use super::{c_str, BootInfo, Error, Protocol};
use core::mem::size_of;
use loader_core::memory::memmap::{Range, RangeSet};

const MAGIC: u32 = 0x336e_c578;
const E820_RAM: u32 = 1;

#[repr(C)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}
const _: () = assert!(size_of::<StartInfo>() == 56);

#[repr(C)]
struct ModlistEntry {
    paddr: u64,
    size: u64,
    cmdline_paddr: u64,
    reserved: u64,
}
const _: () = assert!(size_of::<ModlistEntry>() == 32);

#[repr(C)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}
const _: () = assert!(size_of::<MemmapEntry>() == 24);

/// # Safety
/// `info` must be the `hvm_start_info` address from %ebx, identity-mapped.
pub unsafe fn parse(info: u64) -> Result<BootInfo, Error> {
    // SAFETY: the caller passes the start-info address; the structure is
    // only read and outlives the loader's use of it (its range is reserved).
    let si = unsafe { &*(info as *const StartInfo) };
    if si.magic != MAGIC {
        return Err(Error::BadMagic { protocol: Protocol::Pvh, found: si.magic });
    }
    if si.version < 1 || si.memmap_paddr == 0 {
        return Err(Error::NoMemoryMap(Protocol::Pvh));
    }
    let mut in_use = RangeSet::default();
    in_use.insert(Range::new(info, info + size_of::<StartInfo>() as u64))?;

    let map_bytes = si.memmap_entries as u64 * size_of::<MemmapEntry>() as u64;
    in_use.insert(Range::new(si.memmap_paddr, si.memmap_paddr + map_bytes))?;
    // SAFETY: the start info says `memmap_entries` entries live there.
    let map = unsafe { core::slice::from_raw_parts(si.memmap_paddr as *const MemmapEntry, si.memmap_entries as usize) };
    let mut usable = RangeSet::default();
    for e in map.iter().filter(|e| e.kind == E820_RAM) {
        usable.insert(Range::new(e.addr, e.addr + e.size))?;
    }

    let initrd = if si.nr_modules > 0 {
        if si.modlist_paddr == 0 {
            return Err(Error::BadStructure("PVH module list address is 0"));
        }
        let bytes = si.nr_modules as u64 * size_of::<ModlistEntry>() as u64;
        in_use.insert(Range::new(si.modlist_paddr, si.modlist_paddr + bytes))?;
        // SAFETY: `nr_modules` entries live at `modlist_paddr`.
        let m = unsafe { &*(si.modlist_paddr as *const ModlistEntry) };
        let r = Range::new(m.paddr, m.paddr + m.size);
        in_use.insert(r)?;
        Some(r)
    } else {
        None
    };

    // SAFETY: QEMU passes a NUL-terminated command line that it never
    // rewrites; its range is reserved below before any allocation.
    let cmdline = unsafe { c_str(si.cmdline_paddr)? };
    if si.cmdline_paddr != 0 {
        in_use.insert(Range::new(si.cmdline_paddr, si.cmdline_paddr + cmdline.len() as u64 + 1))?;
    }
    Ok(BootInfo {
        protocol: Protocol::Pvh,
        cmdline,
        usable,
        in_use,
        initrd,
        rsdp: (si.rsdp_paddr != 0).then_some(si.rsdp_paddr),
    })
}
