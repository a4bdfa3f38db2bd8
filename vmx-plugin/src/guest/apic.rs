//! The virtual x2APIC of each vCPU (`crate::vapic` decides; this applies
//! it). Virtualized where the CPU offers APIC-register virtualization and
//! virtual-interrupt delivery: the CPU serves register reads, TPR, EOI and
//! self-IPIs from the virtual-APIC page and delivers what RVI requests;
//! the VMM handles the ICR and the timer. Emulated otherwise (or by the
//! VM's policy): every x2APIC MSR access exits and the VMM injects.
//! Interrupts from other vCPUs are posted into the target's `posted` bits,
//! then an EVENT request and a kick (or a wake of its halted pCPU) make it
//! look before its next entry; the target moves them into its APIC.

use super::vm::{self, Vcpu, VcpuRun, Vm};
use super::vmcs;
use crate::requests::Requests;
use crate::vapic::virt::{self, GuestInterruptStatus, Mode, PageWords};
use crate::vapic::{destinations, DeliveryMode, Effect, Fault, Lapic};
use alloc::format;
use alloc::string::String;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;
use plugins::ffi;
use volatile::VolatilePtr;

/// The virtual-APIC page of a vCPU, identity-mapped.
struct Page(u64);

impl Page {
    fn word(&self, offset: usize) -> VolatilePtr<'static, u32> {
        let ptr = NonNull::new((self.0 as usize + offset) as *mut u32).expect("a frame address is not 0");
        // SAFETY: a frame this vCPU holds for its life, identity-mapped;
        // the CPU writes it only while this vCPU is in guest mode, when
        // the VMM does not touch it (it runs this vCPU's exits).
        unsafe { VolatilePtr::new(ptr) }
    }
}

impl PageWords for Page {
    fn get(&self, offset: usize) -> u32 {
        self.word(offset).read()
    }

    fn set(&mut self, offset: usize, value: u32) {
        self.word(offset).write(value);
    }
}

/// One vCPU's APIC and how it is carried out. In Virtualized mode the
/// page is authoritative for IRR, ISR and TPR while the guest runs and
/// [`Lapic`] while the VMM does: [`VirtualApic::lapic`] takes the page's
/// changes first, and the entry publishes the VMM's.
pub struct VirtualApic {
    lapic: Lapic,
    mode: Mode,
    /// `mode` is set (the vCPU ran once).
    decided: bool,
    page: u64,
    /// The guest ran since the page was last absorbed.
    stale: bool,
    /// The VMM may have changed the APIC since the page was published.
    dirty: bool,
}

impl VirtualApic {
    /// The APIC of vCPU `id` at reset, its timer counted from the host TSC,
    /// with its virtual-APIC page at `page` (zeroed).
    pub fn new(id: u32, page: u64) -> VirtualApic {
        use core::num::NonZeroU64;
        // SAFETY: a plain query of the loader.
        let tsc_hz = unsafe { ffi::mv_tsc_khz() } * 1000;
        let clock = crate::vapic::Clock {
            apic_hz: NonZeroU64::new(super::APIC_TIMER_KHZ as u64 * 1000).expect("a non-zero constant"),
            tsc_hz: NonZeroU64::new(tsc_hz).unwrap_or(NonZeroU64::MIN),
        };
        let lapic = Lapic::new(id, clock);
        let mode = Mode::Emulated(virt::Reason::Forced);
        VirtualApic { lapic, mode, decided: false, page, stale: false, dirty: true }
    }

    /// The mode, once the vCPU ran.
    pub fn mode(&self) -> Option<Mode> {
        self.decided.then_some(self.mode)
    }

    /// The mode for `vm info`.
    pub fn describe(&self) -> String {
        match (self.decided, self.mode) {
            (false, _) => "x2APIC mode decided at its first run".into(),
            (true, Mode::Virtualized) => "x2APIC virtualized".into(),
            (true, Mode::Emulated(why)) => format!("{why}"),
        }
    }

    /// Fixed at the vCPU's first run, with the controls that follow from it.
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
        self.decided = true;
    }

    pub fn page(&self) -> u64 {
        self.page
    }

    /// The APIC for the VMM to read or change.
    pub fn lapic(&mut self) -> &mut Lapic {
        if self.mode == Mode::Virtualized {
            if self.stale {
                virt::absorb(&mut self.lapic, &Page(self.page));
                self.stale = false;
            }
            self.dirty = true;
        }
        &mut self.lapic
    }

    /// After an exit: the CPU may have changed the page.
    pub fn guest_ran(&mut self) {
        self.stale = self.mode == Mode::Virtualized;
    }

    /// Before an entry in Virtualized mode: the VMM's changes into the page
    /// and RVI/SVI, so the CPU delivers what is pending.
    fn publish(&mut self) -> Result<(), String> {
        if !self.dirty {
            return Ok(());
        }
        virt::publish(&self.lapic, &mut Page(self.page));
        let status = GuestInterruptStatus::of(&self.lapic).to_u16();
        vmcs::write(virt::VMCS_GUEST_INTERRUPT_STATUS as u64, status.into()).map_err(|e| format!("{e}"))?;
        self.dirty = false;
        Ok(())
    }
}

