//! Transactional hot swap: new versions load and init beside the old ones,
//! then with the world stopped state moves across and every consumer's
//! handle is re-pointed; on any failure the old versions stay untouched.

use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::c_void;
use core::sync::atomic::{AtomicU64, Ordering};
use loader_core::plugin::heap::End;
use loader_core::plugin::resolve::{self, Use};
use semver::Version;

use super::{
    active_offers, find, guard, heap, image, init, link, load_image, parse_version, provides_of, publish_commands,
    remove, Error, Plugin, Provide, Registry, Require, State, OP, REG,
};

/// Figures of the last successful swap: TSC ticks the world was stopped.
static LAST_BLACKOUT: AtomicU64 = AtomicU64::new(0);

pub fn last_blackout_tsc() -> u64 {
    LAST_BLACKOUT.load(Ordering::Relaxed)
}

/// Replaces loaded plugin `name` by `version` from the store, carrying its
/// state across (see [`swap_all`]).
pub fn swap(name: &str, version: &str) -> Result<(), Error> {
    swap_all(&[(name, version)])
}

/// One plugin of a swap transaction.
struct Swap {
    name: String,
    old: u64,
    old_version: Version,
    new: u64,
    version: Version,
}

/// A new version's image, mapped, with the interfaces it provides.
type NewImage = (Vec<Provide>, image::Image);

/// The new versions of the swap in progress, from their inits to the end
/// of the state transfer.
static SWAPPING_IN: spin::Mutex<Vec<u64>> = spin::Mutex::new(Vec::new());

/// Whether plugin `id` is the new version of a swap in progress, so that
/// its init knows its state will come from its predecessor.
pub fn is_swapping_in(id: u64) -> bool {
    SWAPPING_IN.lock().contains(&id)
}

/// Replaces several loaded plugins by other versions as one transaction:
/// consumers swapped together may change their ranges with their
/// providers. On any failure every old version stays active and untouched.
pub fn swap_all(targets: &[(&str, &str)]) -> Result<(), Error> {
    let _op = OP.lock();
    let (mut txn, images) = plan(targets)?;
    register(&mut txn, images)?;
    // Each new version may adopt heap blocks its predecessor hands over,
    // from its init to the end of the transaction.
    let handover = txn.iter().try_for_each(|t| heap::begin_handover(t.old, t.new)).map_err(Error::Heap);
    // Inits run before the world stops (they may need the other CPUs),
    // providers before their consumers; the new versions stay invisible
    // until the handles are re-pointed.
    *SWAPPING_IN.lock() = txn.iter().map(|t| t.new).collect();
    let mut inited = Vec::new();
    let result = handover.and_then(|()| init_all(&txn, &mut inited)).and_then(|()| transfer(&txn));
    *SWAPPING_IN.lock() = Vec::new();
    match result {
        Ok(blackout) => {
            commit(&txn, blackout);
            Ok(())
        }
        Err(e) => {
            abort(&txn, &inited, &e);
            Err(e)
        }
    }
}

/// Checks each target and maps its new image; nothing is registered yet.
fn plan(targets: &[(&str, &str)]) -> Result<(Vec<Swap>, Vec<NewImage>), Error> {
    let mut txn: Vec<Swap> = Vec::new();
    let mut images = Vec::new();
    for (name, version) in targets {
        let name = resolve::plugin_name(name);
        let version = parse_version(version)?;
        let (old, old_version) = {
            let r = REG.lock();
            let p = find(&r, &name).ok_or_else(|| Error::NotLoaded(name.clone()))?;
            (p.id, p.version.clone())
        };
        if old_version == version {
            return Err(Error::SameVersion { name, version });
        }
        if txn.iter().any(|t| t.old == old) {
            return Err(Error::TwiceInSwap(name));
        }
        let (img, _) = load_image(&name, Some(&version))?;
        images.push((provides_of(&img)?, img));
        txn.push(Swap { name, old, old_version, new: 0, version });
    }
    Ok((txn, images))
}

/// Gives the new versions their ids, checks the transaction, links them
/// against the providers as they will be after it, and registers them
/// (still loading, so invisible to resolution).
fn register(txn: &mut [Swap], images: Vec<NewImage>) -> Result<(), Error> {
    let olds: Vec<u64> = txn.iter().map(|t| t.old).collect();
    let mut r = REG.lock();
    for t in txn.iter_mut() {
        t.new = r.next_id;
        r.next_id += 1;
    }
    check_transaction(&r, txn, &images)?;
    let mut offers = active_offers(&r, &olds);
    for (t, (provides, _)) in txn.iter().zip(&images) {
        offers.extend(provides.iter().map(|q| (t.new, t.name.as_str(), q)));
    }
    let requires: Vec<Vec<Require>> = txn
        .iter()
        .zip(&images)
        .map(|(t, (provides, img))| link(t.new, img, provides, &offers))
        .collect::<Result<_, _>>()?;
    drop(offers);
    // Heap accounts before any new code runs; all or none.
    for (k, (t, (_, img))) in txn.iter().zip(&images).enumerate() {
        if let Err(e) = heap::open(t.new, img.base(), img.size()) {
            for opened in &txn[..k] {
                heap::close(opened.new, End::Refused);
            }
            return Err(Error::Heap(e));
        }
    }
    for ((t, (provides, img)), requires) in txn.iter().zip(images).zip(requires) {
        r.plugins.push(Plugin::loading(t.new, t.name.clone(), t.version.clone(), img, provides, requires));
    }
    Ok(())
}

