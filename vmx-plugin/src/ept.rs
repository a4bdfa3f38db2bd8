//! Extended page tables: a guest's 4-level guest-physical to host-physical
//! map (SDM vol. 3C, "EPT Translation Mechanism"), built over an abstract
//! frame source so the same code runs in the plugin and in host tests.
//!
//! The map uses 2 MiB pages wherever guest and host addresses are both
//! 2 MiB aligned and the length allows (and the CPU offers them), 4 KiB
//! pages otherwise; 1 GiB pages are never made. Leaves are write-back with
//! "ignore PAT" clear (see [`Perms`]). Intermediate entries allow
//! read/write/execute, so a leaf's permissions are the translation's.
//!
//! Concurrency is the caller's: the CPU may walk the tables while a map or
//! unmap writes them. Every change is one aligned 64-bit store, and a new
//! table is filled before the entry that links it, so a walk sees either
//! the old or the new translation; after an unmap or a split the caller
//! must invalidate (INVEPT single-context) before the old host frames are
//! reused, since the CPU may cache translations (SDM vol. 3C, "Invalidating
//! Cached Translation Information").

use core::fmt;

use crate::msr::{EPT_MEMORY_TYPE_WB, EPT_WALK_4_LEVELS};

pub const PAGE_4K: u64 = 1 << 12;
pub const PAGE_2M: u64 = 1 << 21;
/// A 4-level walk translates 48-bit guest-physical addresses.
pub const GUEST_PHYS_LIMIT: u64 = 1 << 48;
/// Entries hold host-physical addresses up to bit 51 (MAXPHYADDR <= 52).
pub const HOST_PHYS_LIMIT: u64 = 1 << 52;

/// IA32_VMX_EPT_VPID_CAP bits (SDM vol. 3D A.10) beyond those in `msr`.
const CAP_EXECUTE_ONLY: u64 = 1 << 0;
const CAP_2M_PAGES: u64 = crate::msr::EPT_2M_PAGES;
const CAP_ACCESSED_DIRTY: u64 = 1 << 21;

/// EPTP (SDM vol. 3C, "Extended-Page-Table Pointer"): bits 2:0 the memory
/// type of the paging structures, 5:3 the walk length minus one, bit 6
/// accessed/dirty flags, 51:12 the PML4 table.
pub const EPTP_MEMORY_TYPE_WB: u64 = 6;
pub const EPTP_WALK_LENGTH_4: u64 = (4 - 1) << 3;
pub const EPTP_ACCESSED_DIRTY: u64 = 1 << 6;

/// Entry bits (SDM vol. 3C, "EPT Translation Mechanism", tables of the
/// format of each level's entries).
const READ: u64 = 1 << 0;
const WRITE: u64 = 1 << 1;
const EXECUTE: u64 = 1 << 2;
/// Leaf bits 5:3, the EPT memory type: 6 = write-back.
const MEMORY_TYPE_WB: u64 = 6 << 3;
/// Leaf bit 7 at the PD (and PDPT) level: the entry maps a page.
const LARGE: u64 = 1 << 7;
/// Bits 51:12: the frame of the next table or the page.
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;
/// What a leaf passes on to the smaller leaves when it is split: the
/// permissions, memory type and "ignore PAT" (bits 6:0).
const LEAF_ATTRIBUTES: u64 = 0x7f;
const ENTRIES: usize = 512;

/// The frames the tables live in. Implemented by the plugin over its heap
/// (host-physical to virtual through the loader's map) and by a `Vec` in
/// tests.
pub trait TableMemory {
    /// A zeroed, 4 KiB-aligned frame for one table: its host-physical
    /// address, or `None` when memory is exhausted.
    fn alloc_table(&mut self) -> Option<u64>;
    /// Entry `index` (0..512) of the table at host-physical `table`.
    fn read_entry(&self, table: u64, index: usize) -> u64;
    /// Stores entry `index` of the table at `table` with one 64-bit write.
    fn write_entry(&mut self, table: u64, index: usize, value: u64);
}

