//! Plugin heap blocks: the loader's heap, with every block a plugin
//! allocates on that plugin's account. `loader_core::plugin::heap` decides
//! whose a block is (the image that holds the caller's allocator) and what
//! becomes of what a plugin leaves behind; this module holds the ledger and
//! takes the memory from, and gives it back to, the loader's heap.
//!
//! Lock order: the ledger, then the loader's heap. Both are taken inside
//! an unstoppable section: the CPU that stops the world for a swap runs
//! the state export and import, which allocate, so no stopped CPU may hold
//! either.

use alloc::alloc::Layout;
use loader_core::plugin::heap::{Closing, End, Error, Ledger, Totals, ACCOUNTS, SLOTS};
use spin::Mutex;

static LEDGER: Mutex<Ledger<SLOTS, ACCOUNTS>> = Mutex::new(Ledger::new());

fn locked<R>(f: impl FnOnce(&mut Ledger<SLOTS, ACCOUNTS>) -> R) -> R {
    crate::smp::enter_unstoppable();
    let r = f(&mut LEDGER.lock());
    crate::smp::exit_unstoppable();
    r
}

fn layout(size: u64, align: u64) -> Result<Layout, Error> {
    match Layout::from_size_align(size as usize, align as usize) {
        Ok(l) if l.size() > 0 => Ok(l),
        _ => Err(Error::BadLayout { size, align }),
    }
}

/// Gives a block back to the loader's heap.
///
/// # Safety
/// `addr` must have been allocated from the loader's heap with this size
/// and alignment, and be off the ledger's table (so that it is freed once).
unsafe fn free(addr: u64, size: u64, align: u64) {
    let l = layout(size, align).expect("recorded blocks have valid layouts");
    // SAFETY: forwarded from the caller.
    unsafe { alloc::alloc::dealloc(addr as *mut u8, l) }
}

/// The plugin whose image holds `addr`.
pub fn owner_of(addr: u64) -> Option<u64> {
    locked(|ledger| ledger.owner_at(addr).ok())
}

/// Allocates for the plugin whose image holds `caller`; `Ok(null)` when the
/// heap has no room.
pub fn alloc(caller: u64, size: u64, align: u64) -> Result<*mut u8, Error> {
    let l = layout(size, align)?;
    locked(|ledger| {
        let owner = ledger.owner_at(caller)?;
        ledger.has_room()?;
        // SAFETY: `l` has a non-zero size (checked by `layout`).
        let p = unsafe { alloc::alloc::alloc(l) };
        if p.is_null() {
            return Ok(p);
        }
        if let Err(e) = ledger.record(owner, p as u64, size, align) {
            // SAFETY: allocated just above with this layout; the ledger
            // did not take it.
            unsafe { free(p as u64, size, align) };
            return Err(e);
        }
        Ok(p)
    })
}

/// Frees a plugin block, whoever frees it; refused (nothing freed) if it
/// is no live block or the layout differs.
pub fn dealloc(addr: u64, size: u64, align: u64) -> Result<(), Error> {
    locked(|ledger| {
        let b = ledger.release(addr, size, align)?;
        // SAFETY: the ledger recorded the block from `alloc` with this
        // layout and has just taken it off its table.
        unsafe { free(b.addr, b.size, b.align) };
        Ok(())
    })
}

/// The plugin whose image holds `caller` takes over block `addr`.
pub fn adopt(caller: u64, addr: u64) -> Result<(), Error> {
    locked(|ledger| {
        let by = ledger.owner_at(caller)?;
        ledger.adopt(by, addr).map(drop)
    })
}

/// Opens plugin `id`'s account for its image `[base, base + size)`.
pub fn open(id: u64, base: u64, size: u64) -> Result<(), Error> {
    locked(|ledger| ledger.open(id, base, size))
}

/// Closes plugin `id`'s account and frees or keeps what it left, as the
/// ledger decides from `end`; `None` if it had no account.
pub fn close(id: u64, end: End) -> Option<Closing> {
    locked(|ledger| {
        let c = ledger.close(id, end).ok()?;
        while let Some(b) = ledger.next_to_free() {
            // SAFETY: as in `dealloc`: a leaked block from `alloc`, off the
            // ledger's table now.
            unsafe { free(b.addr, b.size, b.align) };
        }
        Some(c)
    })
}

pub fn begin_handover(old: u64, new: u64) -> Result<(), Error> {
    locked(|ledger| ledger.begin_handover(old, new))
}

/// Ends `new`'s swap; called off, what it adopted goes back (returned).
pub fn end_handover(new: u64, committed: bool) -> Totals {
    locked(|ledger| ledger.end_handover(new, committed))
}

/// What plugin `id` holds.
pub fn held_by(id: u64) -> Option<Totals> {
    locked(|ledger| ledger.account(id).map(|a| a.held))
}

/// The ledger's figures, for `mem` and the tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Figures {
    /// What loaded plugins hold.
    pub held: Totals,
    /// Leaks kept for good.
    pub kept: Totals,
    /// Every leak found since boot, freed or kept.
    pub leaked: Totals,
    /// How many closings found a leak.
    pub leaks: u64,
}

pub fn figures() -> Figures {
    locked(|ledger| {
        let (leaked, leaks) = ledger.leaked();
        Figures { held: ledger.held(), kept: ledger.kept(), leaked, leaks }
    })
}
