//! The plugin heap ledger: which plugin owns each block it allocated
//! through the SDK, how many bytes each plugin holds, and what becomes of
//! what a plugin still holds when it goes. The kernel's `plugin::heap`
//! takes the memory from and gives it back to the loader's heap; every
//! decision about whose it is is made here.
//!
//! **Attribution.** A block belongs to the plugin whose code asked for it,
//! named by an address inside its own image (the SDK passes its
//! allocator's address): [`Ledger::owner_at`]. Not the innermost guarded
//! call, which names the plugin the loader entered, not the one running:
//! a consumer's command calling a provider's table, or cpuhp running
//! vmx-plugin's ONLINE callback through `mv_run_on`, would charge the
//! caller. Not a return address either: a tail call leaves the caller's
//! caller's address. An address of the allocating code's own image holds
//! under calls between plugins and tells the two versions of a swap apart
//! (each has its own image).
//!
//! **Ownership.** The owner is recorded per block, so a block freed by
//! another plugin (or by the loader) still comes off its owner's account.
//! A block changes hands only by adoption: during a swap, the new version
//! takes over what its predecessor handed it by pointer in the state
//! ([`Ledger::adopt`]); if the swap is called off, the adopted blocks go
//! back ([`Ledger::end_handover`]).
//!
//! **Leaks.** What a plugin still holds when its account closes is a leak
//! ([`Ledger::close`]); whether it is freed depends on how the plugin
//! ended ([`End::disposal`]). Freed blocks are handed to the kernel one by
//! one ([`Ledger::next_to_free`]); kept ones stay allocated on the loader's
//! own account ([`Ledger::kept`]) for good.
//!
//! The ledger itself never allocates: its tables are fixed arrays (a
//! static in the kernel), so the loader heap's figures count plugin blocks
//! and nothing of the bookkeeping.

use alloc::format;
use alloc::string::String;
use core::fmt;

/// Block slots of the kernel's ledger (a power of two, for the hash).
pub const SLOTS: usize = 4096;
/// Accounts of the kernel's ledger: plugins loaded at once, both versions
/// of a swap counted.
pub const ACCOUNTS: usize = 64;

/// What a plugin's allocation looks like to the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub addr: u64,
    pub size: u64,
    pub align: u64,
    pub owner: u64,
}

/// Bytes and blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub bytes: u64,
    pub blocks: u64,
}

impl Totals {
    fn add(&mut self, size: u64) {
        self.bytes += size;
        self.blocks += 1;
    }

    fn sub(&mut self, size: u64) {
        self.bytes -= size;
        self.blocks -= 1;
    }

    pub fn plus(self, o: Totals) -> Totals {
        Totals { bytes: self.bytes + o.bytes, blocks: self.blocks + o.blocks }
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.blocks == 1 { "" } else { "s" };
        write!(f, "{} bytes in {} block{s}", self.bytes, self.blocks)
    }
}

/// One plugin's account: its image (for attribution) and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: u64,
    /// `[base, end)` of the plugin's image.
    pub image: (u64, u64),
    pub held: Totals,
    /// During a swap: the version this one replaces, whose blocks it may
    /// adopt.
    pub predecessor: Option<u64>,
}

impl Account {
    /// An unused account slot (no plugin has id 0).
    const FREE: Account = Account { id: 0, image: (0, 0), held: Totals { bytes: 0, blocks: 0 }, predecessor: None };
}

/// How a plugin version ended, which decides what becomes of what it
/// still held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Unloaded after its fini returned.
    Unloaded,
    /// Replaced by a swap that committed, after its retire returned.
    Retired,
    /// Its init returned an error, or the swap it was the new version of
    /// was called off (after its fini returned).
    Refused,
    /// One of its entry points panicked (now or earlier): it stopped
    /// halfway through something.
    Panicked,
    /// The world could not be stopped to remove it: another CPU may still
    /// run its code, so its image is kept too.
    Stranded,
}

/// What becomes of a leak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposal {
    /// Nothing can reach the blocks any more: back to the loader's heap.
    Free,
    /// Something may still use them: they stay allocated for good, and
    /// this says why.
    Keep(&'static str),
}

impl End {
    /// Freeing what is left is safe once nothing can reach it: the image
    /// is gone (so is every pointer in its statics), the plugin had its
    /// last word (fini, retire, or an init that returned), the loader
    /// dropped its registrations, and what it handed to a successor was
    /// adopted. A plugin that panicked had no last word: it may have left
    /// a block where hardware reads it (a VMXON region with VMX still on)
    /// or half-registered with another plugin. A stranded one may still
    /// run.
    pub fn disposal(self) -> Disposal {
        match self {
            End::Unloaded | End::Retired | End::Refused => Disposal::Free,
            End::Panicked => Disposal::Keep("it panicked, so what it set up (hardware included) may still use them"),
            End::Stranded => Disposal::Keep("another CPU may still run its code"),
        }
    }

