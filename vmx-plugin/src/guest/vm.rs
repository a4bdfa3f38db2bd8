//! VMs: guest RAM from frames mapped by EPT, the guest ABI's boot
//! structures (GDT, identity page tables), ELF loading, and the table of
//! VMs. A VM's vCPUs run in `run`; everything a VM holds is given back by
//! `destroy`.

use super::entry::Regs;
use crate::exits::ExitCounts;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use plugins::ffi;

pub const PAGE: u64 = 4096;
const LARGE: u64 = 2 << 20;
/// Guest RAM is mapped from guest-physical 0 up to this at most (one EPT
/// page directory of 2 MiB pages).
pub const MAX_RAM: u64 = 1 << 30;
pub const MAX_VCPUS: usize = 16;

#[derive(Debug)]
pub enum Error {
    NoSuchVm(String),
    Exists(String),
    BadName,
    BadMemory(u64),
    BadVcpus(usize),
    NoCpu(u32),
    NoMemory { what: &'static str },
    NoFile(String),
    BadElf { file: String, why: &'static str },
    WrongState { vm: String, state: &'static str },
    NoVmx,
    Ept(crate::ept::EptError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoSuchVm(n) => write!(f, "no VM named `{n}` (see `vm list`)"),
            Error::Exists(n) => write!(f, "a VM named `{n}` exists already"),
            Error::BadName => write!(f, "a VM name is 1 to 16 letters, digits, `-` or `_`"),
            Error::BadMemory(m) => {
                write!(f, "guest memory must be 4 to {} MiB in 2 MiB steps, not {m} MiB", MAX_RAM >> 20)
            }
            Error::BadVcpus(n) => write!(f, "a VM has 1 to {MAX_VCPUS} vCPUs, not {n}"),
            Error::NoCpu(c) => write!(f, "cpu {c} does not have VMX on (see `vmx`)"),
            Error::NoMemory { what } => write!(f, "no memory for the {what}"),
            Error::NoFile(p) => write!(f, "the initrd has no file `{p}` (guests are under guests/)"),
            Error::BadElf { file, why } => write!(f, "{file} is no guest ELF: {why}"),
            Error::WrongState { vm, state } => write!(f, "VM `{vm}` is {state}"),
            Error::NoVmx => write!(f, "VMX is not on on any CPU: guests need VMX (they run in Bochs here)"),
            Error::Ept(e) => write!(f, "EPT: {e}"),
        }
    }
}

/// Where a VM is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Created = 0,
    Loaded = 1,
    Running = 2,
    Paused = 3,
    /// Ended: the guest wrote its exit status, or it was stopped.
    Stopped = 4,
}

impl State {
    fn from(v: u8) -> State {
        [State::Created, State::Loaded, State::Running, State::Paused, State::Stopped][v.min(4) as usize]
    }

    pub fn name(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Loaded => "loaded",
            State::Running => "running",
            State::Paused => "paused",
            State::Stopped => "stopped",
        }
    }
}

/// What a vCPU carries between its runs; locked by the pCPU running it.
pub struct VcpuRun {
    pub regs: Regs,
    /// Launched since the last VMCLEAR.
    pub launched: bool,
    /// The pCPU whose VMCS cache holds this VMCS (it must be VMCLEARed
    /// there before it runs anywhere else).
    pub active_on: Option<u32>,
    /// The controls and guest state are written (once, at the first run).
    pub initialised: bool,
    pub exits: ExitCounts,
    /// The vCPU's local APIC (x2APIC mode, emulated).
    pub lapic: crate::vapic::Lapic,
}

/// [`Vcpu::halt`]: running, or halted until an interrupt, or halted with
/// interrupts off (only an NMI or INIT, which modvisor does not send,
/// would wake it: it is done).
pub const RUNNING: u8 = 0;
pub const HALTED: u8 = 1;
pub const HALTED_FOR_GOOD: u8 = 2;

pub struct Vcpu {
    pub index: u32,
    /// [`RUNNING`], [`HALTED`] or [`HALTED_FOR_GOOD`].
    pub halt: AtomicU8,
    /// While [`HALTED`]: the host TSC its APIC timer expires at (it runs
    /// again then, or when an interrupt is posted to it).
    pub wake_at: AtomicU64,
    /// The pCPU it is bound to.
    pub cpu: AtomicU32,
    pub vmcs_virt: u64,
    pub vmcs_phys: u64,
    pub run: spin::Mutex<VcpuRun>,
    /// Counts for the request/kick stress test (`super::probe`).
    pub probe: super::probe::Probe,
}