/// Posts `vector` to vCPU `to` of `vm` from another vCPU and makes it look.
fn post(vm: &Vm, to: usize, vector: u8) {
    vm.posted[to][vector as usize / 64].fetch_or(1 << (vector % 64), Ordering::SeqCst);
    notify(vm, to);
}

/// Sends vCPU `to` an NMI and makes it look.
fn post_nmi(vm: &Vm, to: usize) {
    if let Some(v) = vm.vcpus.get(to) {
        v.nmi.store(true, Ordering::SeqCst);
        notify(vm, to);
    }
}

/// Makes vCPU `to` look at what was posted to it before its next entry: an
/// EVENT request, and a kick if it is in guest mode on another CPU or a
/// wake of its pCPU if it halted.
fn notify(vm: &Vm, to: usize) {
    let slot = &vm.slots[to];
    slot.make_request(Requests::EVENT);
    // SAFETY: plain calls of the loader.
    let me = unsafe { ffi::mv_current_cpu() };
    let target = slot.kick(me).or_else(|| {
        // Not in guest mode: a halted vCPU's pCPU may be halting too.
        let v = vm.vcpus.get(to)?;
        (v.halt.load(Ordering::Acquire) != vm::RUNNING).then(|| v.cpu.load(Ordering::Acquire))
    });
    if let Some(cpu) = target {
        // SAFETY: as above (a CPU that left refuses it: nothing to wake).
        let _ = unsafe { ffi::mv_kick(cpu) };
    }
}

/// Whether vCPU `index` has interrupts posted it has not taken.
pub fn has_posted(vm: &Vm, index: usize) -> bool {
    vm.posted[index].iter().any(|w| w.load(Ordering::Acquire) != 0)
}

/// Sends what an ICR write asked for.
fn send(vm: &Vm, vcpu: &Vcpu, run: &mut VcpuRun, ipi: crate::vapic::Ipi) -> Result<(), String> {
    let nmi = match ipi.mode {
        DeliveryMode::Fixed | DeliveryMode::LowestPriority => false,
        DeliveryMode::Nmi => true,
        mode => {
            return Err(format!(
                "vCPU {} sent an IPI of delivery mode {mode:?}, which modvisor does not emulate",
                vcpu.index
            ))
        }
    };
    let ids = vm.vcpus.iter().map(|c| c.index);
    for to in destinations(ipi, vcpu.index, ids) {
        match (nmi, to == vcpu.index) {
            (true, _) => post_nmi(vm, to as usize),
            (false, true) => {
                run.apic.lapic().accept(ipi.vector);
            }
            (false, false) => post(vm, to as usize, ipi.vector),
        }
    }
    Ok(())
}

/// RDMSR of an x2APIC register or IA32_TSC_DEADLINE.
pub fn read(run: &mut VcpuRun, msr: u32) -> Result<u64, Fault> {
    run.apic.lapic().read_msr(msr, crate::plugin::rdtsc())
}

/// WRMSR of an x2APIC register or IA32_TSC_DEADLINE; `Err` with a report
/// when the write asks for something modvisor cannot do.
pub fn write(vm: &Vm, vcpu: &Vcpu, run: &mut VcpuRun, msr: u32, value: u64) -> Result<Result<(), Fault>, String> {
    match run.apic.lapic().write_msr(msr, value, crate::plugin::rdtsc()) {
        // Another plugin's hook may deliver it (IPI virtualization's, say).
        Ok(Effect::SendIpi(_)) if super::hooks::icr_write(vm.id, vcpu.index, value) => Ok(Ok(())),
        Ok(Effect::SendIpi(ipi)) => send(vm, vcpu, run, ipi).map(Ok),
        Ok(_) => Ok(Ok(())),
        Err(f) => Ok(Err(f)),
    }
}

/// Interruptibility-state bits (SDM "Guest Non-Register State"): STI and
/// MOV SS blocking hold off external interrupts and NMIs; NMI blocking
/// (virtual-NMI blocking with "virtual NMIs") holds off NMIs until IRET.
const BLOCKED: u64 = 0b11;
const BLOCKED_BY_NMI: u64 = 1 << 3;
const RFLAGS_IF: u64 = 1 << 9;
const VALID: u64 = 1 << 31;
const NMI_INFO: u64 = VALID | 2 << 8 | 2;

