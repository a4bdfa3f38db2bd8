//! The SMP mechanism (policy lives in plugins): start a CPU by logical id
//! with INIT-SIPI-SIPI through the low-memory trampoline, park it and start
//! it again, send fixed and NMI IPIs, run a function on a set of CPUs and
//! wait for all of them.
//!
//! A parked CPU halts in its park loop inside the park request's handler,
//! where only vectors above the call vector's priority class reach it; a
//! restart wakes it there with `WAKE_VECTOR` (no INIT, which costs the
//! reset of the CPU). A CPU that does not answer the wake (ejected, or a new
//! CPU in its slot) and a CPU never started go through INIT-SIPI and the
//! trampoline with the CPU's kept stacks, exactly like the first start.

#[cfg(feature = "ktest")]
mod ktests;

use crate::cpu::percpu;
use crate::cpu::{self, CpuStacks};
use crate::interrupts::apic::{self, Ipi};
use crate::memory::Stack;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use loader_core::acpi::madt::MAX_CPUS;
use loader_core::smp::start;
use spin::Mutex;

core::arch::global_asm!(include_str!("trampoline.S"), options(att_syntax));

/// Where the trampoline code runs (SIPI vector 0x08) and its parameters.
const TRAMPOLINE: u64 = 0x8000;
const TRAMPOLINE_DATA: u64 = 0x9000;

/// Mirrors the `DATA_*` offsets in trampoline.S.
#[repr(C)]
struct TrampolineData {
    cr3: u64,
    efer: u64,
    stack_top: u64,
    entry: u64,
    arg: u64,
}

extern "C" {
    static trampoline_start: [u8; 0];
    static trampoline_end: [u8; 0];
}

/// Vector of "run the function in your mailbox" and "park now" requests.
/// Its priority class (0xd) is below the stop-the-world vector's, so a CPU
/// running a posted function can still be stopped.
pub const CALL_VECTOR: u8 = 0xd0;

/// Vector that wakes a parked CPU: its class (0xe) is above the call
/// vector's, which stays in service while the CPU is parked.
pub const WAKE_VECTOR: u8 = 0xe8;

/// Pages of each AP's kernel stack.
const STACK_PAGES: u64 = 16;

/// How long an AP may take from INIT to running Rust code.
const START_TIMEOUT_US: u64 = 1_000_000;
const CALL_TIMEOUT_US: u64 = 2_000_000;
/// How long a parked CPU may take to leave its park loop before it is
/// taken for gone and started with INIT-SIPI.
const WAKE_TIMEOUT_US: u64 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Never started, or its start failed: waiting for INIT-SIPI.
    Offline = 0,
    Starting = 1,
    Online = 2,
    /// Stopped by `park`: halted in its park loop until the next start.
    Parked = 3,
    /// Parked and asked to wake (`start` waits for it to go online).
    Waking = 4,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Starting,
            2 => State::Online,
            3 => State::Parked,
            4 => State::Waking,
            _ => State::Offline,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::Offline => "offline",
            State::Starting => "starting",
            State::Online => "online",
            State::Parked => "parked",
            State::Waking => "waking",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    NoSuchCpu(usize),
    IsBootCpu(usize),
    WrongState {
        cpu: usize,
        state: State,
    },
    /// The CPU did not reach Rust code in time (absent or broken).
    StartTimeout(usize),
    /// These CPUs (bit mask) did not finish a call or park in time.
    CallTimeout(u64),
    Memory,
    Apic,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::NoSuchCpu(c) => write!(f, "cpu {c} is not in the MADT"),
            Error::IsBootCpu(c) => write!(f, "cpu {c} is the boot CPU, which is always online"),
            Error::WrongState { cpu, state } => write!(f, "cpu {cpu} is {}", state.name()),
            Error::StartTimeout(c) => write!(
                f,
                "cpu {c} did not start within {} ms (is a CPU present in that slot?)",
                START_TIMEOUT_US / 1000
            ),
            Error::CallTimeout(m) => write!(f, "cpus {m:#x} did not answer within {} ms", CALL_TIMEOUT_US / 1000),
            Error::Memory => write!(f, "out of memory for the CPU's stacks"),
            Error::Apic => write!(f, "the local APIC did not accept the IPI"),
        }
    }
}