/// Why a VM stopped, for `vm list` and the tests.
#[derive(Clone, Debug, Default)]
pub struct Ending {
    /// The status the guest wrote to the exit port, if it did.
    pub status: Option<u32>,
    /// What stopped it otherwise.
    pub report: Option<String>,
}

pub struct Vm {
    pub id: u32,
    pub name: String,
    pub ram_phys: u64,
    pub ram_bytes: u64,
    pub ept: crate::ept::Ept,
    pub vcpus: Vec<Vcpu>,
    /// Each vCPU's request bits, mode and pCPU, by vCPU id: what other
    /// CPUs touch (`crate::requests`).
    pub slots: Vec<crate::requests::VcpuSlot>,
    /// Interrupts other vCPUs sent each vCPU, not yet in its APIC: 256
    /// bits each, set by the sender, taken by the vCPU before its entry.
    pub posted: Vec<[AtomicU64; 4]>,
    state: AtomicU8,
    pub entry: AtomicU64,
    pub ending: spin::Mutex<Ending>,
    /// The current console line.
    pub line: spin::Mutex<String>,
}

impl Vm {
    pub fn state(&self) -> State {
        State::from(self.state.load(Ordering::Acquire))
    }

    pub fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::Release);
    }

    /// The host address of guest-physical `gpa`, if `len` bytes from it are RAM.
    pub fn host(&self, gpa: u64, len: u64) -> Option<*mut u8> {
        (gpa.checked_add(len)? <= self.ram_bytes).then_some((self.ram_phys + gpa) as *mut u8)
    }

    /// Ends the VM (the first ending counts) and asks every vCPU to stop:
    /// those in guest mode elsewhere are kicked out, the others see the
    /// state before their next entry.
    pub fn stop(&self, status: Option<u32>, report: Option<String>) {
        {
            let mut e = self.ending.lock();
            if self.state() == State::Stopped {
                return;
            }
            e.status = status;
            e.report = report;
            self.set_state(State::Stopped);
        }
        self.request_all(crate::requests::Requests::STOP);
    }

    /// Makes `req` pending on every vCPU and kicks those in guest mode.
    pub fn request_all(&self, req: crate::requests::Requests) {
        let mut bitmap = [0u64; MAX_VCPUS.div_ceil(64)];
        for i in 0..self.slots.len() {
            bitmap[i / 64] |= 1 << (i % 64);
        }
        // SAFETY: a plain query of the loader.
        let me = unsafe { ffi::mv_current_cpu() };
        let kick = |cpu| {
            // SAFETY: a plain call of the loader (a CPU that left meanwhile
            // refuses it: nothing to interrupt there).
            let _ = unsafe { ffi::mv_kick(cpu) };
        };
        // Every set bit names a slot: the bitmap was built from them.
        let _ = crate::requests::make_request_mask(&self.slots, req, &bitmap, me, kick);
    }
}

pub static VMS: spin::Mutex<Vec<Arc<Vm>>> = spin::Mutex::new(Vec::new());
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

pub fn find(name: &str) -> Result<Arc<Vm>, Error> {
    VMS.lock().iter().find(|v| v.name == name).cloned().ok_or_else(|| Error::NoSuchVm(name.into()))
}

fn frames(count: u64, align: u64, what: &'static str) -> Result<u64, Error> {
    // SAFETY: a plain call of the loader.
    match unsafe { ffi::mv_frames_alloc(plugins::runtime::image_address(), count, align) } {
        0 => Err(Error::NoMemory { what }),
        phys => Ok(phys),
    }
}

fn free_frames(phys: u64, count: u64) {
    // SAFETY: a block this plugin allocated with `frames` and no longer uses.
    if unsafe { ffi::mv_frames_free(plugins::runtime::image_address(), phys, count) } != 0 {
        plugins::warn!("frames at {phys:#x} were not given back");
    }
}

/// Zeroes `len` bytes of identity-mapped frames at `phys`.
fn zero(phys: u64, len: u64) {
    // SAFETY: frames this plugin holds, identity-mapped read-write.
    unsafe { core::ptr::write_bytes(phys as *mut u8, 0, len as usize) };
}

