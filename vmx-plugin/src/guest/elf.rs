//! Placing a guest ELF into guest RAM: the guest ABI's rules (static
//! x86_64 ET_EXEC, PT_LOAD segments at their physical addresses, at or
//! above 1 MiB), read with the `object` crate.

use object::elf::{FileHeader64, EM_X86_64, ET_EXEC, PT_LOAD};
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian as LE;

/// Lowest guest-physical address a segment may use (below: the ABI's
/// boot structures).
const LOWEST: u64 = 0x10_0000;

/// Copies every PT_LOAD segment of `file` to the RAM `host(gpa, len)`
/// gives (zeroing what the file does not hold) and returns the entry.
pub fn place(file: &[u8], host: impl Fn(u64, u64) -> Option<*mut u8>) -> Result<u64, &'static str> {
    let header = FileHeader64::<LE>::parse(file).map_err(|_| "not an ELF64 file")?;
    if header.e_machine.get(LE) != EM_X86_64 || header.e_type.get(LE) != ET_EXEC {
        return Err("not an x86_64 executable (ET_EXEC)");
    }
    let segments = header.program_headers(LE, file).map_err(|_| "bad program headers")?;
    let mut placed = 0;
    for ph in segments.iter().filter(|p| p.p_type(LE) == PT_LOAD) {
        let (gpa, memsz) = (ph.p_paddr(LE), ph.p_memsz(LE));
        let data = ph.data(LE, file).map_err(|_| "a segment's bytes lie outside the file")?;
        if gpa < LOWEST || (data.len() as u64) > memsz {
            return Err("a segment lies below 1 MiB or is larger in the file than in memory");
        }
        let to = host(gpa, memsz).ok_or("a segment lies outside guest RAM")?;
        // SAFETY: `host` checked that `memsz` bytes from `to` are this
        // VM's RAM; the file's bytes do not overlap it (initrd).
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), to, data.len()) };
        let rest = to.wrapping_add(data.len());
        // SAFETY: as above, the rest of the segment.
        unsafe { core::ptr::write_bytes(rest, 0, (memsz as usize) - data.len()) };
        placed += 1;
    }
    if placed == 0 {
        return Err("no PT_LOAD segment");
    }
    let entry = header.e_entry.get(LE);
    host(entry, 1).ok_or("the entry point lies outside guest RAM")?;
    Ok(entry)
}
