//! Guest-virtual to guest-physical: a walk of the guest's own page tables
//! (SDM vol. 3A, "Paging"), to read the instruction an MMIO exit stopped
//! at. 4-level (IA-32e) and PAE paging, 4 KiB, 2 MiB and 1 GiB pages; no
//! paging is the identity. Access rights are not checked: the guest
//! already fetched the bytes. Pure, over a reader of guest-physical
//! memory, tested on the host.

use core::fmt;

const PRESENT: u64 = 1;
const LARGE: u64 = 1 << 7;
/// Bits 51:12 of an entry: the next table or the page.
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;

/// The guest's paging registers.
#[derive(Clone, Copy, Debug)]
pub struct Paging {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    /// EFER.LMA: IA-32e paging.
    pub long_mode: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The entry at `level` (4 = PML4 .. 1 = PT) is not present.
    NotPresent { gva: u64, level: u8 },
    /// A table entry lies outside guest RAM.
    Unreadable { gpa: u64 },
    /// 32-bit paging without PAE.
    Paging32,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::NotPresent { gva, level } => write!(f, "{gva:#x} is not mapped (level {level} entry not present)"),
            Error::Unreadable { gpa } => write!(f, "a page-table entry at {gpa:#x} is outside guest RAM"),
            Error::Paging32 => write!(f, "32-bit paging without PAE is not walked"),
        }
    }
}

/// The guest-physical address of `gva`; `read` gives the u64 at a
/// guest-physical address, `None` outside RAM.
pub fn translate(p: &Paging, gva: u64, read: impl Fn(u64) -> Option<u64>) -> Result<u64, Error> {
    if p.cr0 & CR0_PG == 0 {
        return Ok(gva);
    }
    let (mut table, top) = match (p.long_mode, p.cr4 & CR4_PAE != 0) {
        (true, _) => (p.cr3 & ADDRESS, 4u8),
        (false, true) => (p.cr3 & 0xffff_ffe0, 3),
        (false, false) => return Err(Error::Paging32),
    };
    for level in (1..=top).rev() {
        let shift = 12 + 9 * (level as u32 - 1);
        // PAE's top table has 4 entries (bits 31:30), the others 512.
        let index = (gva >> shift) & if level == 3 && top == 3 { 3 } else { 511 };
        let at = table + index * 8;
        let entry = read(at).ok_or(Error::Unreadable { gpa: at })?;
        if entry & PRESENT == 0 {
            return Err(Error::NotPresent { gva, level });
        }
        // A large page at level 3 (1 GiB, IA-32e only) or 2 (2 MiB).
        let large = (level == 2 || (level == 3 && top == 4)) && entry & LARGE != 0;
        if large || level == 1 {
            let offset = gva & ((1 << shift) - 1);
            return Ok((entry & ADDRESS & !((1 << shift) - 1)) + offset);
        }
        table = entry & ADDRESS;
    }
    unreachable!("level 1 always returns")
}

/// Fills `out` with the guest's bytes from guest-virtual `gva`, walking
/// each page it touches; `bytes(gpa, out)` copies guest-physical memory
/// (false outside RAM).
pub fn read_virtual(
    p: &Paging,
    gva: u64,
    out: &mut [u8],
    entry: impl Fn(u64) -> Option<u64>,
    bytes: impl Fn(u64, &mut [u8]) -> bool,
) -> Result<(), Error> {
    let mut done = 0;
    while done < out.len() {
        let at = gva.wrapping_add(done as u64);
        let in_page = (4096 - (at & 4095)) as usize;
        let n = in_page.min(out.len() - done);
        let gpa = translate(p, at, &entry)?;
        if !bytes(gpa, &mut out[done..done + n]) {
            return Err(Error::Unreadable { gpa });
        }
        done += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
