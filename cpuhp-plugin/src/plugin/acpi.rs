//! Physical CPU hotplug: QEMU's ACPI CPU hotplug block, its GPE, and the
//! answers (_OST, eject) cpuhp gives to insert and remove requests.

use alloc::string::String;
use alloc::vec::Vec;
use cpuhp_api::code;
use plugins::acpihp::{ost_status, CpuHotplug, EventKind, HwPorts, Ost, GPE_BIT};
use plugins::{ffi, CpuInfo};
use spin::Mutex;

use super::{hotplug_add, hotplug_remove, INNER};
use crate::machine::{Refusal, MAX_CPUS};
use crate::physical::{self, RemoveAnswer};

/// QEMU's CPU hotplug block in modern mode, once cpuhp took GPE 2. Taken
/// only by the GPE handler, before the hotplug write lock.
static BLOCK: Mutex<Option<CpuHotplug<HwPorts>>> = Mutex::new(None);

/// At most this many events per GPE: each is acknowledged, so the block
/// runs dry sooner; the bound only keeps a misbehaving block from holding
/// the shell forever (what is left fires again).
const MAX_EVENTS: usize = 2 * MAX_CPUS;

/// The loader's APIC id per logical CPU.
fn apic_ids() -> Vec<u32> {
    // SAFETY: a plain query of the loader.
    let count = unsafe { ffi::mv_cpu_count() };
    (0..count)
        .map(|cpu| {
            let mut info = CpuInfo::default();
            // SAFETY: `info` is a live CpuInfo; cpu < count.
            unsafe { ffi::mv_cpu_info(cpu, &mut info) };
            info.apic_id
        })
        .collect()
}

/// Why a hotplug walk failed, from the last `failed` event.
fn last_failure_text() -> String {
    match INNER.lock().as_ref().and_then(|i| i.m.events.last_failure().cloned()) {
        Some(l) => {
            let why = Refusal { code: l.event.code, reason: l.reason };
            alloc::format!("state {} refused with error {why} (event #{})", l.event.state_name(), l.event.seq)
        }
        None => "no failure recorded".into(),
    }
}

/// GPE 2: QEMU has CPU hotplug events. Runs in thread context (the shell's
/// idle loop), so bringing a CPU up and waiting for it is allowed here.
extern "C" fn on_gpe(_: usize) {
    let mut block = BLOCK.lock();
    let Some(hp) = block.as_mut() else { return };
    let apics = apic_ids();
    for _ in 0..MAX_EVENTS {
        let Some(e) = hp.next_event() else { return };
        let cpu = physical::cpu_of_apic(&apics, e.apic_id);
        match (e.kind, cpu) {
            (EventKind::Insert, cpu) => {
                let rc = cpu.map_or(code::NO_SUCH_CPU, |c| hotplug_add(c as u32));
                let ost = physical::insert_ost(rc);
                match (cpu, rc) {
                    (Some(c), 0) => plugins::info!("cpu {c} (APIC id {}) inserted and online", e.apic_id),
                    (Some(c), code::FAILED) => plugins::warn!(
                        "cpu {c} (APIC id {}) inserted but stays offline: {}",
                        e.apic_id,
                        last_failure_text()
                    ),
                    (c, rc) => plugins::warn!("insertion of APIC id {} (cpu {c:?}) refused ({rc})", e.apic_id),
                }
                hp.ost(e.selector, ost);
                hp.ack(&e);
            }
            (EventKind::Remove, Some(c)) => match physical::remove_answer(hotplug_remove(c as u32)) {
                RemoveAnswer::Eject => {
                    // Logged before the _OST: the host reads the log
                    // once QEMU has the _OST.
                    plugins::info!("cpu {c} (APIC id {}) offline, ejecting it", e.apic_id);
                    hp.ack(&e);
                    hp.eject(e.selector);
                    hp.ost(e.selector, Ost::EJECTED);
                }
                RemoveAnswer::Refuse(ost) => {
                    plugins::warn!("eject of cpu {c} refused (_OST status {:#x}): {}", ost.status, last_failure_text());
                    hp.ost(e.selector, ost);
                    hp.ack(&e);
                }
            },
            (EventKind::Remove, None) => {
                plugins::warn!("eject request for unknown APIC id {}", e.apic_id);
                hp.ost(e.selector, Ost::eject_refused(ost_status::EJECT_NOT_SUPPORTED));
                hp.ack(&e);
            }
        }
    }
}

/// Brings up the CPUs QEMU inserted before the block was switched to its
/// modern interface: the legacy interface latched them, and the switch
/// keeps the CPUs but not their insert events, so no event will name them.
/// They are present in the block and absent to cpuhp.
fn adopt_inserted(hp: &mut CpuHotplug<HwPorts>) {
    let apics = apic_ids();
    for selector in 0..apics.len() as u32 {
        if !hp.is_enabled(selector) {
            continue;
        }
        let Some(cpu) = physical::cpu_of_apic(&apics, hp.arch_id(selector)) else { continue };
        let rc = hotplug_add(cpu as u32);
        if rc == code::PRESENT {
            continue;
        }
        match rc {
            0 => plugins::info!("cpu {cpu} was inserted before cpuhp took the hotplug block; online"),
            _ => plugins::warn!("cpu {cpu} was inserted before cpuhp took the hotplug block; stays offline ({rc})"),
        }
        hp.ost(selector, physical::insert_ost(rc));
    }
}

/// Deferred from init: switches the block to modern mode and takes GPE 2.
/// Not in init itself: during a swap the old version still owns GPE 2 until
/// the swap ends (the loader then drops its handler), and deferred work
/// runs only after that.
pub(super) extern "C" fn take_gpe(base: usize) {
    match CpuHotplug::modern(HwPorts, base as u16) {
        Ok(mut hp) => {
            adopt_inserted(&mut hp);
            *BLOCK.lock() = Some(hp);
        }
        Err(e) => return plugins::warn!("no physical CPU hotplug: {e}"),
    }
    // SAFETY: `on_gpe` is this plugin's; the loader drops it when we go.
    if unsafe { ffi::mv_gpe_register(GPE_BIT, on_gpe, 0) } != 0 {
        return plugins::warn!("no physical CPU hotplug: GPE {GPE_BIT} is taken");
    }
    // Events that came while no handler was registered (before the load,
    // or during a swap) are still latched in the block.
    on_gpe(0);
}
