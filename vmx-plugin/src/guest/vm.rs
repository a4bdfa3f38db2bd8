//! VMs: guest RAM from frames mapped by EPT, the guest ABI's boot
//! structures (GDT, identity page tables), ELF loading, and the table of
//! VMs. A VM's vCPUs run in `run`; everything a VM holds is given back by
//! `destroy`.

use super::entry::Regs;
use crate::exits::ExitCounts;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use plugins::ffi;

pub const PAGE: u64 = 4096;
const LARGE: u64 = 2 << 20;
/// Guest RAM is mapped from guest-physical 0 up to this at most (one EPT
/// page directory of 2 MiB pages).
pub const MAX_RAM: u64 = 1 << 30;
pub const MAX_VCPUS: usize = 16;

pub use super::error::Error;

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
    /// The state of the first entry (set before the VM starts).
    pub init: Option<crate::vcpu_init::GuestState>,
    pub exits: ExitCounts,
    /// The vCPU's local APIC (x2APIC mode) and its virtual-APIC page.
    pub apic: super::apic::VirtualApic,
    /// The vCPU's MSR bitmap (a frame), filled at its first run.
    pub msr_bitmap: u64,
    /// The guest's values of the MSRs the CPU does not switch.
    pub saved: super::msr::SavedMsrs,
    pub fpu: super::fpu::Fpu,
}

/// [`Vcpu::halt`]: running, or halted until an interrupt, or halted with
/// interrupts off (only an NMI wakes it, or INIT, which modvisor does not
/// emulate).
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
    /// An NMI sent to it, not yet injected (NMIs do not queue: one pending
    /// at most, SDM "NMI Interrupt Handling").
    pub nmi: core::sync::atomic::AtomicBool,
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

/// A VM's vCPUs by id: each made once (`vcpu::create`), never removed
/// before the VM goes; ids need not be dense.
pub struct Vcpus([spin::Once<Vcpu>; MAX_VCPUS]);

impl Vcpus {
    pub fn iter(&self) -> impl Iterator<Item = &Vcpu> + '_ {
        self.0.iter().filter_map(spin::Once::get)
    }

    pub fn get(&self, id: usize) -> Option<&Vcpu> {
        self.0.get(id)?.get()
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Makes vCPU `id` from `make`; the caller holds the VM's lock and
    /// found the id free.
    pub fn add(&self, id: usize, make: impl FnOnce() -> Vcpu) {
        self.0[id].call_once(make);
    }
}

pub struct Vm {
    pub id: u32,
    pub name: String,
    pub ram_phys: u64,
    pub ram_bytes: u64,
    pub ept: crate::ept::Ept,
    pub vcpus: Vcpus,
    /// Serialises vCPU creation: the hooks' `vcpu_precreate` runs under it.
    pub lock: spin::Mutex<()>,
    /// Each vCPU's request bits, mode and pCPU, by vCPU id: what other
    /// CPUs touch (`crate::requests`).
    pub slots: Vec<crate::requests::VcpuSlot>,
    /// Interrupts other vCPUs sent each vCPU, not yet in its APIC: 256
    /// bits each, set by the sender, taken by the vCPU before its entry.
    pub posted: Vec<[AtomicU64; 4]>,
    state: AtomicU8,
    pub ending: spin::Mutex<Ending>,
    /// Emulate the x2APIC even where the CPU could virtualize it (set
    /// before the first run; `vm create ... apic=emulate`).
    pub emulate_apic: core::sync::atomic::AtomicBool,
    /// The current console line.
    pub line: spin::Mutex<String>,
    pub ports: spin::Mutex<crate::ranges::Ranges<super::io::Port>>,
    pub mmio: spin::Mutex<crate::ranges::Ranges<super::io::Mmio>>,
    /// A `vmx_api::port_policy`.
    pub port_policy: AtomicU32,
}

impl Vm {
    pub fn state(&self) -> State {
        State::from(self.state.load(Ordering::Acquire))
    }

