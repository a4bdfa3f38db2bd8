//! The registry of loaded plugins: load (resolve, link, init, or roll back
//! completely), unload (refused while dependents exist unless they go
//! first), and transactional hot swap with state transfer.
//!
//! Lock order: `OP` (one load/unload/swap at a time, held across calls into
//! plugins) before `REG` (the data, held only briefly and never across a call
//! into plugin code, because plugins call back into the registry).

use super::{guard, image, store};
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ffi::c_void;
use core::fmt;
use loader_core::plugin::resolve::{self, Broken, Need, Offer, Unmet, Use};
use plugins::{CommandFn, CpuDescribeFn, CpuLifecycle, Handle};
use semver::{Version, VersionReq};
use spin::Mutex;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Being loaded or swapped in: not yet visible to resolution.
    Loading,
    Active,
    /// An entry point panicked; the code stays mapped (consumers may still
    /// hold its tables) until it is unloaded.
    Failed(String),
}

struct Provide {
    interface: String,
    version: Version,
    table: *const c_void,
    table_size: u64,
}

struct Require {
    interface: String,
    range: VersionReq,
    /// Bytes of the table type the plugin was built against.
    table_size: u64,
    provider: u64,
    /// Boxed: plugins keep its address until they unload.
    handle: Box<Handle>,
}

pub struct Command {
    pub name: String,
    pub help: String,
    pub f: CommandFn,
}

struct Plugin {
    id: u64,
    name: String,
    version: Version,
    state: State,
    image: image::Image,
    provides: Vec<Provide>,
    requires: Vec<Require>,
    commands: Vec<Command>,
    /// What the shell's `cpus` asks (`mv_cpu_describer`).
    cpu_describer: Option<CpuDescribeFn>,
    /// TSC ticks from the start of loading to the end of init.
    load_tsc: u64,
    loaded_at_us: u64,
}

impl Plugin {
    /// A record for a plugin being loaded or swapped in: linked, not yet
    /// initialised, invisible to resolution.
    fn loading(
        id: u64,
        name: String,
        version: Version,
        image: image::Image,
        provides: Vec<Provide>,
        requires: Vec<Require>,
    ) -> Plugin {
        Plugin {
            id,
            name,
            version,
            state: State::Loading,
            image,
            provides,
            requires,
            commands: Vec::new(),
            cpu_describer: None,
            load_tsc: 0,
            loaded_at_us: crate::time::uptime_us(),
        }
    }
}

// SAFETY: the raw pointers are addresses inside the plugin's own image,
// which the record owns; access goes through `REG`.
unsafe impl Send for Plugin {}

struct Registry {
    plugins: Vec<Plugin>,
    next_id: u64,
}

static REG: Mutex<Registry> = Mutex::new(Registry { plugins: Vec::new(), next_id: 1 });
static OP: Mutex<()> = Mutex::new(());

#[derive(Debug)]
pub enum Error {
    NotInStore {
        name: String,
        version: Option<Version>,
    },
    BadVersion(String),
    Image(loader_core::plugin::elf::Error),
    NameMismatch {
        file: String,
        wanted: String,
    },
    AlreadyLoaded {
        name: String,
        version: Version,
    },
    NotLoaded(String),
    Unmet(Vec<Unmet>),
    DuplicateProvider {
        interface: String,
        existing: String,
    },
    MissingTable(String),
    InitFailed {
        name: String,
        code: i32,
    },
    Panicked {
        name: String,
        operation: &'static str,
        message: String,
    },
    HasDependents {
        name: String,
        dependents: Vec<String>,
    },
    BreaksConsumers(Vec<Broken>),
    StateExport {
        name: String,
        code: isize,
    },
    StateRefused {
        name: String,
        code: i32,
    },
    NoStateTransfer {
        name: String,
    },
    SameVersion {
        name: String,
        version: Version,
    },
    TwiceInSwap(String),
    WorldStop(crate::smp::Error),
    CommandExists(String),
    /// Another plugin describes CPUs for `cpus` already.
    DescriberTaken(String),
    /// A CPU describer returned an error code.
    DescribeFailed {
        name: String,
        cpu: u32,
        code: i32,
    },
}