    fn when(self) -> &'static str {
        match self {
            End::Unloaded => "when it was unloaded",
            End::Retired => "when a swap retired it",
            End::Refused => "when its load or swap was called off",
            End::Panicked => "after it panicked",
            End::Stranded => "when it was removed while a CPU may still run its code",
        }
    }
}

/// What [`Ledger::close`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closing {
    pub end: End,
    pub leftover: Totals,
    pub disposal: Disposal,
}

impl Closing {
    /// The leak report for plugin `who` (name and version), or `None`
    /// when it held nothing.
    pub fn report(&self, who: &str) -> Option<String> {
        if self.leftover.blocks == 0 {
            return None;
        }
        let fate = match self.disposal {
            Disposal::Free => String::from("freed them"),
            Disposal::Keep(why) => format!("kept them: {why}"),
        };
        Some(format!("heap leak: {who} still held {} {}; {fate}", self.leftover, self.end.when()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Every account is in use.
    TooManyPlugins {
        max: usize,
    },
    AlreadyOpen(u64),
    /// The image overlaps an open account's: attribution would be
    /// ambiguous.
    Overlaps {
        id: u64,
        other: u64,
    },
    NoAccount(u64),
    /// The address is in no open plugin image.
    NotInImage(u64),
    /// Every block slot the ledger allows is in use.
    Full {
        max: usize,
    },
    /// The heap handed out an address the ledger has as live.
    Duplicate(u64),
    /// No live plugin block starts there: a double free, or a pointer that
    /// never came from `mv_alloc`.
    Unknown(u64),
    /// Freed with another layout than it was allocated with.
    LayoutMismatch {
        addr: u64,
        recorded: (u64, u64),
        given: (u64, u64),
    },
    /// Adoption of a block that is neither the caller's nor its
    /// predecessor's in a swap.
    NotYours {
        addr: u64,
        owner: u64,
        by: u64,
    },
    /// A size of 0, or an alignment that is no power of two.
    BadLayout {
        size: u64,
        align: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooManyPlugins { max } => {
                write!(f, "the heap ledger has accounts for {max} plugins at once; unload one first")
            }
            Error::AlreadyOpen(id) => write!(f, "plugin {id} already has a heap account"),
            Error::Overlaps { id, other } => write!(f, "the image of plugin {id} overlaps that of plugin {other}"),
            Error::NoAccount(id) => write!(f, "plugin {id} has no heap account"),
            Error::NotInImage(a) => write!(f, "{a:#x} is inside no loaded plugin image (not an SDK allocator?)"),
            Error::Full { max } => write!(f, "plugins hold {max} blocks, as many as the heap ledger tracks"),
            Error::Duplicate(a) => write!(f, "the heap returned {a:#x}, which a plugin still holds"),
            Error::Unknown(a) => write!(f, "no plugin block starts at {a:#x} (freed twice, or not from mv_alloc)"),
            Error::LayoutMismatch { addr, recorded, given } => write!(
                f,
                "block {addr:#x} was allocated as {} bytes aligned {} but freed as {} aligned {}; left allocated",
                recorded.0, recorded.1, given.0, given.1
            ),
            Error::NotYours { addr, owner, by } => {
                write!(f, "block {addr:#x} belongs to plugin {owner}, which plugin {by} does not replace")
            }
            Error::BadLayout { size, align } => write!(
                f,
                "cannot allocate {size} bytes aligned {align}: the size must be above 0, the alignment a power of two"
            ),
        }
    }
}

/// The owner of blocks kept for good (plugin ids start at 1).
const KEPT: u64 = 0;
/// The owner of blocks waiting for [`Ledger::next_to_free`].
const FREEING: u64 = u64::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    /// 0: empty (the heap never hands out address 0).
    addr: u64,
    size: u64,
    align: u64,
    owner: u64,
    /// Adopted during the swap in progress: goes back if it is called off.
    adopted: bool,
}

impl Slot {
    const EMPTY: Slot = Slot { addr: 0, size: 0, align: 0, owner: 0, adopted: false };
}

/// The ledger: `N` block slots (an open-addressed hash table by address,
/// at most three quarters full) and `A` accounts.
pub struct Ledger<const N: usize, const A: usize> {
    slots: [Slot; N],
    live: usize,
    /// Free where `id` is 0 ([`Account::FREE`]): all zeros, so that a
    /// static ledger costs no bytes of the loader's file.
    accounts: [Account; A],
    kept: Totals,
    leaked: Totals,
    /// Closings that found something left.
    leaks: u64,
}

impl<const N: usize, const A: usize> Default for Ledger<N, A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const A: usize> Ledger<N, A> {
    const FITS: () = assert!(N.is_power_of_two() && N >= 4, "the slot count must be a power of two");
    /// Live blocks at most: linear probing stays short below this.
    pub const MAX_BLOCKS: usize = N / 4 * 3;

    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::FITS;
        Ledger {
            slots: [Slot::EMPTY; N],
            live: 0,
            accounts: [Account::FREE; A],
            kept: Totals { bytes: 0, blocks: 0 },
            leaked: Totals { bytes: 0, blocks: 0 },
            leaks: 0,
        }
    }

