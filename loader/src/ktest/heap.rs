//! The `heap` suite: every plugin's heap account. Blocks are charged to the
//! plugin whose code allocated them (not to the one the loader entered),
//! whoever frees them; a successor adopts what a swap hands over, and gives
//! it back when the swap is called off; what a plugin leaves behind is a
//! leak, freed (or kept when it panicked). Then every plugin with state
//! (cpuhp, counter, consumer) goes through 20 swaps and 20 unload/load
//! cycles, after which the loader's heap bytes in use, the frames in use
//! and every account are back to their starting figures exactly, and no
//! leak was found. The `heap-vmx` suite (Bochs, which has VMX) does the
//! same with vmx-plugin, whose VMXON regions cross every swap by pointer.

use crate::ktest::{with, Failure, Test};
use crate::plugin::heap::{self, Figures};
use crate::plugin::registry;
use crate::{check, check_eq, failure};
use cpuhp_api::{Cpuhp, LOG_CAPACITY};
use heapcheck_api::{Heapcheck, HANDED_BYTES};
use loader_core::plugin::heap::Totals;

crate::suite!(SUITE_HEAP, "heap", TESTS);
static TESTS: &[Test] = &[
    Test { name: "blocks-are-charged-to-the-code-that-allocated-them", run: attribution },
    Test { name: "a-block-freed-by-another-leaves-its-owners-account", run: freed_by_another },
    Test { name: "a-leak-is-reported-and-freed-at-unload", run: leak_at_unload },
    Test { name: "a-swap-hands-adopted-blocks-over-and-frees-the-retired-leak", run: handover },
    Test { name: "a-swap-called-off-gives-adopted-blocks-back", run: called_off },
    Test { name: "a-panicked-plugins-leak-is-kept", run: panicked },
    Test { name: "cpuhp-20-swaps-20-reloads-return-every-byte", run: cpuhp_loops },
    Test { name: "counter-20-swaps-20-reloads-return-every-byte", run: counter_loops },
    Test { name: "consumer-20-swaps-20-reloads-return-every-byte", run: consumer_loops },
];

crate::suite!(SUITE_HEAP_VMX, "heap-vmx", VMX, crate::ktest::InAll::OnlyWhenNamed);
static VMX: &[Test] = &[Test { name: "vmx-20-swaps-20-reloads-return-every-byte", run: vmx_loops }];

/// Swaps and unload/load cycles per plugin.
const ROUNDS: usize = 20;

fn unload_all() {
    for p in registry::list() {
        let _ = registry::unload(&p.name, true);
    }
}

fn load(name: &str, version: &str) -> Result<(), Failure> {
    registry::load(name, Some(version)).map(drop).map_err(|e| failure!("load {name} {version}: {e}"))
}

fn unload(name: &str) -> Result<(), Failure> {
    registry::unload(name, false).map(drop).map_err(|e| failure!("unload {name}: {e}"))
}

fn swap(name: &str, version: &str) -> Result<(), Failure> {
    registry::swap(name, version).map_err(|e| failure!("swap {name} to {version}: {e}"))
}

/// The registry id of loaded plugin `name`.
fn id_of(name: &str) -> Result<u64, Failure> {
    let name = loader_core::plugin::resolve::plugin_name(name);
    registry::list().into_iter().find(|p| p.name == name).map(|p| p.id).ok_or_else(|| failure!("{name} is not loaded"))
}

/// What plugin `name` holds now.
fn held(name: &str) -> Result<Totals, Failure> {
    let id = id_of(name)?;
    heap::held_by(id).ok_or_else(|| failure!("{name} (plugin {id}) has no heap account"))
}

fn heapcheck<R>(f: impl FnOnce(&Heapcheck) -> R) -> Result<R, Failure> {
    with(f)
}

/// Everything that must come back: the loader heap's bytes in use, the
/// frames in use, and the ledger's figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Usage {
    heap_used: u64,
    frames_used: u64,
    ledger: Figures,
}

fn usage() -> Usage {
    let s = crate::memory::stats();
    Usage { heap_used: s.heap_used, frames_used: s.frames_total - s.frames_free, ledger: heap::figures() }
}

fn bytes(n: u64) -> Totals {
    Totals { bytes: n, blocks: 1 }
}