impl From<loader_core::plugin::elf::Error> for Error {
    fn from(e: loader_core::plugin::elf::Error) -> Self {
        Error::Image(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotInStore { name, version: Some(v) } => {
                write!(f, "{name} {v} is not in the plugin store; `store` lists what is")
            }
            Error::NotInStore { name, version: None } => {
                write!(f, "no version of {name} is in the plugin store; `store` lists what is")
            }
            Error::BadVersion(v) => write!(f, "`{v}` is not a version (expected e.g. 1.2.0)"),
            Error::Image(e) => write!(f, "{e}"),
            Error::NameMismatch { file, wanted } => write!(f, "the file holds plugin {file}, not {wanted}"),
            Error::AlreadyLoaded { name, version } => {
                write!(f, "{name} {version} is already loaded; use `swap {name} <version>` to change versions")
            }
            Error::NotLoaded(name) => write!(f, "{name} is not loaded; `plugins` lists what is"),
            Error::Unmet(list) => {
                write!(f, "unmet requirements: ")?;
                for (i, u) in list.iter().enumerate() {
                    write!(f, "{}{u}", if i == 0 { "" } else { ", " })?;
                }
                write!(f, "; load the providers first")
            }
            Error::DuplicateProvider { interface, existing } => {
                write!(f, "interface `{interface}` is already provided by {existing}; unload it first")
            }
            Error::MissingTable(i) => {
                write!(f, "the metadata promises interface `{i}` but the descriptor has no table for it")
            }
            Error::InitFailed { name, code } => {
                write!(f, "{name}'s init failed with code {code}; nothing of it stays loaded")
            }
            Error::Panicked { name, operation, message } => write!(f, "{name} panicked in {operation}: {message}"),
            Error::HasDependents { name, dependents } => write!(
                f,
                "{name} is required by {}; unload those first or use `unload -r {name}`",
                dependents.join(", ")
            ),
            Error::BreaksConsumers(list) => {
                write!(f, "the swap would break consumers: ")?;
                for (i, b) in list.iter().enumerate() {
                    write!(f, "{}{b}", if i == 0 { "" } else { "; " })?;
                }
                Ok(())
            }
            Error::StateExport { name, code } => write!(f, "{name} could not export its state (code {code})"),
            Error::StateRefused { name, code } => {
                write!(f, "the new {name} refused the old version's state (code {code}); the old version stays active")
            }
            Error::NoStateTransfer { name } => {
                write!(f, "{name} carries state but the new version cannot import it; the old version stays active")
            }
            Error::SameVersion { name, version } => write!(f, "{name} {version} is the version already running"),
            Error::TwiceInSwap(name) => write!(f, "{name} appears twice in one swap; name each plugin once"),
            Error::WorldStop(e) => write!(f, "could not stop the other CPUs for the swap: {e}"),
            Error::CommandExists(c) => write!(f, "a shell command `{c}` exists already"),
            Error::DescriberTaken(name) => write!(f, "{name} describes the CPUs for `cpus` already; unload it first"),
            Error::DescribeFailed { name, cpu, code } => {
                write!(f, "{name} could not describe cpu {cpu} (error {code})")
            }
        }
    }
}

fn find<'a>(r: &'a Registry, name: &str) -> Option<&'a Plugin> {
    r.plugins.iter().find(|p| p.name == name && p.state != State::Loading)
}

fn parse_version(v: &str) -> Result<Version, Error> {
    Version::parse(v).map_err(|_| Error::BadVersion(v.into()))
}

