//! `heapcheck`: a plugin whose heap the in-image `heap` suite controls, so
//! that it can check the loader's account of it to the byte. On request it
//! holds blocks (freed by its fini or retire), leaks them (for the loader
//! to find when it goes) or gives them away (the receiver frees them). Each
//! version owns one block of [`HANDED_BYTES`] that a swap hands to the next
//! by pointer: the successor adopts it in its state import. 1.0.0 and 2.0.0
//! are the same code. The shell command `heapcheck panic` panics, so that a
//! test sees what becomes of a failed plugin's blocks.
//!
//! Built without a version feature the crate is empty (a host build).
#![cfg_attr(target_os = "none", no_std)]
#![cfg(any(feature = "v1", feature = "v2"))]

extern crate alloc;

use alloc::alloc::Layout;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use heapcheck_api::{Heapcheck, HANDED_BYTES};
use plugins::ffi;

#[cfg(feature = "v1")]
const GENERATION: u32 = 1;
#[cfg(feature = "v2")]
const GENERATION: u32 = 2;

const HELD_MAX: usize = 16;
/// Blocks this version holds, as (address, size); address 0: a free slot.
/// A fixed table, so that holding a block allocates nothing but the block.
static HELD: spin::Mutex<[(u64, usize); HELD_MAX]> = spin::Mutex::new([(0, 0); HELD_MAX]);
/// The block handed from version to version: allocated by the first,
/// adopted by each successor.
static HANDED: AtomicU64 = AtomicU64::new(0);
static REFUSE_NEXT: AtomicBool = AtomicBool::new(false);

fn layout(bytes: usize) -> Option<Layout> {
    Layout::from_size_align(bytes, 1).ok().filter(|l| l.size() > 0)
}

/// `bytes` from the heap, through the SDK's allocator; null if refused.
fn allocate(bytes: usize) -> *mut u8 {
    match layout(bytes) {
        // SAFETY: the size is not zero.
        Some(l) => unsafe { alloc::alloc::alloc(l) },
        None => core::ptr::null_mut(),
    }
}

/// # Safety
/// `addr` came from [`allocate`]`(bytes)` and was not freed since.
unsafe fn free(addr: u64, bytes: usize) {
    if let Some(l) = layout(bytes) {
        // SAFETY: forwarded from the caller.
        unsafe { alloc::alloc::dealloc(addr as *mut u8, l) }
    }
}

extern "C" fn generation() -> u32 {
    GENERATION
}

extern "C" fn hold(bytes: usize) -> i32 {
    let mut held = HELD.lock();
    let Some(slot) = held.iter_mut().find(|s| s.0 == 0) else { return -1 };
    let p = allocate(bytes);
    if p.is_null() {
        return -1;
    }
    *slot = (p as u64, bytes);
    0
}

extern "C" fn leak(bytes: usize) -> i32 {
    // The optimizer may leave out an allocation whose pointer goes nowhere
    // (even into a static nobody reads): `black_box` makes it keep it.
    let p = core::hint::black_box(allocate(bytes));
    if p.is_null() {
        -1
    } else {
        0
    }
}

extern "C" fn give(bytes: usize) -> *mut u8 {
    allocate(bytes)
}

extern "C" fn handed() -> u64 {
    HANDED.load(Ordering::Acquire)
}

extern "C" fn refuse_next_import() {
    REFUSE_NEXT.store(true, Ordering::Release);
}

static TABLE: Heapcheck = Heapcheck { generation, hold, leak, give, handed, refuse_next_import };

fn release_held() {
    for slot in HELD.lock().iter_mut().filter(|s| s.0 != 0) {
        // SAFETY: `hold` allocated it with this size; the slot forgets it.
        unsafe { free(slot.0, slot.1) };
        *slot = (0, 0);
    }
}

fn command(args: &str) -> Result<(), i32> {
    if args.trim() == "panic" {
        panic!("asked to panic");
    }
    let held = HELD.lock().iter().filter(|s| s.0 != 0).count();
    plugins::println!("heapcheck generation {GENERATION}: {held} blocks held, handed block at {:#x}", handed());
    Ok(())
}

/// Error codes.
const NO_MEMORY: i32 = 1;
const BAD_STATE: i32 = 2;
const NOT_ADOPTED: i32 = 3;
const REFUSED: i32 = 4;

fn init() -> Result<(), i32> {
    plugins::register_command!("heapcheck", "the heap test plugin's blocks (`heapcheck panic`: panic)", command)?;
    // SAFETY: a plain query of the loader.
    if unsafe { ffi::mv_swapping_in() } == 1 {
        // The handed block comes with the state.
        return Ok(());
    }
    let p = allocate(HANDED_BYTES);
    if p.is_null() {
        return Err(NO_MEMORY);
    }
    HANDED.store(p as u64, Ordering::Release);
    Ok(())
}

fn fini() {
    release_held();
    let p = HANDED.swap(0, Ordering::AcqRel);
    if p != 0 {
        // SAFETY: allocated by `init` with this size (here or in a
        // predecessor, adopted since).
        unsafe { free(p, HANDED_BYTES) };
    }
}

/// The handed block is the successor's now: only what this version held
/// goes.
fn retire() {
    release_held();
}

/// Layout 1: the handed block's address (u64, little endian), then 1 if
/// the next import is to refuse.
const LAYOUT: u32 = 1;

fn export(buf: &mut [u8]) -> Result<usize, i32> {
    let out = buf.get_mut(..9).ok_or(BAD_STATE)?;
    out[..8].copy_from_slice(&HANDED.load(Ordering::Acquire).to_le_bytes());
    // One swap attempt takes the request, whatever comes of it.
    out[8] = REFUSE_NEXT.swap(false, Ordering::AcqRel) as u8;
    Ok(9)
}

fn import(layout: u32, buf: &[u8]) -> Result<(), i32> {
    if layout != LAYOUT || buf.len() != 9 {
        return Err(BAD_STATE);
    }
    let p = u64::from_le_bytes(buf[..8].try_into().map_err(|_| BAD_STATE)?);
    if p != 0 {
        plugins::runtime::adopt(p as *mut u8).map_err(|_| NOT_ADOPTED)?;
    }
    if buf[8] != 0 {
        // After the adoption, on purpose: the loader gives the block back
        // to the version that stays.
        return Err(REFUSED);
    }
    HANDED.store(p, Ordering::Release);
    Ok(())
}

#[cfg(feature = "v1")]
plugins::plugin! {
    name: "heapcheck-plugin", version: "1.0.0",
    init: init, fini: fini, retire: retire,
    provides: [(Heapcheck, &TABLE)],
    requires: [],
    state: Some((LAYOUT, export, import)),
}

#[cfg(feature = "v2")]
plugins::plugin! {
    name: "heapcheck-plugin", version: "2.0.0",
    init: init, fini: fini, retire: retire,
    provides: [(Heapcheck, &TABLE)],
    requires: [],
    state: Some((LAYOUT, export, import)),
}