/// Read, write and execute rights of a translation (entry bits 2:0).
///
/// Leaves also carry memory type WB and "ignore PAT" = 0: the effective
/// type is then the guest's PAT type combined with WB (SDM vol. 3C, "EPT
/// and Memory Typing"), so a guest that maps a page UC or WC through its PAT
/// gets what it asked for, as on bare metal; all guest RAM is ordinary
/// write-back host memory, and emulated devices are not mapped at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Perms(u8);

impl Perms {
    pub const NONE: Perms = Perms(0);
    pub const R: Perms = Perms(READ as u8);
    pub const RW: Perms = Perms((READ | WRITE) as u8);
    pub const RX: Perms = Perms((READ | EXECUTE) as u8);
    pub const RWX: Perms = Perms((READ | WRITE | EXECUTE) as u8);
    pub const X: Perms = Perms(EXECUTE as u8);

    pub const fn new(read: bool, write: bool, execute: bool) -> Perms {
        Perms(read as u8 | (write as u8) << 1 | (execute as u8) << 2)
    }
    /// The rights in bits 2:0 of `bits` (an entry, or an exit
    /// qualification shifted down).
    pub const fn from_bits(bits: u64) -> Perms {
        Perms((bits & 7) as u8)
    }
    pub const fn bits(self) -> u64 {
        self.0 as u64
    }
    pub const fn read(self) -> bool {
        self.0 & 1 != 0
    }
    pub const fn write(self) -> bool {
        self.0 & 2 != 0
    }
    pub const fn execute(self) -> bool {
        self.0 & 4 != 0
    }
}

impl fmt::Display for Perms {
    /// `rwx`, with `-` for a missing right.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flag = |on, c| if on { c } else { '-' };
        write!(f, "{}{}{}", flag(self.read(), 'r'), flag(self.write(), 'w'), flag(self.execute(), 'x'))
    }
}

/// Why a table operation was refused. Nothing was changed, except that a
/// map that ran out of memory may leave empty tables behind (freed with the
/// rest by [`Ept::for_each_table`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EptError {
    /// The CPU lacks an EPT feature modvisor needs (IA32_VMX_EPT_VPID_CAP).
    NotSupported { missing: &'static str },
    /// An address or the length is not a multiple of 4 KiB.
    Unaligned { guest: u64, host: u64, len: u64 },
    /// The length is 0.
    Empty { guest: u64 },
    /// The guest range ends beyond 48 bits, which 4-level EPT cannot map.
    GuestOutOfRange { guest: u64, len: u64 },
    /// The host range ends beyond 52 bits (no MAXPHYADDR is larger).
    HostOutOfRange { host: u64, len: u64 },
    /// Rights EPT cannot express (write without read is a
    /// misconfiguration) or this CPU lacks (execute-only).
    BadPerms(Perms),
    /// The page at `guest` is already mapped.
    Overlap { guest: u64 },
    /// [`TableMemory::alloc_table`] failed.
    OutOfMemory,
}

impl fmt::Display for EptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EptError::NotSupported { missing } => write!(f, "EPT unusable: the CPU does not offer {missing}"),
            EptError::Unaligned { guest, host, len } => write!(
                f,
                "EPT range guest {guest:#x} host {host:#x} length {len:#x} is not 4 KiB aligned; round it to pages"
            ),
            EptError::Empty { guest } => write!(f, "EPT range at guest {guest:#x} is empty"),
            EptError::GuestOutOfRange { guest, len } => {
                write!(f, "guest range {guest:#x}+{len:#x} ends beyond the 48-bit guest-physical space")
            }
            EptError::HostOutOfRange { host, len } => {
                write!(f, "host range {host:#x}+{len:#x} ends beyond 52-bit physical addresses")
            }
            EptError::BadPerms(p) => {
                write!(f, "EPT rights {p} are not allowed: every mapping needs read (or execute-only support)")
            }
            EptError::Overlap { guest } => {
                write!(f, "guest-physical page {guest:#x} is already mapped; unmap it before mapping again")
            }
            EptError::OutOfMemory => f.write_str("no memory for an EPT table"),
        }
    }
}

const fn shift(level: u32) -> u32 {
    12 + 9 * (level - 1)
}

/// The bytes one entry at `level` (1 = PT .. 4 = PML4) covers.
const fn span(level: u32) -> u64 {
    1 << shift(level)
}