static STATE: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(State::Offline as u8) }; MAX_CPUS];
/// The APIC id each CPU read from its own APIC when it came up.
static SEEN_APIC_ID: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(u32::MAX) }; MAX_CPUS];
/// Each CPU's stacks, allocated at its first start and kept across parks.
static STACKS: [Mutex<Option<(Stack, CpuStacks)>>; MAX_CPUS] = [const { Mutex::new(None) }; MAX_CPUS];
/// One start at a time: the trampoline parameters are shared.
static START_LOCK: Mutex<()> = Mutex::new(());

/// Per-CPU request: 0 none, else a call or a park, taken by the IPI handler.
static MAILBOX_FN: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
static MAILBOX_ARG: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
/// CPUs (bit mask) that still have to finish the current call.
static PENDING: AtomicU64 = AtomicU64::new(0);
/// One `run_on` at a time: the mailboxes and PENDING belong to it.
static CALL_LOCK: Mutex<()> = Mutex::new(());

/// Restarts each CPU took from its park loop (no INIT), for tests.
static WAKES: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

static NMI_COUNT: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// Vector of `kick`: its handler does nothing, the interrupt itself is the
/// point (it ends a guest's run with a VM exit, or a halt).
pub const KICK_VECTOR: u8 = 0xe4;

/// Vector of the stop-the-world rendezvous: the highest priority class.
pub const STOP_VECTOR: u8 = 0xf0;
/// Per CPU: how deep it is in sections the world may not stop inside
/// (calls into plugin code that a swap may free).
static UNSTOPPABLE_DEPTH: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// Per CPU: a stop request arrived inside such a section; join at its end.
static STOP_PENDING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Generation of the latest stop, and the latest one released. A CPU joins
/// only a stop that is still held, so a late arrival after a timed-out
/// stop never waits for nothing.
static STOP_GEN: AtomicU64 = AtomicU64::new(0);
static STOP_RELEASED: AtomicU64 = AtomicU64::new(0);
static STOP_ARRIVED: AtomicU64 = AtomicU64::new(0);
static STOP_LOCK: Mutex<()> = Mutex::new(());

/// Marks the boot CPU online and installs the IPI and NMI handlers.
pub fn init(boot_cpu: usize) {
    STATE[boot_cpu].store(State::Online as u8, Ordering::Release);
    SEEN_APIC_ID[boot_cpu].store(apic::id(), Ordering::Relaxed);
    crate::interrupts::idt::set_handler(CALL_VECTOR, call_ipi).expect("the call vector is reserved for SMP");
    crate::interrupts::idt::set_handler(STOP_VECTOR, stop_ipi).expect("the stop vector is reserved for SMP");
    crate::interrupts::idt::set_handler(WAKE_VECTOR, wake_ipi).expect("the wake vector is reserved for SMP");
    crate::interrupts::idt::set_handler(KICK_VECTOR, wake_ipi).expect("the kick vector is reserved for SMP");
    crate::interrupts::idt::set_nmi_hook(nmi);
}

pub fn state(cpu: usize) -> State {
    State::from_u8(STATE[cpu].load(Ordering::Acquire))
}

#[cfg(feature = "ktest")]
pub fn seen_apic_id(cpu: usize) -> u32 {
    SEEN_APIC_ID[cpu].load(Ordering::Relaxed)
}

#[cfg(feature = "ktest")]
pub fn wakes(cpu: usize) -> u32 {
    WAKES[cpu].load(Ordering::Relaxed)
}

#[cfg(feature = "ktest")]
pub fn nmi_count(cpu: usize) -> u32 {
    NMI_COUNT[cpu].load(Ordering::Relaxed)
}

/// Bit mask of the CPUs that are online now.
pub fn online_mask() -> u64 {
    (0..MAX_CPUS).filter(|&c| state(c) == State::Online).fold(0, |m, c| m | 1 << c)
}

fn cpu_count() -> usize {
    crate::acpi::get().map_or(1, |a| a.cpus.len())
}

fn apic_id_of(cpu: usize) -> Result<u32, Error> {
    crate::acpi::get().and_then(|a| a.cpus.get(cpu)).map(|c| c.apic_id).ok_or(Error::NoSuchCpu(cpu))
}

