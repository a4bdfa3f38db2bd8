//! The registry of loaded plugins: load (resolve, link, init, or roll back
//! completely), unload (refused while dependents exist unless they go
//! first), and transactional hot swap with state transfer.
//!
//! Lock order: `OP` (one load/unload/swap at a time, held across calls into
//! plugins) before `REG` (the data, held only briefly and never across a call
//! into plugin code, because plugins call back into the registry).

mod error;
pub mod idle;
mod swap;

pub use error::Error;
pub use swap::{is_swapping_in, last_blackout_tsc, swap, swap_all};

use super::{guard, heap, image, store};
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ffi::c_void;
use core::fmt;
use loader_core::plugin::heap::{End, Totals};
use loader_core::plugin::resolve::{self, Need, Offer};
use plugins::{CommandFn, CpuDescribeFn, CpuLifecycle, Handle, IdleFn};
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
    /// What the CPUs run when idle (`mv_idle_register`).
    idle: Option<IdleFn>,
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
            idle: None,
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

fn find<'a>(r: &'a Registry, name: &str) -> Option<&'a Plugin> {
    r.plugins.iter().find(|p| p.name == name && p.state != State::Loading)
}

fn parse_version(v: &str) -> Result<Version, Error> {
    Version::parse(v).map_err(|_| Error::BadVersion(v.into()))
}

/// Reads a plugin file from the store and maps it, checking that it is the
/// plugin asked for.
fn load_image(name: &str, version: Option<&Version>) -> Result<(image::Image, Version), Error> {
    let (found, body) =
        store::open(name, version).ok_or_else(|| Error::NotInStore { name: name.into(), version: version.cloned() })?;
    let img = image::load_elf(&body?, super::exports::resolve)?;
    if img.metadata().name != name {
        return Err(Error::NameMismatch { file: img.metadata().name.clone(), wanted: name.into() });
    }
    // The store checked this already for files its manifest lists.
    loader_core::plugin::store::lacking(name, img.metadata().needs, crate::cpu::plugin_features())?;
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
        // The account opens before any of its code runs: init allocates.
        heap::open(id, img.base(), img.size()).map_err(Error::Heap)?;
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
            remove(id, if matches!(e, Error::Panicked { .. }) { End::Panicked } else { End::Refused });
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

/// Drops plugin `id`'s record: its commands, handles and image (memory),
/// and closes its heap account; what it still held is reported as a leak
/// and freed or kept as the ledger decides from `end` (how it ended).
///
/// Once the record is gone nobody finds the plugin any more, but another
/// CPU may still be inside a call into it: a stop-the-world round trip waits
/// until every CPU is outside such calls, and only then is the memory
/// freed. If a CPU does not answer, the image is leaked rather than freed
/// under it, and so is the plugin's heap.
fn remove(id: u64, end: End) {
    crate::shell::unregister_owner(id);
    crate::acpi::sci::drop_owner(id);
    crate::power::system::drop_owner(id);
    crate::interrupts::probe::drop_plugin_table(id);
    let p = {
        let mut r = REG.lock();
        let i = r.plugins.iter().position(|p| p.id == id).expect("removal of a registered plugin");
        r.plugins.remove(i)
    };
    let who = alloc::format!("{} {}", p.name, p.version);
    let end = match crate::smp::stop_world() {
        Ok(world) => {
            drop(world);
            drop(p);
            end
        }
        Err(e) => {
            log::error!("{who}: keeping its memory, a CPU may still run its code: {e}");
            core::mem::forget(p);
            End::Stranded
        }
    };
    if let Some(report) = heap::close(id, end).and_then(|c| c.report(&who)) {
        log::warn!("{report}");
    }
    if let Some(report) = super::frames::close(id, end) {
        log::warn!("{who}: {report}");
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
    let mut end = if active { End::Unloaded } else { End::Panicked };
    if active {
        // SAFETY: `fini` is the mapped image's entry point.
        if let Err(message) = guard::call(id, name, || unsafe { fini() }) {
            log::warn!("{name} panicked in fini ({message}); unloading it anyway");
            end = End::Panicked;
        }
    }
    remove(id, end);
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
    if let Some(other) = other_holder(&r, id, |p| p.cpu_describer.is_some()) {
        return Err(Error::DescriberTaken(other));
    }
    caller_mut(&mut r, id)?.cpu_describer = Some(f);
    Ok(())
}

/// Another active plugin than `id` (and than other versions of it, which
/// a swap replaces) that holds what `holds` asks about: its name.
fn other_holder(r: &Registry, id: u64, holds: impl Fn(&Plugin) -> bool) -> Option<String> {
    let caller = r.plugins.iter().find(|p| p.id == id).map(|p| p.name.as_str());
    r.plugins
        .iter()
        .find(|p| p.id != id && Some(p.name.as_str()) != caller && p.state == State::Active && holds(p))
        .map(|p| p.name.clone())
}

/// Plugin `id`'s record.
fn caller_mut(r: &mut Registry, id: u64) -> Result<&mut Plugin, Error> {
    r.plugins.iter_mut().find(|p| p.id == id).ok_or_else(|| Error::NotLoaded(alloc::format!("plugin {id}")))
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

/// One line per plugin for the shell and tests.
pub struct Info {
    pub id: u64,
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
    /// What the plugin holds on the loader's heap.
    pub heap: Totals,
}

pub fn list() -> Vec<Info> {
    let r = REG.lock();
    r.plugins
        .iter()
        .filter(|p| p.state != State::Loading)
        .map(|p| Info {
            id: p.id,
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
            heap: heap::held_by(p.id).unwrap_or_default(),
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