/// Reads a plugin file from the store and maps it, checking that it is the
/// plugin asked for.
fn load_image(name: &str, version: Option<&Version>) -> Result<(image::Image, Version), Error> {
    let (found, bytes) =
        store::find(name, version).ok_or_else(|| Error::NotInStore { name: name.into(), version: version.cloned() })?;
    let img = image::load(&bytes, super::exports::resolve)?;
    if img.metadata().name != name {
        return Err(Error::NameMismatch { file: img.metadata().name.clone(), wanted: name.into() });
    }
    Ok((img, found))
}

/// The interfaces `img` provides, with their tables.
fn provides_of(img: &image::Image) -> Result<Vec<Provide>, Error> {
    // SAFETY: the descriptor and its tables live in the mapped image.
    let tables = unsafe { img.descriptor().provides.as_slice() };
    img.metadata()
        .provides
        .iter()
        .map(|link| {
            // SAFETY: names in the descriptor are 'static strings of the image.
            let t = tables.iter().find(|t| unsafe { t.name.as_str() } == link.interface.as_str());
            Ok(Provide {
                interface: link.interface.clone(),
                version: parse_version(&link.version)?,
                table: t.ok_or_else(|| Error::MissingTable(link.interface.clone()))?.table,
                table_size: link.table_size,
            })
        })
        .collect()
}

/// An interface on offer while linking: who provides it (id, name) and how.
type Candidate<'a> = (u64, &'a str, &'a Provide);

/// The interfaces of the active plugins, except those in `except`.
fn active_offers<'a>(r: &'a Registry, except: &[u64]) -> Vec<Candidate<'a>> {
    r.plugins
        .iter()
        .filter(|p| p.state == State::Active && !except.contains(&p.id))
        .flat_map(|p| p.provides.iter().map(move |q| (p.id, p.name.as_str(), q)))
        .collect()
}

/// Resolves the requirements of `img` (to become plugin `id`) against
/// `offers`, and checks that it provides nothing another offer provides.
fn link(id: u64, img: &image::Image, provides: &[Provide], offers: &[Candidate]) -> Result<Vec<Require>, Error> {
    let others: Vec<&Candidate> = offers.iter().filter(|o| o.0 != id).collect();
    for p in provides {
        if let Some(o) = others.iter().find(|o| o.2.interface == p.interface) {
            return Err(Error::DuplicateProvider { interface: p.interface.clone(), existing: o.1.into() });
        }
    }
    let links = &img.metadata().requires;
    let ranges: Vec<VersionReq> = links
        .iter()
        .map(|l| VersionReq::parse(&l.version).map_err(|_| Error::BadVersion(l.version.clone())))
        .collect::<Result<_, _>>()?;
    let needs: Vec<Need> = links
        .iter()
        .zip(&ranges)
        .map(|(l, range)| Need { interface: &l.interface, range, table_size: l.table_size })
        .collect();
    let plain: Vec<Offer> = others
        .iter()
        .map(|o| Offer { plugin: o.1, interface: &o.2.interface, version: &o.2.version, table_size: o.2.table_size })
        .collect();
    let chosen = resolve::resolve(&needs, &plain).map_err(Error::Unmet)?;
    Ok(links
        .iter()
        .zip(ranges)
        .zip(chosen)
        .map(|((link, range), i)| Require {
            interface: link.interface.clone(),
            range,
            table_size: link.table_size,
            provider: others[i].0,
            handle: Box::new(Handle::new(others[i].2.table as *mut c_void)),
        })
        .collect())
}