    pub fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::Release);
    }

    /// Moves the VM from `from` to `to` unless something else moved it
    /// first; whether it did.
    pub fn transition(&self, from: State, to: State) -> bool {
        self.state.compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// The bitmap of the vCPU ids that exist, for requests to all.
    pub fn vcpu_bitmap(&self) -> [u64; MAX_VCPUS.div_ceil(64)] {
        let mut bitmap = [0u64; MAX_VCPUS.div_ceil(64)];
        for c in self.vcpus.iter() {
            bitmap[c.index as usize / 64] |= 1 << (c.index % 64);
        }
        bitmap
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
        let bitmap = self.vcpu_bitmap();
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

impl Vm {
    /// Makes `req` pending on every vCPU, kicks those in guest mode, and
    /// waits (up to 100 ms) until each has left it or taken the request.
    pub fn request_and_wait(&self, req: crate::requests::Requests) {
        use crate::requests::{make_request_mask_tickets, wait_for_acks, Ticket};
        let bitmap = self.vcpu_bitmap();
        let mut tickets = [Ticket::default(); MAX_VCPUS];
        // SAFETY: a plain query of the loader.
        let me = unsafe { ffi::mv_current_cpu() };
        let kick = |cpu| {
            // SAFETY: a plain call of the loader (see `request_all`).
            let _ = unsafe { ffi::mv_kick(cpu) };
        };
        // Every set bit names a slot, and `tickets` has one per slot.
        let _ = make_request_mask_tickets(&self.slots, req, &bitmap, me, &mut tickets, kick);
        let end = crate::plugin::rdtsc() + 100 * 1000 * ticks_per_ms();
        let mut pending = bitmap;
        if let Err(e) = wait_for_acks(&self.slots, &tickets, &mut pending, || crate::plugin::rdtsc() < end) {
            plugins::warn!("VM `{}`: {e}", self.name);
        }
    }
}

fn ticks_per_ms() -> u64 {
    // SAFETY: a plain query of the loader.
    unsafe { ffi::mv_tsc_khz() }
}

pub static VMS: spin::Mutex<Vec<Arc<Vm>>> = spin::Mutex::new(Vec::new());
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

pub fn find(name: &str) -> Result<Arc<Vm>, Error> {
    VMS.lock().iter().find(|v| v.name == name).cloned().ok_or_else(|| Error::NoSuchVm(name.into()))
}

pub(super) fn frames(count: u64, align: u64, what: &'static str) -> Result<u64, Error> {
    // SAFETY: a plain call of the loader.
    match unsafe { ffi::mv_frames_alloc(plugins::runtime::image_address(), count, align) } {
        0 => Err(Error::NoMemory { what }),
        phys => Ok(phys),
    }
}

pub(super) fn free_frames(phys: u64, count: u64) {
    // SAFETY: a block this plugin allocated with `frames` and no longer uses.
    if unsafe { ffi::mv_frames_free(plugins::runtime::image_address(), phys, count) } != 0 {
        plugins::warn!("frames at {phys:#x} were not given back");
    }
}

/// Zeroes `len` bytes of identity-mapped frames at `phys`.
pub(super) fn zero(phys: u64, len: u64) {
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
/// `cpus` (the pCPU each is bound to; none: `vcpu::create` adds them).
pub fn create(name: &str, mem_mib: u64, cpus: &[u32]) -> Result<Arc<Vm>, Error> {
    if !valid_name(name) {
        return Err(Error::BadName);
    }
    let ram = mem_mib << 20;
    if !(4 << 20..=MAX_RAM).contains(&ram) || !ram.is_multiple_of(LARGE) {
        return Err(Error::BadMemory(mem_mib));
    }
    if cpus.len() > MAX_VCPUS {
        return Err(Error::BadVcpus(cpus.len()));
    }
    if let Some(&c) = cpus.iter().find(|&&c| super::super::plugin::vmcs_revision(c).is_none()) {
        return Err(Error::NoCpu(c));
    }
    let vm = {
        let mut vms = VMS.lock();
        if vms.iter().any(|v| v.name == name) {
            return Err(Error::Exists(name.into()));
        }
        let vm = Arc::new(new_vm(name, ram)?);
        vms.push(vm.clone());
        vm
    };
    // Outside the table's lock: hooks may call the `vm` table.
    super::hooks::vm_created(vm.id);
    for (i, &cpu) in cpus.iter().enumerate() {
        if let Err(e) = super::vcpu::create(&vm, i as u32, cpu) {
            // Destroyable: it never started.
            let _ = destroy(name);
            return Err(e);
        }
    }
    Ok(vm)
}

/// A VM with zeroed RAM mapped by its EPT, and no vCPUs.
fn new_vm(name: &str, ram: u64) -> Result<Vm, Error> {
    let ram_phys = frames(ram / PAGE, LARGE / PAGE, "guest RAM")?;
    zero(ram_phys, ram);
    let ept = match build_ept(ram_phys, ram) {
        Ok(e) => e,
        Err(e) => {
            free_frames(ram_phys, ram / PAGE);
            return Err(e);
        }
    };
    Ok(Vm {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        name: name.into(),
        ram_phys,
        ram_bytes: ram,
        ept,
        vcpus: Vcpus([const { spin::Once::new() }; MAX_VCPUS]),
        lock: spin::Mutex::new(()),
        slots: (0..MAX_VCPUS).map(|_| crate::requests::VcpuSlot::new()).collect(),
        posted: (0..MAX_VCPUS).map(|_| [const { AtomicU64::new(0) }; 4]).collect(),
        state: AtomicU8::new(State::Created as u8),
        ending: spin::Mutex::new(Ending::default()),
        emulate_apic: core::sync::atomic::AtomicBool::new(false),
        line: spin::Mutex::new(String::new()),
        ports: spin::Mutex::new(crate::ranges::Ranges::new()),
        mmio: spin::Mutex::new(crate::ranges::Ranges::new()),
        port_policy: AtomicU32::new(vmx_api::port_policy::STOP),
    })
}

/// Copies `bytes` to guest-physical `gpa` of `vm`.
pub fn write(vm: &Vm, gpa: u64, bytes: &[u8]) -> Result<(), Error> {
    let len = bytes.len() as u64;
    let to = vm.host(gpa, len).ok_or_else(|| Error::OutsideRam { vm: vm.name.clone(), gpa, len })?;
    // SAFETY: `host` checked the range is this VM's RAM, which only the
    // guest shares, and the guest may race with it as with any device.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), to, bytes.len()) };
    Ok(())
}

/// Loads the guest ELF at `path` (in the initrd, or `uploads/<name>` for
/// one uploaded over COM2) into `vm` and sets every vCPU to the test-guest
/// ABI's entry state, whose ports (console 0xE9, exit 0xF4) become the
/// VM's.
pub fn load(vm: &Vm, path: &str) -> Result<(), Error> {
    if vm.state() != State::Created {
        return Err(Error::WrongState { vm: vm.name.clone(), state: vm.state().name() });
    }
    let mut len = 0usize;
    let ptr = match path.strip_prefix("uploads/") {
        // SAFETY: a plain call of the loader; `len` is ours.
        Some(name) => unsafe { ffi::mv_uploaded_file(plugins::StrRef::borrowed(name), &mut len) },
        // SAFETY: as above.
        None => unsafe { ffi::mv_initrd_file(plugins::StrRef::borrowed(path), &mut len) },
    };
    if ptr.is_null() {
        return Err(Error::NoFile(path.into()));
    }
    // SAFETY: the loader returned the initrd's bytes, which stay for good.
    let file = unsafe { core::slice::from_raw_parts(ptr, len) };
    write_boot_structures(vm);
    let entry = super::elf::place(file, |gpa, len| vm.host(gpa, len))
        .map_err(|why| Error::BadElf { file: path.into(), why })?;
    super::io::register_test_abi(vm)?;
    let count = vm.vcpus.len() as u64;
    for v in vm.vcpus.iter() {
        let abi = [v.index as u64, count, vm.ram_bytes];
        let host_efer = super::vcpu::host_efer();
        let init = crate::vcpu_init::test_abi(
            super::vmcs::GDT,
            super::vmcs::PML4,
            entry,
            stack_top(vm, v.index),
            abi,
            host_efer,
        );
        super::vcpu::set_state(vm, v.index, &init)?;
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
/// CPU that has it active) and pages, its RAM and its EPT.
fn release(vm: &Vm) {
    for v in vm.vcpus.iter() {
        let (active, pages) = {
            let mut run = v.run.lock();
            (run.active_on.take(), run.apic.page())
        };
        if let Some(cpu) = active {
            super::super::plugin::clear_vmcs_on(cpu, v.vmcs_phys);
        }
        super::super::plugin::free_vmcs(v.vmcs_virt);
        free_frames(pages, super::vcpu::pages());
    }
    free_frames(vm.ram_phys, vm.ram_bytes / PAGE);
    free_ept(&vm.ept);
}

/// Tells the hooks `vm` goes: each vCPU, then the VM.
fn announce_destroy(vm: &Vm) {
    for v in vm.vcpus.iter() {
        super::hooks::vcpu_destroyed(vm.id, v.index);
    }
    super::hooks::vm_destroyed(vm.id);
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
    announce_destroy(&vm);
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
        announce_destroy(vm);
        release(vm);
    }
}