    /// Opens an account for plugin `id` (an id above 0 and below
    /// `u64::MAX`) whose image is `[base, base + size)`, before any of its
    /// code runs.
    pub fn open(&mut self, id: u64, base: u64, size: u64) -> Result<(), Error> {
        assert!(id != KEPT && id != FREEING, "plugin ids are neither 0 nor u64::MAX");
        let end = base + size;
        for a in self.open_accounts() {
            if a.id == id {
                return Err(Error::AlreadyOpen(id));
            }
            if base < a.image.1 && a.image.0 < end {
                return Err(Error::Overlaps { id, other: a.id });
            }
        }
        let free = self.accounts.iter_mut().find(|a| a.id == 0).ok_or(Error::TooManyPlugins { max: A })?;
        *free = Account { id, image: (base, end), held: Totals::default(), predecessor: None };
        Ok(())
    }

    pub fn account(&self, id: u64) -> Option<Account> {
        self.open_accounts().find(|a| a.id == id).copied()
    }

    fn open_accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.iter().filter(|a| a.id != 0)
    }

    fn account_mut(&mut self, id: u64) -> Result<&mut Account, Error> {
        self.accounts.iter_mut().find(|a| a.id != 0 && a.id == id).ok_or(Error::NoAccount(id))
    }

    /// The plugin whose image holds `addr`.
    pub fn owner_at(&self, addr: u64) -> Result<u64, Error> {
        self.open_accounts()
            .find(|a| (a.image.0..a.image.1).contains(&addr))
            .map(|a| a.id)
            .ok_or(Error::NotInImage(addr))
    }

    /// Whether one more block fits; ask before taking memory from the heap.
    pub fn has_room(&self) -> Result<(), Error> {
        if self.live >= Self::MAX_BLOCKS {
            return Err(Error::Full { max: Self::MAX_BLOCKS });
        }
        Ok(())
    }

    /// Records `[addr, addr + size)`, just allocated for `owner`.
    pub fn record(&mut self, owner: u64, addr: u64, size: u64, align: u64) -> Result<(), Error> {
        assert!(addr != 0, "the heap never hands out address 0");
        self.has_room()?;
        if self.find(addr).is_some() {
            return Err(Error::Duplicate(addr));
        }
        self.account_mut(owner)?.held.add(size);
        let mut i = Self::home(addr);
        while self.slots[i].addr != 0 {
            i = (i + 1) % N;
        }
        self.slots[i] = Slot { addr, size, align, owner, adopted: false };
        self.live += 1;
        Ok(())
    }

    /// Takes the block at `addr` off its owner's account, for freeing;
    /// whoever frees it. The layout must be the one it was allocated with.
    pub fn release(&mut self, addr: u64, size: u64, align: u64) -> Result<Block, Error> {
        let i = self.find(addr).ok_or(Error::Unknown(addr))?;
        let s = self.slots[i];
        if (s.size, s.align) != (size, align) {
            return Err(Error::LayoutMismatch { addr, recorded: (s.size, s.align), given: (size, align) });
        }
        self.debit(s.owner, s.size);
        self.remove_at(i);
        Ok(Block { addr, size, align, owner: s.owner })
    }

    /// The block at `addr`, if a plugin holds it.
    pub fn block(&self, addr: u64) -> Option<Block> {
        self.find(addr).map(|i| self.slots[i]).map(|s| Block { addr, size: s.size, align: s.align, owner: s.owner })
    }

    /// A swap begins: `new` may adopt `old`'s blocks until
    /// [`Ledger::end_handover`].
    pub fn begin_handover(&mut self, old: u64, new: u64) -> Result<(), Error> {
        self.account_mut(old)?;
        self.account_mut(new)?.predecessor = Some(old);
        Ok(())
    }

    /// Plugin `by` takes over the block at `addr`: its own already, or its
    /// predecessor's in the swap in progress.
    pub fn adopt(&mut self, by: u64, addr: u64) -> Result<Block, Error> {
        let i = self.find(addr).ok_or(Error::Unknown(addr))?;
        let s = self.slots[i];
        let block = Block { addr, size: s.size, align: s.align, owner: by };
        if s.owner == by {
            return Ok(block);
        }
        if self.account(by).and_then(|a| a.predecessor) != Some(s.owner) {
            return Err(Error::NotYours { addr, owner: s.owner, by });
        }
        self.debit(s.owner, s.size);
        self.account_mut(by)?.held.add(s.size);
        self.slots[i].owner = by;
        self.slots[i].adopted = true;
        Ok(block)
    }

    /// The swap that made `new` a successor ends. Committed, what it
    /// adopted stays its own; called off, it goes back to the predecessor
    /// (which keeps running), and what went back is returned.
    pub fn end_handover(&mut self, new: u64, committed: bool) -> Totals {
        let Ok(account) = self.account_mut(new) else { return Totals::default() };
        let old = account.predecessor.take();
        let mut back = Totals::default();
        for i in 0..N {
            let s = self.slots[i];
            if s.addr == 0 || s.owner != new || !s.adopted {
                continue;
            }
            self.slots[i].adopted = false;
            if let (false, Some(old)) = (committed, old) {
                self.debit(new, s.size);
                if let Ok(a) = self.account_mut(old) {
                    a.held.add(s.size);
                    self.slots[i].owner = old;
                    back.add(s.size);
                } else {
                    // The predecessor is gone (it cannot be while its
                    // swap is being called off); keep the block rather
                    // than free it under someone.
                    self.slots[i].owner = KEPT;
                    self.kept.add(s.size);
                }
            }
        }
        back
    }

    /// Closes plugin `id`'s account as it ended by `end`. What it still
    /// held is a leak: with [`Disposal::Free`] the blocks wait for
    /// [`Ledger::next_to_free`], otherwise they are kept for good.
    pub fn close(&mut self, id: u64, end: End) -> Result<Closing, Error> {
        let leftover = core::mem::replace(self.account_mut(id)?, Account::FREE).held;
        let disposal = end.disposal();
        let to = if disposal == Disposal::Free { FREEING } else { KEPT };
        for s in self.slots.iter_mut().filter(|s| s.addr != 0 && s.owner == id) {
            s.owner = to;
            s.adopted = false;
        }
        if to == KEPT {
            self.kept = self.kept.plus(leftover);
        }
        if leftover.blocks > 0 {
            self.leaks += 1;
            self.leaked = self.leaked.plus(leftover);
        }
        Ok(Closing { end, leftover, disposal })
    }

    /// A leaked block to give back to the heap, now off the ledger.
    pub fn next_to_free(&mut self) -> Option<Block> {
        let i = (0..N).find(|&i| self.slots[i].addr != 0 && self.slots[i].owner == FREEING)?;
        let s = self.slots[i];
        self.remove_at(i);
        Some(Block { addr: s.addr, size: s.size, align: s.align, owner: FREEING })
    }

    /// What every open account holds.
    pub fn held(&self) -> Totals {
        self.open_accounts().fold(Totals::default(), |t, a| t.plus(a.held))
    }

    /// Leaked blocks kept for good (see [`End::disposal`]).
    pub fn kept(&self) -> Totals {
        self.kept
    }

    /// Every leak found so far (freed or kept), and in how many closings.
    pub fn leaked(&self) -> (Totals, u64) {
        (self.leaked, self.leaks)
    }

    fn debit(&mut self, owner: u64, size: u64) {
        match owner {
            KEPT => self.kept.sub(size),
            FREEING => {}
            id => self.account_mut(id).expect("every block's owner has an account").held.sub(size),
        }
    }

    fn home(addr: u64) -> usize {
        // Fibonacci hashing: heap addresses share their low bits (all
        // aligned), the multiplication spreads the rest over the top bits.
        (addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - N.trailing_zeros())) as usize
    }

    fn find(&self, addr: u64) -> Option<usize> {
        if addr == 0 {
            return None;
        }
        let mut i = Self::home(addr);
        loop {
            match self.slots[i].addr {
                0 => return None,
                a if a == addr => return Some(i),
                _ => i = (i + 1) % N,
            }
        }
    }

    /// Empties slot `i`, moving later entries of the probe run back so
    /// that every lookup still finds its entry (no tombstones).
    fn remove_at(&mut self, mut i: usize) {
        self.slots[i] = Slot::EMPTY;
        self.live -= 1;
        let mut j = i;
        loop {
            j = (j + 1) % N;
            if self.slots[j].addr == 0 {
                return;
            }
            let home = Self::home(self.slots[j].addr);
            // The entry at j may move to i unless its home lies in (i, j]
            // (cyclically): then i is before its home and lookups start
            // after i.
            let stays = if i <= j { i < home && home <= j } else { i < home || home <= j };
            if !stays {
                self.slots[i] = self.slots[j];
                self.slots[j] = Slot::EMPTY;
                i = j;
            }
        }
    }
}

#[cfg(test)]
mod tests;