/// Loads plugin `name` (or `name-plugin`), at `version` or the highest in
/// the store, and runs its init. Any failure leaves nothing behind.
pub fn load(name: &str, version: Option<&str>) -> Result<(String, Version), Error> {
    let _op = OP.lock();
    let name = resolve::plugin_name(name);
    let version = version.map(parse_version).transpose()?;
    let start = crate::time::rdtsc();
    if let Some(p) = find(&REG.lock(), &name) {
        return Err(Error::AlreadyLoaded { name, version: p.version.clone() });
    }
    let (img, found) = load_image(&name, version.as_ref())?;
    let provides = provides_of(&img)?;
    let id = {
        let mut r = REG.lock();
        let id = r.next_id;
        let requires = link(id, &img, &provides, &active_offers(&r, &[]))?;
        r.next_id += 1;
        r.plugins.push(Plugin::loading(id, name.clone(), found.clone(), img, provides, requires));
        id
    };
    match init(id) {
        Ok(()) => {
            let mut r = REG.lock();
            let p = r.plugins.iter_mut().find(|p| p.id == id).expect("the loading plugin stays registered");
            p.state = State::Active;
            p.load_tsc = crate::time::rdtsc() - start;
            log::info!("loaded {name} {found} at {:#x} ({} bytes)", p.image.base(), p.image.size());
            drop(r);
            publish_commands(id);
            Ok((name, found))
        }
        Err(e) => {
            remove(id);
            Err(e)
        }
    }
}

/// Runs plugin `id`'s init in a guarded call.
fn init(id: u64) -> Result<(), Error> {
    let (name, f) = {
        let r = REG.lock();
        let p = r.plugins.iter().find(|p| p.id == id).expect("init of a registered plugin");
        (p.name.clone(), p.image.descriptor().init)
    };
    // SAFETY: `f` is the init entry of the mapped, linked image.
    match guard::call(id, &name, || unsafe { f() }) {
        Ok(0) => Ok(()),
        Ok(code) => Err(Error::InitFailed { name, code }),
        Err(message) => Err(Error::Panicked { name, operation: "init", message }),
    }
}

/// Drops plugin `id`'s record: its commands, handles and image (memory).
///
/// Once the record is gone nobody finds the plugin any more, but another
/// CPU may still be inside a call into it: a stop-the-world round trip waits
/// until every CPU is outside such calls, and only then is the memory
/// freed. If a CPU does not answer, the image is leaked rather than freed
/// under it.
fn remove(id: u64) {
    crate::shell::unregister_owner(id);
    crate::acpi::sci::drop_owner(id);
    crate::power::system::drop_owner(id);
    crate::interrupts::probe::drop_plugin_table(id);
    let p = {
        let mut r = REG.lock();
        let i = r.plugins.iter().position(|p| p.id == id).expect("removal of a registered plugin");
        r.plugins.remove(i)
    };
    match crate::smp::stop_world() {
        Ok(world) => {
            drop(world);
            drop(p);
        }
        Err(e) => {
            log::error!("{} {}: keeping its memory, a CPU may still run its code: {e}", p.name, p.version);
            core::mem::forget(p);
        }
    }
}

/// The name of plugin `id` while it is active (deferred work of a plugin
/// that failed or went away is not run).
pub fn active_name(id: u64) -> Option<String> {
    REG.lock().plugins.iter().find(|p| p.id == id && p.state == State::Active).map(|p| p.name.clone())
}

/// Where plugin `id`'s image lies: (base, size).
pub fn image_range(id: u64) -> Option<(u64, u64)> {
    REG.lock().plugins.iter().find(|p| p.id == id).map(|p| (p.image.base(), p.image.size()))
}

/// Names of the plugins that require something `id` provides.
fn dependents(r: &Registry, id: u64) -> Vec<String> {
    r.plugins.iter().filter(|p| p.requires.iter().any(|q| q.provider == id)).map(|p| p.name.clone()).collect()
}

/// Unloads `name`; with `recursive`, its dependents first.
pub fn unload(name: &str, recursive: bool) -> Result<Vec<String>, Error> {
    let _op = OP.lock();
    let mut done = Vec::new();
    unload_locked(&resolve::plugin_name(name), recursive, &mut done)?;
    Ok(done)
}