/// Runs the new versions' inits in dependency order, recording in `inited`
/// the indices of those that succeeded (for [`abort`]).
fn init_all(txn: &[Swap], inited: &mut Vec<usize>) -> Result<(), Error> {
    for k in init_order(txn) {
        let start = crate::time::rdtsc();
        init(txn[k].new)?;
        set_load_tsc(txn[k].new, crate::time::rdtsc() - start);
        inited.push(k);
    }
    Ok(())
}

/// The new versions become active and keep what they adopted; the old
/// ones handed their state over, so they get no fini, only their retire
/// (which frees their own heap) and their memory freed.
fn commit(txn: &[Swap], blackout: u64) {
    LAST_BLACKOUT.store(blackout, Ordering::Relaxed);
    for t in txn {
        if let Some(p) = REG.lock().plugins.iter_mut().find(|p| p.id == t.new) {
            p.state = State::Active;
        }
        heap::end_handover(t.new, true);
        remove(t.old, retire(t));
        publish_commands(t.new);
        log::info!("swapped {} {} -> {} (world stopped for {blackout} TSC ticks)", t.name, t.old_version, t.version);
    }
}

/// Runs the retire of `t`'s old version, once the swap committed: how it
/// ended, for its heap account.
fn retire(t: &Swap) -> End {
    let entry = REG.lock().plugins.iter().find(|p| p.id == t.old).map(|p| {
        let active = p.state == State::Active;
        (p.image.descriptor().retire, active)
    });
    match entry {
        Some((_, false)) | None => End::Panicked,
        Some((None, true)) => End::Retired,
        // SAFETY: the old image's own entry point; no CPU is in its code
        // (the handles point to the new version since the world stopped).
        Some((Some(f), true)) => match guard::call(t.old, &t.name, || unsafe { f() }) {
            Ok(()) => End::Retired,
            Err(message) => {
                log::warn!("{} {} panicked in retire ({message})", t.name, t.old_version);
                End::Panicked
            }
        },
    }
}

/// Whether `e` is a panic of the new version of `t` (in its init or state
/// import; the export is the old version's).
fn new_version_panicked(e: &Error, t: &Swap) -> bool {
    matches!(e, Error::Panicked { name, operation: "init" | "state import", .. } if *name == t.name)
}

/// Undoes the inits that ran (newest first), gives back what the new
/// versions adopted, and drops every new version.
fn abort(txn: &[Swap], inited: &[usize], e: &Error) {
    let mut ends: Vec<End> =
        txn.iter().map(|t| if new_version_panicked(e, t) { End::Panicked } else { End::Refused }).collect();
    for &k in inited.iter().rev() {
        let fini = REG.lock().plugins.iter().find(|p| p.id == txn[k].new).map(|p| p.image.descriptor().fini);
        if let Some(fini) = fini {
            // SAFETY: the new image's own entry point, undoing its init.
            if guard::call(txn[k].new, &txn[k].name, || unsafe { fini() }).is_err() {
                ends[k] = End::Panicked;
            }
        }
    }
    for (t, end) in txn.iter().zip(ends) {
        heap::end_handover(t.new, false);
        remove(t.new, end);
    }
}

/// Checks a transaction before anything runs: consumers outside it must
/// accept the new versions, and state must be able to cross.
fn check_transaction(r: &Registry, txn: &[Swap], images: &[NewImage]) -> Result<(), Error> {
    let olds: Vec<u64> = txn.iter().map(|t| t.old).collect();
    for (t, (provides, img)) in txn.iter().zip(images) {
        let uses: Vec<Use> = r
            .plugins
            .iter()
            .filter(|c| !olds.contains(&c.id))
            .flat_map(|c| {
                c.requires.iter().filter(|q| q.provider == t.old).map(move |q| Use {
                    consumer: &c.name,
                    interface: &q.interface,
                    range: &q.range,
                    table_size: q.table_size,
                })
            })
            .collect();
        let offered: Vec<(&str, &Version, u64)> =
            provides.iter().map(|p| (p.interface.as_str(), &p.version, p.table_size)).collect();
        resolve::check_replacement(&uses, &offered).map_err(Error::BreaksConsumers)?;
        let old = r.plugins.iter().find(|p| p.id == t.old).expect("found when the transaction was built");
        if old.image.descriptor().state_version != 0 && img.descriptor().import_state.is_none() {
            return Err(Error::NoStateTransfer { name: t.name.clone() });
        }
    }
    Ok(())
}

