//! Physical frames plugins hold (guest RAM, EPT tables): who holds which
//! block, so that a block is freed only whole and by a plugin that holds
//! it, and so that what a plugin still holds when it ends is reported and
//! given back. The frames come from `memory::alloc_frames`.

use alloc::vec::Vec;
use core::fmt;
use loader_core::plugin::heap::End;
use spin::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    owner: u64,
    addr: u64,
    count: u64,
}

static BLOCKS: Mutex<Vec<Block>> = Mutex::new(Vec::new());

#[derive(Debug)]
pub enum Error {
    /// The caller's address lies in no plugin's image.
    NoCaller,
    ZeroCount,
    Memory(crate::memory::Error),
    /// `addr`/`count` is no block the caller holds.
    NotHeld {
        addr: u64,
        count: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoCaller => write!(f, "frames are charged to a plugin, and the caller's address is in none"),
            Error::ZeroCount => write!(f, "asked for 0 frames"),
            Error::Memory(e) => write!(f, "{e}"),
            Error::NotHeld { addr, count } => {
                write!(f, "{count} frames at {addr:#x} are no block the caller holds; nothing freed")
            }
        }
    }
}

/// With no block left the list's own buffer goes back too, so that the
/// heap figures after the last free are those from before the first alloc.
fn release_if_empty(blocks: &mut Vec<Block>) {
    if blocks.is_empty() {
        *blocks = Vec::new();
    }
}

/// `count` frames aligned to `align_pages`, charged to plugin `owner`.
pub fn alloc(owner: Option<u64>, count: u64, align_pages: u64) -> Result<u64, Error> {
    let owner = owner.ok_or(Error::NoCaller)?;
    if count == 0 {
        return Err(Error::ZeroCount);
    }
    let mut blocks = BLOCKS.lock();
    let addr = crate::memory::alloc_frames(count, align_pages.max(1)).map_err(Error::Memory)?;
    blocks.push(Block { owner, addr, count });
    Ok(addr)
}

/// Frees the block `addr`/`count` that plugin `owner` holds.
pub fn free(owner: Option<u64>, addr: u64, count: u64) -> Result<(), Error> {
    let owner = owner.ok_or(Error::NoCaller)?;
    let mut blocks = BLOCKS.lock();
    let i = blocks.iter().position(|b| *b == Block { owner, addr, count }).ok_or(Error::NotHeld { addr, count })?;
    crate::memory::free_frames(addr, count).map_err(Error::Memory)?;
    blocks.swap_remove(i);
    release_if_empty(&mut blocks);
    Ok(())
}

/// Plugin `owner` ended as `end`: what it still holds is a leak, freed
/// unless its code may still run (a stranded plugin keeps everything).
/// Returns the report, if there was a leak.
pub fn close(owner: u64, end: End) -> Option<alloc::string::String> {
    let mut blocks = BLOCKS.lock();
    let (left, kept): (Vec<Block>, Vec<Block>) = blocks.iter().partition(|b| b.owner == owner);
    if left.is_empty() {
        return None;
    }
    let frames: u64 = left.iter().map(|b| b.count).sum();
    if end == End::Stranded {
        return Some(alloc::format!("{frames} frames in {} blocks kept with the stranded plugin", left.len()));
    }
    *blocks = kept;
    release_if_empty(&mut blocks);
    for b in &left {
        if let Err(e) = crate::memory::free_frames(b.addr, b.count) {
            log::error!("frames at {:#x}: {e}", b.addr);
        }
    }
    Some(alloc::format!("it still held {frames} frames in {} blocks; freed", left.len()))
}