fn unload_locked(name: &str, recursive: bool, done: &mut Vec<String>) -> Result<(), Error> {
    let (id, deps) = {
        let r = REG.lock();
        let p = find(&r, name).ok_or_else(|| Error::NotLoaded(name.into()))?;
        (p.id, dependents(&r, p.id))
    };
    if !deps.is_empty() {
        if !recursive {
            return Err(Error::HasDependents { name: name.into(), dependents: deps });
        }
        for d in deps {
            unload_locked(&d, true, done)?;
        }
    }
    let (fini, active) = {
        let r = REG.lock();
        let p = r.plugins.iter().find(|p| p.id == id).expect("still registered");
        (p.image.descriptor().fini, p.state == State::Active)
    };
    // A failed plugin's fini is not trusted to run.
    if active {
        // SAFETY: `fini` is the mapped image's entry point.
        if let Err(message) = guard::call(id, name, || unsafe { fini() }) {
            log::warn!("{name} panicked in fini ({message}); unloading it anyway");
        }
    }
    remove(id);
    log::info!("unloaded {name}");
    done.push(name.into());
    Ok(())
}

/// The handle of requirement `interface` of plugin `id` (for `mv_interface`).
pub fn handle_for(id: u64, interface: &str) -> *const Handle {
    let r = REG.lock();
    r.plugins
        .iter()
        .find(|p| p.id == id)
        .and_then(|p| p.requires.iter().find(|q| q.interface == interface))
        .map_or(core::ptr::null(), |q| &*q.handle as *const Handle)
}

/// Records a shell command of plugin `id` (for `mv_register_command`).
pub fn add_command(id: u64, name: &str, help: &str, f: CommandFn) -> Result<(), Error> {
    let mut r = REG.lock();
    let caller = r.plugins.iter().find(|p| p.id == id).map(|p| p.name.clone()).unwrap_or_default();
    // The version a swap replaces may keep the name until the swap commits.
    let taken = r
        .plugins
        .iter()
        .filter(|p| p.id != id && p.name != caller && p.state == State::Active)
        .any(|p| p.commands.iter().any(|c| c.name == name));
    if taken {
        return Err(Error::CommandExists(name.into()));
    }
    let p = r.plugins.iter_mut().find(|p| p.id == id).ok_or_else(|| Error::NotLoaded(name.into()))?;
    p.commands.retain(|c| c.name != name);
    p.commands.push(Command { name: name.into(), help: help.into(), f });
    Ok(())
}

/// Records plugin `id`'s CPU describer (for `mv_cpu_describer`). As with
/// commands, the version a swap replaces keeps its own until the swap
/// commits; any other active plugin's is refused.
pub fn set_cpu_describer(id: u64, f: CpuDescribeFn) -> Result<(), Error> {
    let mut r = REG.lock();
    let caller = r.plugins.iter().find(|p| p.id == id).map(|p| p.name.clone()).unwrap_or_default();
    let other = r
        .plugins
        .iter()
        .find(|p| p.id != id && p.name != caller && p.state == State::Active && p.cpu_describer.is_some());
    if let Some(o) = other {
        return Err(Error::DescriberTaken(o.name.clone()));
    }
    let p = r.plugins.iter_mut().find(|p| p.id == id).ok_or_else(|| Error::NotLoaded(caller))?;
    p.cpu_describer = Some(f);
    Ok(())
}

/// How the active plugin that describes CPUs sees `cpu`; `None` when no
/// plugin does (the shell's `cpus` then shows the loader's view). A panic
/// in the describer marks its plugin failed.
pub fn describe_cpu(cpu: u32) -> Option<Result<CpuLifecycle, Error>> {
    // Unstoppable from the lookup to the end of the call: no swap or unload
    // can free the describer in between.
    crate::smp::enter_unstoppable();
    let found = REG
        .lock()
        .plugins
        .iter()
        .filter(|p| p.state == State::Active)
        .find_map(|p| Some((p.id, p.name.clone(), p.cpu_describer?)));
    let r = found.map(|(id, name, f)| {
        let mut out = CpuLifecycle::default();
        match guard::call(id, &name, || f(cpu, &mut out)) {
            Ok(0) => Ok(out),
            Ok(code) => Err(Error::DescribeFailed { name, cpu, code }),
            Err(message) => {
                mark_failed(id, &message);
                Err(Error::Panicked { name, operation: "describing a CPU", message })
            }
        }
    });
    crate::smp::exit_unstoppable();
    r
}