/// Indices of `txn` in an order where every new version comes after the
/// new versions it requires.
fn init_order(txn: &[Swap]) -> Vec<usize> {
    let r = REG.lock();
    let needs = |k: usize| -> Vec<u64> {
        r.plugins
            .iter()
            .find(|p| p.id == txn[k].new)
            .map_or(Vec::new(), |p| p.requires.iter().map(|q| q.provider).collect())
    };
    let mut order: Vec<usize> = Vec::new();
    while order.len() < txn.len() {
        let before = order.len();
        for k in 0..txn.len() {
            let ready =
                needs(k).iter().all(|id| !txn.iter().enumerate().any(|(j, t)| t.new == *id && !order.contains(&j)));
            if !order.contains(&k) && ready {
                order.push(k);
            }
        }
        // New versions that require each other have no right order: they
        // init in the order given.
        if order.len() == before {
            order.extend((0..txn.len()).filter(|k| !order.contains(k)).collect::<Vec<_>>());
        }
    }
    order
}

fn set_load_tsc(id: u64, tsc: u64) {
    if let Some(p) = REG.lock().plugins.iter_mut().find(|p| p.id == id) {
        p.load_tsc = tsc;
    }
}

/// With the world stopped: each old version exports its state, its new
/// version imports it, and every consumer's handle moves to the new
/// tables. Returns the blackout in TSC ticks.
fn transfer(txn: &[Swap]) -> Result<u64, Error> {
    type Export = unsafe extern "C" fn(*mut u8, usize) -> isize;
    type Import = unsafe extern "C" fn(u32, *const u8, usize) -> i32;
    let pairs: Vec<(Option<Export>, u32, Option<Import>)> = {
        let r = REG.lock();
        txn.iter()
            .map(|t| {
                let old = r.plugins.iter().find(|p| p.id == t.old).expect("registered").image.descriptor();
                let new = r.plugins.iter().find(|p| p.id == t.new).expect("registered").image.descriptor();
                (old.export_state, old.state_version, new.import_state)
            })
            .collect()
    };
    let mut blob = alloc::vec![0u8; STATE_CAPACITY];
    // The blackout counts from the stop request: the first CPU may park
    // as soon as the IPIs go out.
    let t0 = crate::time::rdtsc();
    let world = crate::smp::stop_world().map_err(Error::WorldStop)?;
    for (t, (export, state_version, import)) in txn.iter().zip(pairs) {
        let (Some(export), Some(import)) = (export, import) else { continue };
        let name = t.name.as_str();
        // SAFETY: the old image's entry point, with a buffer of that size.
        let len = guard::call(t.old, name, || unsafe { export(blob.as_mut_ptr(), blob.len()) })
            .map_err(|message| Error::Panicked { name: name.into(), operation: "state export", message })?;
        if len < 0 {
            return Err(Error::StateExport { name: name.into(), code: len });
        }
        // SAFETY: the new image's entry point, with the exported bytes.
        let code = guard::call(t.new, name, || unsafe { import(state_version, blob.as_ptr(), len as usize) })
            .map_err(|message| Error::Panicked { name: name.into(), operation: "state import", message })?;
        if code != 0 {
            return Err(Error::StateRefused { name: name.into(), code });
        }
    }
    let mut r = REG.lock();
    // (old id, new id, the new version's tables by interface)
    type Move = (u64, u64, Vec<(String, *const c_void)>);
    let mut moves: Vec<Move> = Vec::new();
    for t in txn {
        let p = r.plugins.iter().find(|p| p.id == t.new).expect("registered");
        moves.push((t.old, t.new, p.provides.iter().map(|q| (q.interface.clone(), q.table)).collect()));
    }
    for q in r.plugins.iter_mut().flat_map(|p| p.requires.iter_mut()) {
        let Some((_, new, tables)) = moves.iter().find(|(old, _, _)| *old == q.provider) else { continue };
        let table = tables.iter().find(|(i, _)| *i == q.interface).expect("checked: every interface in use stays").1;
        q.handle.table.store(table as *mut c_void, Ordering::Release);
        q.provider = *new;
    }
    drop(r);
    let blackout = crate::time::rdtsc() - t0;
    drop(world);
    Ok(blackout)
}

/// Room for a plugin's exported state.
const STATE_CAPACITY: usize = 64 * 1024;