/// Writes the u64 entries of a table page at `phys`.
fn table(phys: u64) -> &'static mut [u64; 512] {
    // SAFETY: a table frame this plugin holds, identity-mapped, page-aligned.
    unsafe { &mut *(phys as *mut [u64; 512]) }
}

/// EPT table frames from the loader, one frame each (identity-mapped).
struct Frames;

impl crate::ept::TableMemory for Frames {
    fn alloc_table(&mut self) -> Option<u64> {
        let phys = frames(1, 1, "EPT table").ok()?;
        zero(phys, PAGE);
        Some(phys)
    }

    fn read_entry(&self, table: u64, index: usize) -> u64 {
        self::table(table)[index]
    }

    fn write_entry(&mut self, table: u64, index: usize, value: u64) {
        self::table(table)[index] = value;
    }
}

/// Frees every table frame of `ept`.
fn free_ept(ept: &crate::ept::Ept) {
    ept.for_each_table(&Frames, |t| free_frames(t, 1));
}

/// The EPT mapping `ram` bytes at host `phys` from guest-physical 0,
/// read-write-execute (2 MiB pages: both sides are 2 MiB aligned).
fn build_ept(phys: u64, ram: u64) -> Result<crate::ept::Ept, Error> {
    let caps = super::super::plugin::ept_caps().ok_or(Error::NoVmx)?;
    let mut ept = crate::ept::Ept::new(&mut Frames, caps).map_err(Error::Ept)?;
    if let Err(e) = ept.map(&mut Frames, 0, phys, ram, crate::ept::Perms::RWX) {
        free_ept(&ept);
        return Err(Error::Ept(e));
    }
    Ok(ept)
}

/// The guest ABI's boot structures in guest RAM: a GDT (null, 64-bit
/// code 0x08, data 0x10) and page tables mapping [0, 1 GiB) one to one.
fn write_boot_structures(vm: &Vm) {
    let gdt = [0u64, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff];
    let at = vm.host(super::vmcs::GDT, 24).expect("guest RAM is at least 4 MiB");
    // SAFETY: inside this VM's RAM, which only it uses.
    unsafe { core::ptr::copy_nonoverlapping(gdt.as_ptr().cast::<u8>(), at, 24) };
    let base = vm.ram_phys + super::vmcs::PML4;
    table(base)[0] = (super::vmcs::PML4 + PAGE) | 0x3;
    table(base + PAGE)[0] = (super::vmcs::PML4 + 2 * PAGE) | 0x3;
    for (i, e) in table(base + 2 * PAGE).iter_mut().enumerate() {
        *e = (i as u64 * LARGE) | 0x83;
    }
}