/// Figures of the last successful swap: TSC ticks the world was stopped.
static LAST_BLACKOUT: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

pub fn last_blackout_tsc() -> u64 {
    LAST_BLACKOUT.load(core::sync::atomic::Ordering::Relaxed)
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
    let olds: Vec<u64> = txn.iter().map(|t| t.old).collect();
    {
        let mut r = REG.lock();
        for t in txn.iter_mut() {
            t.new = r.next_id;
            r.next_id += 1;
        }
        check_transaction(&r, &txn, &images)?;
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
        for ((t, (provides, img)), requires) in txn.iter().zip(images).zip(requires) {
            r.plugins.push(Plugin::loading(t.new, t.name.clone(), t.version.clone(), img, provides, requires));
        }
    }
    // Inits run before the world stops (they may need the other CPUs),
    // providers before their consumers; the new versions stay invisible
    // until the handles are re-pointed.
    let order = init_order(&txn);
    *SWAPPING_IN.lock() = txn.iter().map(|t| t.new).collect();
    let mut inited = Vec::new();
    let mut result = Ok(0);
    for &k in &order {
        let start = crate::time::rdtsc();
        if let Err(e) = init(txn[k].new) {
            result = Err(e);
            break;
        }
        set_load_tsc(txn[k].new, crate::time::rdtsc() - start);
        inited.push(k);
    }
    if result.is_ok() {
        result = transfer(&txn);
    }
    *SWAPPING_IN.lock() = Vec::new();
    match result {
        Ok(blackout) => {
            LAST_BLACKOUT.store(blackout, core::sync::atomic::Ordering::Relaxed);
            for t in &txn {
                if let Some(p) = REG.lock().plugins.iter_mut().find(|p| p.id == t.new) {
                    p.state = State::Active;
                }
                // The old version handed its state over: no fini, just its memory.
                remove(t.old);
                publish_commands(t.new);
                log::info!(
                    "swapped {} {} -> {} (world stopped for {blackout} TSC ticks)",
                    t.name,
                    t.old_version,
                    t.version
                );
            }
            Ok(())
        }
        Err(e) => {
            for &k in inited.iter().rev() {
                let fini = REG.lock().plugins.iter().find(|p| p.id == txn[k].new).map(|p| p.image.descriptor().fini);
                if let Some(fini) = fini {
                    // SAFETY: the new image's own entry point, undoing its init.
                    let _ = guard::call(txn[k].new, &txn[k].name, || unsafe { fini() });
                }
            }
            for t in &txn {
                remove(t.new);
            }
            Err(e)
        }
    }
}

/// Checks a transaction before anything runs: consumers outside it must
/// accept the new versions, and state must be able to cross.
fn check_transaction(r: &Registry, txn: &[Swap], images: &[(Vec<Provide>, image::Image)]) -> Result<(), Error> {
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
        q.handle.table.store(table as *mut c_void, core::sync::atomic::Ordering::Release);
        q.provider = *new;
    }
    drop(r);
    let blackout = crate::time::rdtsc() - t0;
    drop(world);
    Ok(blackout)
}

/// Room for a plugin's exported state.
const STATE_CAPACITY: usize = 64 * 1024;

/// One line per plugin for the shell and tests.
pub struct Info {
    pub name: String,
    pub version: Version,
    pub state: State,
    pub provides: Vec<String>,
    pub requires: Vec<String>,
    pub base: u64,
    pub size: u64,
    pub load_tsc: u64,
    pub loaded_at_us: u64,
    pub commands: Vec<(String, String)>,
}