/// Starts logical CPU `cpu` (offline or parked) and waits until it runs.
pub fn start(cpu: usize) -> Result<(), Error> {
    let apic_id = apic_id_of(cpu)?;
    if cpu == percpu::current_id() as usize {
        return Err(Error::IsBootCpu(cpu));
    }
    let _g = START_LOCK.lock();
    match state(cpu) {
        State::Parked if wake(cpu, apic_id) => return Ok(()),
        State::Offline | State::Parked => {}
        s => return Err(Error::WrongState { cpu, state: s }),
    }
    let stack_top = {
        let mut slot = STACKS[cpu].lock();
        if slot.is_none() {
            let kernel = Stack::new(STACK_PAGES).map_err(|_| Error::Memory)?;
            let ist = CpuStacks::new().map_err(|_| Error::Memory)?;
            *slot = Some((kernel, ist));
        }
        slot.as_ref().map(|(k, _)| k.top()).unwrap_or_default()
    };
    write_trampoline(cpu, stack_top);
    STATE[cpu].store(State::Starting as u8, Ordering::Release);

    // INIT, SIPI, SIPI (SDM Vol. 3A 9.4.4.1) with the waits this CPU model
    // needs. The second SIPI is ignored by a CPU that already left
    // wait-for-SIPI.
    let delays = start_delays();
    let sipi = Ipi::Startup((TRAMPOLINE >> 12) as u8);
    let send = |ipi| apic::send_ipi(apic_id, ipi).map_err(|_| Error::Apic);
    send(Ipi::Init)?;
    crate::time::delay_us(delays.init_us as u64);
    send(sipi)?;
    crate::time::delay_us(delays.sipi_us as u64);
    if state(cpu) == State::Starting {
        send(sipi)?;
        crate::time::delay_us(delays.sipi_us as u64);
    }
    if !crate::time::wait_until(START_TIMEOUT_US, || state(cpu) == State::Online) {
        // Leave it in INIT so that a late arrival cannot run on stale data.
        let _ = send(Ipi::Init);
        STATE[cpu].store(State::Offline as u8, Ordering::Release);
        return Err(Error::StartTimeout(cpu));
    }
    Ok(())
}

/// Wakes a parked CPU in its park loop; false if it did not go online in
/// time (then it needs INIT-SIPI). The caller holds the start lock, and
/// only an online CPU can be parked, so nobody else changes its state.
fn wake(cpu: usize, apic_id: u32) -> bool {
    STATE[cpu].store(State::Waking as u8, Ordering::Release);
    if apic::send_ipi(apic_id, Ipi::Fixed(WAKE_VECTOR)).is_ok()
        && crate::time::wait_until(WAKE_TIMEOUT_US, || state(cpu) == State::Online)
    {
        return true;
    }
    // Called off; a CPU that went online just now stays online.
    let back =
        STATE[cpu].compare_exchange(State::Waking as u8, State::Parked as u8, Ordering::AcqRel, Ordering::Acquire);
    back.is_err()
}

/// The INIT-SIPI waits for the boot CPU's model and `cpu_init_udelay=`.
fn start_delays() -> start::Delays {
    let cpuid = raw_cpuid::CpuId::new();
    let vendor = cpuid.get_vendor_info().map_or(start::Vendor::Other, |v| start::Vendor::from_id(v.as_str()));
    let family = cpuid.get_feature_info().map_or(0, |f| f.family_id() as u32);
    start::delays(vendor, family, crate::boot_info().1.init_udelay)
}

fn write_trampoline(cpu: usize, stack_top: u64) {
    let data = TrampolineData {
        cr3: x86_64::registers::control::Cr3::read_raw().0.start_address().as_u64(),
        efer: x86_64::registers::model_specific::Efer::read_raw(),
        stack_top,
        entry: ap_entry as extern "C" fn(u64) -> ! as usize as u64,
        arg: cpu as u64,
    };
    // 0x8000-0x9fff is reserved for the trampoline (never given out by the
    // frame allocator) and START_LOCK makes this the only writer. The code
    // page is made writable only while it is copied.
    let start = (&raw const trampoline_start).cast::<u8>();
    let len = (&raw const trampoline_end).addr() - start.addr();
    crate::memory::protect(TRAMPOLINE, 4096, crate::memory::Protection::ReadWrite).expect("trampoline page");
    // SAFETY: the trampoline symbols bracket the code assembled for 0x8000,
    // and its page is writable now (above).
    unsafe { core::ptr::copy_nonoverlapping(start, TRAMPOLINE as *mut u8, len) };
    crate::memory::protect(TRAMPOLINE, 4096, crate::memory::Protection::ReadExecute).expect("trampoline page");
    // SAFETY: the data page of the reserved range (above), which the
    // trampoline reads only once the SIPI is sent.
    unsafe { core::ptr::write_volatile(TRAMPOLINE_DATA as *mut TrampolineData, data) };
}