/// hprecorder's init registers three cpuhp states: cpuhp's code allocates
/// their names under hprecorder's guarded call, so the blocks are cpuhp's;
/// hprecorder allocates nothing of its own. heapcheck called straight from
/// loader code (no guarded call at all) is charged all the same.
fn attribution() -> Result<(), Failure> {
    unload_all();
    load("cpuhp-plugin", "1.2.0")?;
    let cpuhp_before = held("cpuhp")?;
    load("hprecorder-plugin", "1.0.0")?;
    check_eq!(held("hprecorder")?, Totals::default(), "hprecorder's account after its init");
    let cpuhp_after = held("cpuhp")?;
    check!(
        cpuhp_after.bytes > cpuhp_before.bytes,
        "cpuhp's account did not grow with the states it keeps for hprecorder ({cpuhp_before} -> {cpuhp_after})"
    );
    load("heapcheck-plugin", "1.0.0")?;
    check_eq!(held("heapcheck")?, bytes(HANDED_BYTES as u64), "heapcheck after its init");
    check_eq!(heapcheck(|t| (t.hold)(100))?, 0, "hold");
    check_eq!(
        held("heapcheck")?,
        Totals { bytes: HANDED_BYTES as u64 + 100, blocks: 2 },
        "heapcheck after holding 100 bytes for loader code"
    );
    crate::shell::execute("plugins").map_err(|e| failure!("plugins: {e}"))?;
    crate::shell::execute("info heapcheck").map_err(|e| failure!("info: {e}"))?;
    unload_all();
    Ok(())
}

fn freed_by_another() -> Result<(), Failure> {
    unload_all();
    load("heapcheck-plugin", "1.0.0")?;
    let before = (usage(), held("heapcheck")?);
    let p = heapcheck(|t| (t.give)(40))?;
    check!(!p.is_null(), "give refused");
    check_eq!(held("heapcheck")?.bytes, before.1.bytes + 40, "heapcheck after giving 40 bytes away");
    // The loader frees it, not heapcheck: the block still comes off
    // heapcheck's account.
    heap::dealloc(p as u64, 40, 1).map_err(|e| failure!("free: {e}"))?;
    check_eq!((usage(), held("heapcheck")?), before, "figures after another freed the block");
    check!(heap::dealloc(p as u64, 40, 1).is_err(), "a double free was accepted");
    check_eq!(usage(), before.0, "figures after the refused double free");
    unload_all();
    Ok(())
}

fn leak_at_unload() -> Result<(), Failure> {
    unload_all();
    let before = usage();
    load("heapcheck-plugin", "1.0.0")?;
    let id = id_of("heapcheck")?;
    check_eq!(heapcheck(|t| (t.leak)(1000))?, 0, "leak");
    check_eq!(heapcheck(|t| (t.hold)(24))?, 0, "hold");
    unload("heapcheck")?;
    check_eq!(heap::held_by(id), None, "the unloaded version's account");
    let after = usage();
    check_eq!(
        (after.ledger.leaked, after.ledger.leaks),
        (before.ledger.leaked.plus(bytes(1000)), before.ledger.leaks + 1),
        "the leak found at unload (its fini freed the 24 bytes held)"
    );
    check_eq!((after.heap_used, after.frames_used), (before.heap_used, before.frames_used), "heap and frames");
    check_eq!(after.ledger.kept, before.ledger.kept, "nothing kept");
    Ok(())
}

fn handover() -> Result<(), Failure> {
    unload_all();
    load("heapcheck-plugin", "1.0.0")?;
    let handed = heapcheck(|t| (t.handed)())?;
    let old = id_of("heapcheck")?;
    check_eq!(heapcheck(|t| ((t.hold)(64), (t.leak)(32)))?, (0, 0), "hold and leak");
    let before = usage();
    swap("heapcheck", "2.0.0")?;
    check_eq!(heapcheck(|t| ((t.generation)(), (t.handed)()))?, (2, handed), "the new version and its block");
    check_eq!(heap::held_by(old), None, "the retired version's account");
    check_eq!(held("heapcheck")?, bytes(HANDED_BYTES as u64), "the successor holds the adopted block");
    let after = usage();
    check_eq!(
        (after.ledger.leaked, after.ledger.leaks),
        (before.ledger.leaked.plus(bytes(32)), before.ledger.leaks + 1),
        "the retired version's leak (retire freed the 64 bytes held)"
    );
    check_eq!(after.heap_used, before.heap_used - 64 - 32, "heap bytes in use");
    // Back: the block goes on to the next successor, no leak this time.
    swap("heapcheck", "1.0.0")?;
    check_eq!(heapcheck(|t| (t.handed)())?, handed, "the block after the swap back");
    check_eq!(usage().ledger.leaks, after.ledger.leaks, "leaks after the swap back");
    unload_all();
    Ok(())
}