const fn index(guest: u64, level: u32) -> usize {
    ((guest >> shift(level)) as usize) & (ENTRIES - 1)
}

/// An entry is present when any of read, write, execute is set.
const fn present(entry: u64) -> bool {
    entry & (READ | WRITE | EXECUTE) != 0
}

const fn is_leaf(entry: u64, level: u32) -> bool {
    level == 1 || entry & LARGE != 0
}

/// Where a walk stopped: at a leaf, or at an entry that is not present.
struct Slot {
    level: u32,
    table: u64,
    index: usize,
    entry: u64,
    /// The rights of every entry on the way, ANDed (SDM: a translation
    /// allows an access only if every entry does).
    perms: u64,
}

/// One guest's extended page tables.
#[derive(Debug, PartialEq, Eq)]
pub struct Ept {
    pml4: u64,
    caps: u64,
}

impl Ept {
    /// Empty tables for a CPU with IA32_VMX_EPT_VPID_CAP `caps`: it must
    /// offer 4-level walks and write-back paging structures.
    pub fn new(mem: &mut impl TableMemory, caps: u64) -> Result<Ept, EptError> {
        if caps & EPT_WALK_4_LEVELS == 0 {
            return Err(EptError::NotSupported { missing: "4-level page walks" });
        }
        if caps & EPT_MEMORY_TYPE_WB == 0 {
            return Err(EptError::NotSupported { missing: "write-back paging structures" });
        }
        let pml4 = mem.alloc_table().ok_or(EptError::OutOfMemory)?;
        Ok(Ept { pml4, caps })
    }

    /// Host-physical address of the PML4 table.
    pub fn pml4(&self) -> u64 {
        self.pml4
    }

    /// The VMCS EPTP value: WB paging structures, 4-level walk,
    /// accessed/dirty flags off (modvisor tracks no dirty pages, and the
    /// CPU would otherwise write the tables).
    pub fn eptp(&self) -> u64 {
        self.pml4 | EPTP_MEMORY_TYPE_WB | EPTP_WALK_LENGTH_4
    }

    /// The EPTP with accessed/dirty flags on, when the CPU offers them.
    pub fn eptp_with_accessed_dirty(&self) -> Option<u64> {
        (self.caps & CAP_ACCESSED_DIRTY != 0).then(|| self.eptp() | EPTP_ACCESSED_DIRTY)
    }