/// The first Rust code of an AP, on its own kernel stack.
extern "C" fn ap_entry(cpu: u64) -> ! {
    let cpu = cpu as usize;
    apic::init_this_cpu();
    let apic_id = apic::id();
    {
        let slot = STACKS[cpu].lock();
        let (_, ist) = slot.as_ref().expect("stacks are allocated before the start");
        cpu::init_this_cpu(cpu, apic_id, ist);
    }
    crate::time::timer::start_tick();
    SEEN_APIC_ID[cpu].store(apic_id, Ordering::Relaxed);
    STATE[cpu].store(State::Online as u8, Ordering::Release);
    log::debug!("online, APIC id {apic_id}");
    loop {
        idle(cpu);
    }
}

/// One round of an online CPU with nothing asked of it: the plugins' idle
/// work if there is some (then pending interrupts are taken between two
/// rounds), else a halt until an interrupt. Runs with interrupts off and
/// returns with them off.
pub fn idle(cpu: usize) {
    use x86_64::instructions::interrupts;
    if crate::plugin::registry::idle::run(cpu as u32) {
        interrupts::enable();
        x86_64::instructions::nop();
        interrupts::disable();
    } else {
        // `sti; hlt` is one step: an interrupt that arrived while the idle
        // work ran (IF clear) ends this halt.
        interrupts::enable_and_hlt();
        interrupts::disable();
    }
}

/// Mailbox value that asks the CPU to park.
const PARK: usize = 1;

/// Runs `f(cpu, arg)` on every online CPU in `mask` (the caller's own CPU
/// inline) and waits until all are done. Only `'static` functions and a
/// copied argument cross over, so a CPU that answers after a timeout never
/// touches freed memory.
pub fn run_on(mask: u64, f: fn(usize, usize), arg: usize) -> Result<(), Error> {
    post(mask, f as usize, arg)
}

/// Parks `cpu`: it stops with interrupts off until started again.
pub fn park(cpu: usize) -> Result<(), Error> {
    apic_id_of(cpu)?;
    if cpu == percpu::current_id() as usize {
        return Err(Error::IsBootCpu(cpu));
    }
    match state(cpu) {
        State::Online => post(1 << cpu, PARK, 0),
        s => Err(Error::WrongState { cpu, state: s }),
    }
}

fn post(mask: u64, request: usize, arg: usize) -> Result<(), Error> {
    send(mask, request, arg)?.wait()
}

/// Requests posted to other CPUs and not yet waited for; holds the call
/// lock, so one set of mailboxes is in use at a time.
pub struct Running {
    _lock: spin::MutexGuard<'static, ()>,
}

impl Running {
    /// Waits until every target finished (or the timeout passed).
    pub fn wait(self) -> Result<(), Error> {
        if !crate::time::wait_until(CALL_TIMEOUT_US, || PENDING.load(Ordering::Acquire) == 0) {
            return Err(Error::CallTimeout(PENDING.load(Ordering::Acquire)));
        }
        Ok(())
    }
}

/// Starts `f(cpu, arg)` on the other online CPUs in `mask` and returns at
/// once; `Running::wait` collects them. The functions run with interrupts
/// on, so the CPUs stay reachable (e.g. by a stop-the-world) meanwhile.
#[cfg(feature = "ktest")]
pub fn start_on(mask: u64, f: fn(usize, usize), arg: usize) -> Result<Running, Error> {
    send(mask & !(1 << percpu::current_id()), f as usize, arg)
}