/// Before an entry: an NMI sent to the vCPU first, then posted interrupts
/// and timer expiries into the APIC. Virtualized, publishes them (the CPU
/// delivers); emulated, injects the highest pending interrupt if the guest
/// can take it, else asks for an exit when it can (interrupt-window
/// exiting).
pub fn before_entry(vm: &Vm, vcpu: &Vcpu, run: &mut VcpuRun) -> Result<(), String> {
    inject_nmi(vcpu)?;
    let now = crate::plugin::rdtsc();
    if has_posted(vm, vcpu.index as usize) || run.apic.lapic.next_timer_deadline().is_some_and(|at| at <= now) {
        let lapic = run.apic.lapic();
        for (word, bits) in vm.posted[vcpu.index as usize].iter().enumerate() {
            let mut pending = bits.swap(0, Ordering::AcqRel);
            while pending != 0 {
                let bit = pending.trailing_zeros();
                pending &= pending - 1;
                lapic.accept((word * 64) as u8 + bit as u8);
            }
        }
        lapic.expire_timer(now);
    }
    if run.apic.mode == Mode::Virtualized {
        return run.apic.publish();
    }
    let lapic = &mut run.apic.lapic;
    let Some(vector) = lapic.pending() else { return window(INTERRUPT_WINDOW, false) };
    let injecting = vmcs::read(vmcs::ENTRY_INTERRUPTION_INFO) & VALID != 0;
    let open =
        vmcs::read(vmcs::GUEST_RFLAGS) & RFLAGS_IF != 0 && vmcs::read(vmcs::GUEST_INTERRUPTIBILITY) & BLOCKED == 0;
    if injecting || !open {
        return window(INTERRUPT_WINDOW, true);
    }
    lapic.ack(vector);
    vmcs::write(vmcs::ENTRY_INTERRUPTION_INFO, VALID | vector as u64).map_err(|e| format!("{e}"))?;
    window(INTERRUPT_WINDOW, false)
}

/// Injects a pending NMI when the guest can take one (no event already
/// being injected, no STI, MOV SS or NMI blocking), else waits for the NMI
/// window. The window needs "virtual NMIs", without which a blocked NMI
/// cannot be held for the guest: the VM stops with a report.
fn inject_nmi(vcpu: &Vcpu) -> Result<(), String> {
    if !vcpu.nmi.load(Ordering::Acquire) {
        return Ok(());
    }
    let injecting = vmcs::read(vmcs::ENTRY_INTERRUPTION_INFO) & VALID != 0;
    let blocked = vmcs::read(vmcs::GUEST_INTERRUPTIBILITY) & (BLOCKED | BLOCKED_BY_NMI) != 0;
    if injecting || blocked {
        return window(NMI_WINDOW, true);
    }
    vcpu.nmi.store(false, Ordering::Release);
    vmcs::write(vmcs::ENTRY_INTERRUPTION_INFO, NMI_INFO).map_err(|e| format!("{e}"))?;
    window(NMI_WINDOW, false)
}

const INTERRUPT_WINDOW: crate::config::Control = crate::config::INTERRUPT_WINDOW_EXITING;
const NMI_WINDOW: crate::config::Control = crate::config::NMI_WINDOW_EXITING;

/// Sets or clears interrupt-window or NMI-window exiting.
fn window(which: crate::config::Control, on: bool) -> Result<(), String> {
    let bit = 1 << which.bit;
    let primary = vmcs::read(vmcs::PRIMARY_CONTROLS);
    let wanted = if on { primary | bit } else { primary & !bit };
    if wanted == primary {
        return Ok(());
    }
    // SAFETY: a plain query of the loader.
    let cpu = unsafe { ffi::mv_current_cpu() };
    if on && !crate::plugin::vmx_config(cpu).is_some_and(|c| c.has(which)) {
        return Err(format!("an event must wait until the guest can take it, but this CPU has no {}", which.name));
    }
    vmcs::write(vmcs::PRIMARY_CONTROLS, wanted).map_err(|e| format!("{e}"))
}

/// At a HLT exit: whether the vCPU may halt (nothing it could take is
/// pending), and when its timer would wake it.
pub fn may_halt(vcpu: &Vcpu, run: &mut VcpuRun) -> Option<u64> {
    if vcpu.nmi.load(Ordering::Acquire) {
        return None;
    }
    let lapic = run.apic.lapic();
    lapic.expire_timer(crate::plugin::rdtsc());
    lapic.pending().is_none().then(|| lapic.next_timer_deadline().unwrap_or(u64::MAX))
}