    /// Maps `len` bytes at guest-physical `guest` to host-physical `host`.
    /// Refuses a range of which any page is already mapped; on running out
    /// of memory part-way, unmaps what it mapped.
    pub fn map(
        &mut self,
        mem: &mut impl TableMemory,
        guest: u64,
        host: u64,
        len: u64,
        perms: Perms,
    ) -> Result<(), EptError> {
        check_range(guest, host, len)?;
        let execute_only = self.caps & CAP_EXECUTE_ONLY != 0 && perms == Perms::X;
        if !(perms.read() || execute_only) {
            return Err(EptError::BadPerms(perms));
        }
        if let Some(guest) = self.first_mapped(mem, guest, guest + len) {
            return Err(EptError::Overlap { guest });
        }
        let mut done = 0;
        while done < len {
            match self.map_one(mem, guest + done, host + done, len - done, perms) {
                Ok(size) => done += size,
                Err(e) => {
                    // Every leaf made so far lies wholly inside the range, so
                    // undoing it splits nothing and allocates nothing.
                    let undone = self.unmap(mem, guest, done);
                    debug_assert_eq!(undone, Ok(done));
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// One leaf at `guest`: 2 MiB when both addresses are aligned, `left`
    /// covers it, the CPU offers it and no page table is already there;
    /// else 4 KiB. Returns the bytes mapped.
    fn map_one(
        &mut self,
        mem: &mut impl TableMemory,
        guest: u64,
        host: u64,
        left: u64,
        perms: Perms,
    ) -> Result<u64, EptError> {
        let large = self.caps & CAP_2M_PAGES != 0 && (guest | host) & (PAGE_2M - 1) == 0 && left >= PAGE_2M;
        let leaf = host | perms.bits() | MEMORY_TYPE_WB;
        let mut table = self.pml4;
        for level in [4, 3, 2] {
            let i = index(guest, level);
            let entry = mem.read_entry(table, i);
            if level == 2 && large && !present(entry) {
                mem.write_entry(table, i, leaf | LARGE);
                return Ok(PAGE_2M);
            }
            // A present entry here links a table: a leaf would have been
            // reported as an overlap.
            table = match present(entry) {
                true => entry & ADDRESS,
                false => {
                    let next = mem.alloc_table().ok_or(EptError::OutOfMemory)?;
                    mem.write_entry(table, i, next | READ | WRITE | EXECUTE);
                    next
                }
            };
        }
        mem.write_entry(table, index(guest, 1), leaf);
        Ok(PAGE_4K)
    }

    /// Unmaps every page in `len` bytes at `guest`, splitting a large page
    /// that lies only partly inside; pages not mapped are skipped. Returns
    /// the bytes that were mapped. Tables left empty stay until the tables
    /// are freed. The caller must INVEPT before reusing the host frames.
    pub fn unmap(&mut self, mem: &mut impl TableMemory, guest: u64, len: u64) -> Result<u64, EptError> {
        check_range(guest, 0, len)?;
        let (end, mut addr, mut unmapped) = (guest + len, guest, 0);
        while addr < end {
            let slot = self.walk(mem, addr);
            let base = addr & !(span(slot.level) - 1);
            let next = base + span(slot.level);
            if !present(slot.entry) {
                addr = next;
            } else if base < guest || next > end {
                split(mem, &slot)?;
            } else {
                mem.write_entry(slot.table, slot.index, 0);
                unmapped += next - base;
                addr = next;
            }
        }
        Ok(unmapped)
    }

    /// The host-physical address and rights `guest` translates to, or
    /// `None` when it is not mapped (an access would be an EPT violation).
    pub fn translate(&self, mem: &impl TableMemory, guest: u64) -> Option<(u64, Perms)> {
        if guest >= GUEST_PHYS_LIMIT {
            return None;
        }
        let slot = self.walk(mem, guest);
        let offset = span(slot.level) - 1;
        present(slot.entry).then(|| ((slot.entry & ADDRESS & !offset) | (guest & offset), Perms::from_bits(slot.perms)))
    }

    /// Calls `f` with the host-physical address of every table, each once,
    /// children before the table that links them and the PML4 last, so
    /// the VMM can free them all when the guest is destroyed.
    pub fn for_each_table(&self, mem: &impl TableMemory, mut f: impl FnMut(u64)) {
        visit(mem, self.pml4, 4, &mut f);
    }

    fn walk(&self, mem: &impl TableMemory, guest: u64) -> Slot {
        let (mut table, mut level, mut perms) = (self.pml4, 4, READ | WRITE | EXECUTE);
        loop {
            let i = index(guest, level);
            let entry = mem.read_entry(table, i);
            perms &= entry;
            if !present(entry) || is_leaf(entry, level) {
                return Slot { level, table, index: i, entry, perms };
            }
            table = entry & ADDRESS;
            level -= 1;
        }
    }

    /// The first mapped page in `start..end`, skipping whole empty
    /// subtrees.
    fn first_mapped(&self, mem: &impl TableMemory, start: u64, end: u64) -> Option<u64> {
        let mut addr = start;
        while addr < end {
            let slot = self.walk(mem, addr);
            if present(slot.entry) {
                return Some(addr);
            }
            addr = (addr | (span(slot.level) - 1)) + 1;
        }
        None
    }
}

fn check_range(guest: u64, host: u64, len: u64) -> Result<(), EptError> {
    if (guest | host | len) & (PAGE_4K - 1) != 0 {
        return Err(EptError::Unaligned { guest, host, len });
    }
    if len == 0 {
        return Err(EptError::Empty { guest });
    }
    if guest >= GUEST_PHYS_LIMIT || len > GUEST_PHYS_LIMIT - guest {
        return Err(EptError::GuestOutOfRange { guest, len });
    }
    if host >= HOST_PHYS_LIMIT || len > HOST_PHYS_LIMIT - host {
        return Err(EptError::HostOutOfRange { host, len });
    }
    Ok(())
}

/// Replaces the large leaf at `slot` by a table of 512 leaves one level
/// down that map the same frames with the same attributes. The table is
/// complete before it is linked, so no access sees a hole.
fn split(mem: &mut impl TableMemory, slot: &Slot) -> Result<(), EptError> {
    let child = slot.level - 1;
    let table = mem.alloc_table().ok_or(EptError::OutOfMemory)?;
    let base = slot.entry & ADDRESS & !(span(slot.level) - 1);
    let large = if child > 1 { LARGE } else { 0 };
    for i in 0..ENTRIES {
        let leaf = (base + i as u64 * span(child)) | (slot.entry & LEAF_ATTRIBUTES) | large;
        mem.write_entry(table, i, leaf);
    }
    mem.write_entry(slot.table, slot.index, table | READ | WRITE | EXECUTE);
    Ok(())
}

fn visit<M: TableMemory + ?Sized, F: FnMut(u64)>(mem: &M, table: u64, level: u32, f: &mut F) {
    if level > 1 {
        for i in 0..ENTRIES {
            let entry = mem.read_entry(table, i);
            if present(entry) && !is_leaf(entry, level) {
                visit(mem, entry & ADDRESS, level - 1, f);
            }
        }
    }
    f(table);
}

/// How the guest's access touched the guest-linear address, if it had one
/// (exit qualification bits 7 and 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearAccess {
    /// Bit 7 clear: the access had no guest-linear address (e.g. the PAE
    /// PDPTE loads of a MOV to CR3).
    None,
    /// Bits 7 and 8 set: the access was to the translation of a linear
    /// address; the guest-linear address field holds it.
    Translation,
    /// Bit 7 set, bit 8 clear: the access was to a guest paging-structure
    /// entry during a page walk (or an accessed/dirty update).
    PagingStructure,
}

/// An EPT-violation exit qualification (SDM vol. 3C, "Exit Qualification
/// for EPT Violations"). Bits 9-11 (advanced information) are not decoded:
/// Bochs 2.7 never sets them, so modvisor cannot rely on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EptViolation {
    /// Bits 0, 1, 2: the access was a data read, data write, instruction
    /// fetch (more than one may be set).
    pub read: bool,
    pub write: bool,
    pub fetch: bool,
    /// Bits 5:3: what the translation allowed (ANDed over the walk).
    pub allowed: Perms,
    pub linear: LinearAccess,
    /// Bit 12: the fault happened during an IRET that unblocked NMIs; the
    /// VMM must set "blocking by NMI" again before re-entering.
    pub nmi_unblocking: bool,
}

impl EptViolation {
    pub fn decode(qualification: u64) -> EptViolation {
        let bit = |n: u32| qualification & 1 << n != 0;
        let linear = match (bit(7), bit(8)) {
            (false, _) => LinearAccess::None,
            (true, true) => LinearAccess::Translation,
            (true, false) => LinearAccess::PagingStructure,
        };
        EptViolation {
            read: bit(0),
            write: bit(1),
            fetch: bit(2),
            allowed: Perms::from_bits(qualification >> 3),
            linear,
            nmi_unblocking: bit(12),
        }
    }
}

impl fmt::Display for EptViolation {
    /// E.g. `write to a page allowing r-x (translation of a linear
    /// address)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds = [(self.read, "read"), (self.write, "write"), (self.fetch, "fetch")];
        let mut first = true;
        for (_, name) in kinds.iter().filter(|k| k.0) {
            f.write_str(if first { "" } else { "+" })?;
            f.write_str(name)?;
            first = false;
        }
        if first {
            f.write_str("access")?;
        }
        match self.allowed {
            Perms::NONE => f.write_str(" to an unmapped page")?,
            allowed => write!(f, " to a page allowing {allowed}")?,
        }
        f.write_str(match self.linear {
            LinearAccess::None => " (no guest-linear address)",
            LinearAccess::Translation => " (translation of a linear address)",
            LinearAccess::PagingStructure => " (guest paging-structure entry)",
        })?;
        if self.nmi_unblocking {
            f.write_str(", NMI unblocked by IRET")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