fn called_off() -> Result<(), Failure> {
    unload_all();
    load("heapcheck-plugin", "1.0.0")?;
    let before = (usage(), held("heapcheck")?, id_of("heapcheck")?);
    heapcheck(|t| (t.refuse_next_import)())?;
    match registry::swap("heapcheck", "2.0.0") {
        Err(registry::Error::StateRefused { .. }) => {}
        other => return Err(failure!("swap with the import refusing: {other:?}")),
    }
    check_eq!(heapcheck(|t| (t.generation)())?, 1, "the version that stays");
    check_eq!(
        (usage(), held("heapcheck")?, id_of("heapcheck")?),
        before,
        "figures after the called-off swap (the adopted block went back)"
    );
    // The block is the old version's again: its fini frees it, no leak.
    unload("heapcheck")?;
    check_eq!(usage().ledger.leaks, before.0.ledger.leaks, "leaks after unloading");
    Ok(())
}

/// Last among the small tests: the kept blocks stay allocated for the
/// rest of the boot.
fn panicked() -> Result<(), Failure> {
    unload_all();
    let before = usage();
    load("heapcheck-plugin", "1.0.0")?;
    check_eq!(heapcheck(|t| (t.hold)(48))?, 0, "hold");
    check!(crate::shell::execute("heapcheck panic").is_err(), "`heapcheck panic` did not fail");
    unload("heapcheck")?;
    let after = usage();
    let left = Totals { bytes: HANDED_BYTES as u64 + 48, blocks: 2 };
    check_eq!(after.ledger.kept, before.ledger.kept.plus(left), "kept after the failed plugin unloaded");
    check_eq!(
        (after.heap_used, after.frames_used),
        (before.heap_used + left.bytes, before.frames_used),
        "heap and frames: everything back but the kept blocks"
    );
    check_eq!(after.ledger.leaks, before.ledger.leaks + 1, "leaks");
    Ok(())
}

/// How many events cpuhp has logged, if it is loaded.
fn cpuhp_events() -> Result<Option<u64>, Failure> {
    if registry::version_of("cpuhp").is_none() {
        return Ok(None);
    }
    Ok(Some(with(|t: &Cpuhp| (t.next_seq)())? - 1))
}

/// A plugin to put through the loops.
struct Subject {
    name: &'static str,
    /// The version it starts at and the one it is swapped with.
    versions: [&'static str; 2],
    /// Loads it with what it needs around it, at the first version.
    setup: fn() -> Result<(), Failure>,
    /// One unload/load cycle of it (and of what requires it).
    reload: fn() -> Result<(), Failure>,
}

/// Swaps `s` once; checks that the version it replaced closed its account
/// without a leak.
fn swap_round(s: &Subject, to: &str) -> Result<(), Failure> {
    let (old, leaks) = (id_of(s.name)?, usage().ledger.leaks);
    swap(s.name, to)?;
    check_eq!(heap::held_by(old), None, "the account of {} after the swap to {to}", s.name);
    check_eq!(usage().ledger.leaks, leaks, "leaks found retiring {} for {to}", s.name);
    Ok(())
}

fn reload_round(s: &Subject) -> Result<(), Failure> {
    let (old, leaks) = (id_of(s.name)?, usage().ledger.leaks);
    (s.reload)()?;
    check_eq!(heap::held_by(old), None, "the account of the unloaded {}", s.name);
    check_eq!(usage().ledger.leaks, leaks, "leaks found unloading {}", s.name);
    Ok(())
}

/// Figures at one point of the loops: the loader's and the subject's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mark {
    usage: Usage,
    held: Totals,
}

fn mark(s: &Subject) -> Result<Mark, Failure> {
    Ok(Mark { usage: usage(), held: held(s.name)? })
}

/// One swap there and back and one reload, so that the registry's and
/// the shell's tables have grown to hold two versions at once; then, if
/// cpuhp lies under the subject, reloads until cpuhp's event log is full:
/// the log is bounded, and until it holds its newest LOG_CAPACITY each
/// reload that registers a cpuhp state adds events (and log memory, on
/// cpuhp's account). cpuhp's own reloads start a new log each time.
fn warm_up(s: &Subject) -> Result<(), Failure> {
    let [a, b] = s.versions;
    swap_round(s, b)?;
    swap_round(s, a)?;
    reload_round(s)?;
    let mut warm = 0;
    while s.name != "cpuhp-plugin" && cpuhp_events()?.is_some_and(|n| n <= LOG_CAPACITY as u64) {
        reload_round(s)?;
        warm += 1;
        check!(warm <= 4 * LOG_CAPACITY, "cpuhp's event log does not fill up with reloads of {}", s.name);
    }
    Ok(())
}