fn valid_name(name: &str) -> bool {
    (1..=16).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Creates VM `name` with `mem_mib` of RAM and one vCPU per entry of
/// `cpus` (the pCPU each is bound to).
pub fn create(name: &str, mem_mib: u64, cpus: &[u32]) -> Result<Arc<Vm>, Error> {
    if !valid_name(name) {
        return Err(Error::BadName);
    }
    let ram = mem_mib << 20;
    if !(4 << 20..=MAX_RAM).contains(&ram) || !ram.is_multiple_of(LARGE) {
        return Err(Error::BadMemory(mem_mib));
    }
    if cpus.is_empty() || cpus.len() > MAX_VCPUS {
        return Err(Error::BadVcpus(cpus.len()));
    }
    if let Some(&c) = cpus.iter().find(|&&c| super::super::plugin::vmcs_revision(c).is_none()) {
        return Err(Error::NoCpu(c));
    }
    let mut vms = VMS.lock();
    if vms.iter().any(|v| v.name == name) {
        return Err(Error::Exists(name.into()));
    }
    let ram_phys = frames(ram / PAGE, LARGE / PAGE, "guest RAM")?;
    zero(ram_phys, ram);
    let ept = match build_ept(ram_phys, ram) {
        Ok(e) => e,
        Err(e) => {
            free_frames(ram_phys, ram / PAGE);
            return Err(e);
        }
    };
    let mut vm = Vm {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        name: name.into(),
        ram_phys,
        ram_bytes: ram,
        ept,
        vcpus: Vec::new(),
        slots: (0..cpus.len()).map(|_| crate::requests::VcpuSlot::new()).collect(),
        posted: (0..cpus.len()).map(|_| [const { AtomicU64::new(0) }; 4]).collect(),
        state: AtomicU8::new(State::Created as u8),
        entry: AtomicU64::new(0),
        ending: spin::Mutex::new(Ending::default()),
        line: spin::Mutex::new(String::new()),
    };
    for (i, &cpu) in cpus.iter().enumerate() {
        match super::super::plugin::new_vmcs() {
            Some((virt, phys)) => vm.vcpus.push(Vcpu {
                index: i as u32,
                halt: AtomicU8::new(RUNNING),
                wake_at: AtomicU64::new(u64::MAX),
                cpu: AtomicU32::new(cpu),
                vmcs_virt: virt,
                vmcs_phys: phys,
                run: spin::Mutex::new(VcpuRun {
                    regs: Regs::default(),
                    launched: false,
                    active_on: None,
                    initialised: false,
                    lapic: super::apic::new_lapic(i as u32),
                    exits: ExitCounts::new(),
                }),
                probe: super::probe::Probe::new(),
            }),
            None => {
                release(&vm);
                return Err(Error::NoMemory { what: "VMCS" });
            }
        }
    }
    write_boot_structures(&vm);
    let vm = Arc::new(vm);
    vms.push(vm.clone());
    Ok(vm)
}

/// Loads the guest ELF at `path` in the initrd into `vm` and sets every
/// vCPU's registers to the ABI's entry state.
pub fn load(vm: &Vm, path: &str) -> Result<(), Error> {
    if vm.state() != State::Created {
        return Err(Error::WrongState { vm: vm.name.clone(), state: vm.state().name() });
    }
    let mut len = 0usize;
    // SAFETY: a plain call of the loader; `len` is ours.
    let ptr = unsafe { ffi::mv_initrd_file(plugins::StrRef::borrowed(path), &mut len) };
    if ptr.is_null() {
        return Err(Error::NoFile(path.into()));
    }
    // SAFETY: the loader returned the initrd's bytes, which stay for good.
    let file = unsafe { core::slice::from_raw_parts(ptr, len) };
    let entry = super::elf::place(file, |gpa, len| vm.host(gpa, len))
        .map_err(|why| Error::BadElf { file: path.into(), why })?;
    vm.entry.store(entry, Ordering::Release);
    let count = vm.vcpus.len() as u64;
    for v in &vm.vcpus {
        let mut r = v.run.lock();
        r.regs = Regs { rdi: v.index as u64, rsi: count, rdx: vm.ram_bytes, ..Regs::default() };
    }
    vm.set_state(State::Loaded);
    Ok(())
}

/// The guest's initial RSP for vCPU `index`: 64 KiB stacks down from the
/// top of RAM.
pub fn stack_top(vm: &Vm, index: u32) -> u64 {
    vm.ram_bytes - index as u64 * 0x10000
}

/// Frees what `vm` holds: its vCPUs' VMCSs (each VMCLEARed first on the
/// CPU that has it active), its RAM and its EPT.
fn release(vm: &Vm) {
    for v in &vm.vcpus {
        let active = v.run.lock().active_on.take();
        if let Some(cpu) = active {
            super::super::plugin::clear_vmcs_on(cpu, v.vmcs_phys);
        }
        super::super::plugin::free_vmcs(v.vmcs_virt);
    }
    free_frames(vm.ram_phys, vm.ram_bytes / PAGE);
    free_ept(&vm.ept);
}

/// Destroys a stopped (or never started) VM.
pub fn destroy(name: &str) -> Result<(), Error> {
    let vm = {
        let mut vms = VMS.lock();
        let i = vms.iter().position(|v| v.name == name).ok_or_else(|| Error::NoSuchVm(name.into()))?;
        if matches!(vms[i].state(), State::Running | State::Paused) {
            return Err(Error::WrongState { vm: name.into(), state: vms[i].state().name() });
        }
        let vm = vms.remove(i);
        if vms.is_empty() {
            // The table's own buffer goes too: with no VM left the heap
            // figures are those from before the first.
            *vms = Vec::new();
        }
        vm
    };
    // A CPU may still hold a vCPU's lock for the rest of its slice: the
    // locks in `release` wait for it.
    release(&vm);
    Ok(())
}

/// Stops and destroys every VM (the plugin is unloading).
pub fn destroy_all() {
    let all: Vec<Arc<Vm>> = core::mem::take(&mut *VMS.lock());
    for vm in &all {
        vm.stop(None, Some("vmx-plugin unloaded".into()));
    }
    for vm in &all {
        release(vm);
    }
}