fn send(mask: u64, request: usize, arg: usize) -> Result<Running, Error> {
    let lock = CALL_LOCK.lock();
    let me = percpu::current_id() as usize;
    let targets = mask & online_mask() & !(1 << me);
    PENDING.store(targets, Ordering::Release);
    for cpu in (0..cpu_count()).filter(|c| targets & (1 << c) != 0) {
        MAILBOX_ARG[cpu].store(arg, Ordering::Relaxed);
        MAILBOX_FN[cpu].store(request, Ordering::Release);
        apic::send_ipi(apic_id_of(cpu)?, Ipi::Fixed(CALL_VECTOR)).map_err(|_| Error::Apic)?;
    }
    if mask & (1 << me) != 0 && request != PARK {
        run_request(request, me, arg);
    }
    Ok(Running { _lock: lock })
}

fn run_request(request: usize, cpu: usize, arg: usize) {
    // SAFETY: `post` stores only `fn(usize, usize)` values (or PARK, which
    // callers handle before this).
    let f = unsafe { core::mem::transmute::<usize, fn(usize, usize)>(request) };
    f(cpu, arg)
}

fn call_ipi(_: &mut crate::interrupts::idt::TrapFrame) {
    let cpu = percpu::current_id() as usize;
    let request = MAILBOX_FN[cpu].swap(0, Ordering::Acquire);
    match request {
        0 => {}
        PARK => park_here(cpu),
        f => {
            // Interrupts on while the function runs: a higher-priority
            // vector (the stop-the-world rendezvous) must still get through.
            x86_64::instructions::interrupts::enable();
            run_request(f, cpu, MAILBOX_ARG[cpu].load(Ordering::Relaxed));
            x86_64::instructions::interrupts::disable();
            PENDING.fetch_and(!(1 << cpu), Ordering::AcqRel);
        }
    }
}