/// The loops: after the warm-up, 20 swaps and 20 unload/load cycles, each
/// back to its starting figures exactly, to the byte and the frame. The
/// two starts differ in one way only: a freshly loaded version builds its
/// state as it goes, a swapped-in one rebuilds it from the state blob, so
/// its containers may have other capacities; that difference must lie on
/// the subject's own account (no other account, no leak, no frame moves).
fn loops(s: &Subject) -> Result<(), Failure> {
    unload_all();
    (s.setup)()?;
    warm_up(s)?;
    let loaded = mark(s)?;
    let [a, b] = s.versions;
    swap_round(s, b)?;
    swap_round(s, a)?;
    let swapped = mark(s)?;
    // (The loader heap's bytes in use count the allocator's rounding, the
    // accounts the bytes asked for, so the heap is not compared here.)
    let others = |m: &Mark| (m.usage.ledger.held.bytes - m.held.bytes, m.usage.ledger.leaked, m.usage.frames_used);
    check_eq!(others(&swapped), others(&loaded), "other accounts, leaks and frames, as loaded and as swapped in");
    for round in 0..ROUNDS {
        swap_round(s, s.versions[(round + 1) % 2])?;
    }
    let after_swaps = mark(s)?;
    for _ in 0..ROUNDS {
        reload_round(s)?;
    }
    let after_reloads = mark(s)?;
    crate::println!(
        "  {}: {ROUNDS} swaps: heap {} -> {} bytes in use, frames {} -> {}, its account {} -> {} bytes; \
         {ROUNDS} unload/load: heap {} -> {} bytes, frames {} -> {}, its account {} -> {} bytes; leaks {}",
        s.name,
        swapped.usage.heap_used,
        after_swaps.usage.heap_used,
        swapped.usage.frames_used,
        after_swaps.usage.frames_used,
        swapped.held.bytes,
        after_swaps.held.bytes,
        loaded.usage.heap_used,
        after_reloads.usage.heap_used,
        loaded.usage.frames_used,
        after_reloads.usage.frames_used,
        loaded.held.bytes,
        after_reloads.held.bytes,
        after_reloads.usage.ledger.leaks,
    );
    check_eq!(after_swaps, swapped, "figures after {ROUNDS} swaps of {}", s.name);
    check_eq!(after_reloads, loaded, "figures after {ROUNDS} unload/load cycles of {}", s.name);
    unload_all();
    Ok(())
}

/// cpuhp with hprecorder's states registered: the swaps carry them.
fn cpuhp_loops() -> Result<(), Failure> {
    loops(&Subject {
        name: "cpuhp-plugin",
        versions: ["1.2.0", "1.3.0"],
        setup: || {
            load("cpuhp-plugin", "1.2.0")?;
            load("hprecorder-plugin", "1.0.0")
        },
        reload: || {
            unload("hprecorder")?;
            unload("cpuhp")?;
            load("cpuhp-plugin", "1.2.0")?;
            load("hprecorder-plugin", "1.0.0")
        },
    })
}

/// counter with consumer calling it: the swaps re-point its handle.
fn counter_loops() -> Result<(), Failure> {
    loops(&Subject {
        name: "counter-plugin",
        versions: ["1.0.0", "2.0.0"],
        setup: || {
            load("counter-plugin", "1.0.0")?;
            load("consumer-plugin", "1.0.0")
        },
        reload: || {
            unload("consumer")?;
            unload("counter")?;
            load("counter-plugin", "1.0.0")?;
            load("consumer-plugin", "1.0.0")
        },
    })
}

/// consumer over counter 2.0.0, which both consumer versions take.
fn consumer_loops() -> Result<(), Failure> {
    loops(&Subject {
        name: "consumer-plugin",
        versions: ["1.0.0", "2.0.0"],
        setup: || {
            load("counter-plugin", "2.0.0")?;
            load("consumer-plugin", "1.0.0")
        },
        reload: || {
            unload("consumer")?;
            load("consumer-plugin", "1.0.0")
        },
    })
}

/// vmx over cpuhp: each swap hands the VMXON regions over by pointer
/// (the successor adopts them), each unload frees them in fini.
fn vmx_loops() -> Result<(), Failure> {
    loops(&Subject {
        name: "vmx-plugin",
        versions: ["1.0.0", "1.1.0"],
        setup: || {
            load("cpuhp-plugin", "1.2.0")?;
            load("vmx-plugin", "1.0.0")?;
            check!(held("vmx")?.bytes >= 4096, "vmx-plugin holds no VMXON region");
            Ok(())
        },
        reload: || {
            unload("vmx")?;
            load("vmx-plugin", "1.0.0")
        },
    })
}
