//! `hprecorder`: registers one cpuhp state in each section
//! (`hprecorder:prepare`, `hprecorder:starting`, `hprecorder:online`) and
//! records every callback per CPU, in order, so the in-image tests can
//! check that teardowns run in exact reverse after injected failures. It
//! can be told to make its PREPARE or ONLINE callback fail (STARTING ones
//! cannot fail). Interface `hprecorder` 1.0.0; shell command `hprecorder`.
//!
//! Built without `v1` the crate is empty (a host build).
#![cfg_attr(target_os = "none", no_std)]
#![cfg(feature = "v1")]

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use cpuhp_api::{section, Cpuhp};
use hprecorder_api::{Recorder, REFUSED, SLOTS};
use plugins::runtime::Required;
use plugins::StrRef;

const MAX_CPUS: usize = 64;
const DEPTH: usize = 64;

static LOG: [[AtomicU32; DEPTH]; MAX_CPUS] = [const { [const { AtomicU32::new(0) }; DEPTH] }; MAX_CPUS];
static LEN: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
/// Bit `slot * 2 + direction`: that callback fails (every time, until
/// cleared).
static FAIL: AtomicU32 = AtomicU32::new(0);
static IDS: [AtomicU32; SLOTS] = [const { AtomicU32::new(0) }; SLOTS];

fn record(cpu: u32, slot: u32, dir: u32) -> i32 {
    let c = cpu as usize % MAX_CPUS;
    let n = LEN[c].fetch_add(1, Ordering::AcqRel);
    if let Some(e) = LOG[c].get(n) {
        e.store(slot << 1 | dir, Ordering::Release);
    }
    if FAIL.load(Ordering::Acquire) & 1 << (slot * 2 + dir) != 0 {
        REFUSED
    } else {
        0
    }
}

extern "C" fn prepare_up(cpu: u32, _: usize) -> i32 {
    record(cpu, 0, 0)
}
extern "C" fn prepare_down(cpu: u32, _: usize) -> i32 {
    record(cpu, 0, 1)
}
extern "C" fn starting_up(cpu: u32, _: usize) {
    record(cpu, 1, 0);
}
extern "C" fn starting_down(cpu: u32, _: usize) {
    record(cpu, 1, 1);
}
extern "C" fn online_up(cpu: u32, _: usize) -> i32 {
    record(cpu, 2, 0)
}
extern "C" fn online_down(cpu: u32, _: usize) -> i32 {
    record(cpu, 2, 1)
}

extern "C" fn take(cpu: u32, buf: *mut u32, cap: usize) -> usize {
    let c = cpu as usize % MAX_CPUS;
    let n = LEN[c].swap(0, Ordering::AcqRel);
    for (i, e) in LOG[c].iter().enumerate().take(n.min(cap).min(DEPTH)) {
        // SAFETY: the caller passes `cap` writable u32s; i < cap.
        let slot = unsafe { buf.add(i) };
        // SAFETY: as above: `slot` is one of them.
        unsafe { slot.write(e.load(Ordering::Acquire)) };
    }
    n
}

extern "C" fn state_id(slot: u32) -> u32 {
    IDS.get(slot as usize).map_or(0, |i| i.load(Ordering::Acquire))
}

extern "C" fn set_fail(slot: u32, dir: u32, on: u32) -> i32 {
    if slot as usize >= SLOTS || slot == 1 || dir > 1 {
        return -1;
    }
    let bit = 1 << (slot * 2 + dir);
    if on != 0 {
        FAIL.fetch_or(bit, Ordering::AcqRel);
    } else {
        FAIL.fetch_and(!bit, Ordering::AcqRel);
    }
    0
}

static TABLE: Recorder = Recorder { take, state_id, set_fail };

static CPUHP: spin::Once<Required<Cpuhp>> = spin::Once::new();

fn command(_: &str) -> Result<(), i32> {
    for (c, len) in LEN.iter().enumerate() {
        let n = len.load(Ordering::Acquire).min(DEPTH);
        if n > 0 {
            let mut line = plugins::runtime::Buf::format(format_args!("cpu {c}:"));
            for e in LOG[c].iter().take(n) {
                let v = e.load(Ordering::Acquire);
                let _ = core::fmt::Write::write_fmt(
                    &mut line,
                    format_args!(
                        " {}{}",
                        ["prepare", "starting", "online"][(v >> 1) as usize % 3],
                        ["+", "-"][(v & 1) as usize]
                    ),
                );
            }
            plugins::println!("{}", line.as_str());
        }
    }
    Ok(())
}

/// Error codes of `init`.
const NO_CPUHP: i32 = 1;
const SETUP: i32 = 2;

fn init() -> Result<(), i32> {
    let iface = Required::get().ok_or(NO_CPUHP)?;
    let cpuhp = CPUHP.call_once(|| iface);
    let ids = cpuhp.call(|t| {
        [
            (t.setup)(StrRef::new("hprecorder:prepare"), section::PREPARE, Some(prepare_up), Some(prepare_down), 0),
            (t.setup_starting)(StrRef::new("hprecorder:starting"), Some(starting_up), Some(starting_down), 0, 1),
            (t.setup)(StrRef::new("hprecorder:online"), section::ONLINE, Some(online_up), Some(online_down), 0),
        ]
    });
    if ids.iter().any(|id| *id <= 0) {
        // Leave no state behind whose callbacks would outlive this image.
        for id in ids.iter().rev().filter(|id| **id > 0) {
            cpuhp.call(|t| (t.remove)(*id as u32));
        }
        return Err(SETUP);
    }
    for (slot, id) in ids.iter().enumerate() {
        IDS[slot].store(*id as u32, Ordering::Release);
    }
    plugins::register_command!("hprecorder", "the recorder's callbacks per CPU since the last take", command)?;
    Ok(())
}

fn fini() {
    if let Some(c) = CPUHP.get() {
        for id in IDS.iter().rev() {
            c.call(|t| (t.remove)(id.load(Ordering::Acquire)));
        }
    }
}

plugins::plugin! {
    name: "hprecorder-plugin", version: "1.0.0",
    init: init, fini: fini,
    provides: [(Recorder, &TABLE)],
    requires: [(Cpuhp, "^1")],
    state: None,
}