/// The park loop, in the park request's handler with interrupts off. The
/// call vector stays in service, so only the wake (and NMI) get through
/// the `sti; hlt`. Returns once `wake` asked and the CPU took it.
fn park_here(cpu: usize) {
    crate::interrupts::apic::timer_stop();
    STATE[cpu].store(State::Parked as u8, Ordering::Release);
    PENDING.fetch_and(!(1 << cpu), Ordering::AcqRel);
    loop {
        if state(cpu) == State::Waking {
            // Shootdowns skip parked CPUs: drop what changed meanwhile,
            // and tick again, before anyone counts this CPU online.
            x86_64::instructions::tlb::flush_all();
            crate::time::timer::start_tick();
            let online = STATE[cpu].compare_exchange(
                State::Waking as u8,
                State::Online as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            if online.is_ok() {
                WAKES[cpu].fetch_add(1, Ordering::Relaxed);
                return;
            }
            // `wake` gave up on this CPU first: stay parked for its INIT.
            crate::interrupts::apic::timer_stop();
        }
        // `sti; hlt` is one step: a wake arriving after the check above
        // ends this hlt.
        x86_64::instructions::interrupts::enable_and_hlt();
        x86_64::instructions::interrupts::disable();
    }
}

/// Only ends the `hlt` of a parked CPU (`park_here` reads its state), or
/// what a kicked CPU was doing.
fn wake_ipi(_: &mut crate::interrupts::idt::TrapFrame) {}

fn nmi(_: &mut crate::interrupts::idt::TrapFrame) {
    NMI_COUNT[percpu::current_id() as usize].fetch_add(1, Ordering::Relaxed);
    crate::power::system::on_nmi();
}

/// Interrupts running `cpu` with [`KICK_VECTOR`].
pub fn kick(cpu: usize) -> Result<(), Error> {
    if state(cpu) != State::Online {
        return Err(Error::WrongState { cpu, state: state(cpu) });
    }
    apic::send_ipi(apic_id_of(cpu)?, Ipi::Fixed(KICK_VECTOR)).map_err(|_| Error::Apic)
}

/// Sends an NMI to `cpu`.
pub fn send_nmi(cpu: usize) -> Result<(), Error> {
    apic::send_ipi(apic_id_of(cpu)?, Ipi::Nmi).map_err(|_| Error::Apic)
}

/// Sends a fixed IPI with `vector` to `cpu`.
#[cfg(feature = "ktest")]
pub fn send_fixed(cpu: usize, vector: u8) -> Result<(), Error> {
    apic::send_ipi(apic_id_of(cpu)?, Ipi::Fixed(vector)).map_err(|_| Error::Apic)
}

/// Enters a section the world may not stop inside (nests).
pub fn enter_unstoppable() {
    UNSTOPPABLE_DEPTH[percpu::current_id() as usize].fetch_add(1, Ordering::AcqRel);
}

/// Leaves such a section; at the outermost end, joins a stop that arrived
/// meanwhile.
pub fn exit_unstoppable() {
    let cpu = percpu::current_id() as usize;
    if UNSTOPPABLE_DEPTH[cpu].fetch_sub(1, Ordering::AcqRel) == 1 && STOP_PENDING[cpu].swap(false, Ordering::AcqRel) {
        x86_64::instructions::interrupts::without_interrupts(join_stop);
    }
}

/// The current depth, saved by a guarded call and put back when a plugin
/// panic abandons the sections it had entered.
pub fn unstoppable_depth() -> u32 {
    UNSTOPPABLE_DEPTH[percpu::current_id() as usize].load(Ordering::Acquire)
}

pub fn set_unstoppable_depth(depth: u32) {
    UNSTOPPABLE_DEPTH[percpu::current_id() as usize].store(depth, Ordering::Release);
}

fn stop_ipi(_: &mut crate::interrupts::idt::TrapFrame) {
    let cpu = percpu::current_id() as usize;
    if UNSTOPPABLE_DEPTH[cpu].load(Ordering::Acquire) > 0 {
        STOP_PENDING[cpu].store(true, Ordering::Release);
    } else {
        join_stop();
    }
}

/// Waits, interrupts off, until the stop in force is released.
fn join_stop() {
    let gen = STOP_GEN.load(Ordering::Acquire);
    if STOP_RELEASED.load(Ordering::Acquire) >= gen {
        return;
    }
    STOP_ARRIVED.fetch_or(1 << percpu::current_id(), Ordering::AcqRel);
    while STOP_RELEASED.load(Ordering::Acquire) < gen {
        core::hint::spin_loop();
    }
    // Whoever stopped the world may have changed page rights.
    x86_64::instructions::tlb::flush_all();
}

/// Every other online CPU is parked in the rendezvous, outside any
/// unstoppable section, until this is dropped.
pub struct WorldStopped {
    gen: u64,
    _lock: spin::MutexGuard<'static, ()>,
}

impl Drop for WorldStopped {
    fn drop(&mut self) {
        STOP_RELEASED.store(self.gen, Ordering::Release);
    }
}

/// Stops the world: all other online CPUs rendezvous and spin with
/// interrupts off. A CPU inside an unstoppable section joins when it leaves
/// it; if some CPU does not arrive within the timeout the stop is called
/// off and the CPUs missing are reported.
pub fn stop_world() -> Result<WorldStopped, Error> {
    let lock = STOP_LOCK.lock();
    let me = percpu::current_id() as usize;
    let targets = online_mask() & !(1 << me);
    STOP_ARRIVED.store(0, Ordering::Release);
    let gen = STOP_GEN.fetch_add(1, Ordering::AcqRel) + 1;
    let stopped = WorldStopped { gen, _lock: lock };
    for cpu in (0..cpu_count()).filter(|c| targets & (1 << c) != 0) {
        apic::send_ipi(apic_id_of(cpu)?, Ipi::Fixed(STOP_VECTOR)).map_err(|_| Error::Apic)?;
    }
    if !crate::time::wait_until(CALL_TIMEOUT_US, || STOP_ARRIVED.load(Ordering::Acquire) == targets) {
        return Err(Error::CallTimeout(targets & !STOP_ARRIVED.load(Ordering::Acquire)));
    }
    Ok(stopped)
}

/// Makes every other online CPU drop its TLB, after page rights changed
/// (`memory::protect` flushes only the calling CPU's): a stop-the-world round
/// trip, since each CPU flushes as it leaves the rendezvous, before it runs
/// anything else. (Not through `run_on`: a CPU may be busy in a posted
/// function, and the call lock may be held by the caller's own
/// `start_on`.)
pub fn shootdown() -> Result<(), Error> {
    stop_world().map(drop)
}