pub fn list() -> Vec<Info> {
    let r = REG.lock();
    r.plugins
        .iter()
        .filter(|p| p.state != State::Loading)
        .map(|p| Info {
            name: p.name.clone(),
            version: p.version.clone(),
            state: p.state.clone(),
            provides: p.provides.iter().map(|q| alloc::format!("{} {}", q.interface, q.version)).collect(),
            requires: p
                .requires
                .iter()
                .map(|q| {
                    let by = r.plugins.iter().find(|o| o.id == q.provider).map_or("?", |o| o.name.as_str());
                    alloc::format!("{} {} ({by})", q.interface, q.range)
                })
                .collect(),
            base: p.image.base(),
            size: p.image.size(),
            load_tsc: p.load_tsc,
            loaded_at_us: p.loaded_at_us,
            commands: p.commands.iter().map(|c| (c.name.clone(), c.help.clone())).collect(),
        })
        .collect()
}

/// Shell handler of every plugin command: `ctx` is the plugin id (high
/// bits) and the command's index in its list (low 16 bits). A panic marks
/// the plugin failed and takes its commands away.
fn run_command(ctx: usize, args: &str) -> Result<(), String> {
    let (id, index) = (ctx as u64 >> 16, ctx & 0xffff);
    let (plugin, f) = {
        let r = REG.lock();
        let p = r.plugins.iter().find(|p| p.id == id && p.state == State::Active).ok_or("the plugin is gone")?;
        (p.name.clone(), p.commands.get(index).ok_or("the command is gone")?.f)
    };
    // SAFETY: a command function of the active plugin's mapped image.
    match guard::call(id, &plugin, || unsafe { f(plugins::StrRef::borrowed(args)) }) {
        Ok(0) => Ok(()),
        Ok(code) => Err(alloc::format!("failed with code {code}")),
        Err(message) => {
            mark_failed(id, &message);
            Err(Error::Panicked { name: plugin, operation: "a shell command", message }.to_string())
        }
    }
}

/// Plugin `id` panicked in an entry point the shell called: it is failed
/// (nothing calls it any more) and its commands go.
fn mark_failed(id: u64, message: &str) {
    if let Some(p) = REG.lock().plugins.iter_mut().find(|p| p.id == id) {
        p.state = State::Failed(message.into());
    }
    crate::shell::unregister_owner(id);
}

/// Gives plugin `id`'s commands to the shell (once it is active).
fn publish_commands(id: u64) {
    let cmds: Vec<(String, String)> = {
        let r = REG.lock();
        let p = r.plugins.iter().find(|p| p.id == id).expect("published plugins are registered");
        p.commands.iter().map(|c| (c.name.clone(), c.help.clone())).collect()
    };
    for (i, (name, help)) in cmds.iter().enumerate() {
        if let Err(e) = crate::shell::register(id, name, help, run_command, (id << 16) as usize | i) {
            log::warn!("command `{name}` of plugin {id} is not available: {e}");
        }
    }
}

pub fn version_of(name: &str) -> Option<Version> {
    find(&REG.lock(), &resolve::plugin_name(name)).map(|p| p.version.clone())
}

/// The table of `interface` as an active plugin provides it right now, if
/// it has at least `min_size` bytes (for loader code that calls a plugin:
/// the in-image suites).
#[cfg(feature = "ktest")]
pub fn provider_table(interface: &str, min_size: usize) -> Option<*const c_void> {
    let r = REG.lock();
    r.plugins
        .iter()
        .filter(|p| p.state == State::Active)
        .flat_map(|p| p.provides.iter())
        .find(|q| q.interface == interface && q.table_size >= min_size as u64)
        .map(|q| q.table)
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Loading => write!(f, "loading"),
            State::Active => write!(f, "active"),
            State::Failed(m) => write!(f, "failed ({m})"),
        }
    }
}
