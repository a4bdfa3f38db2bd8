//! The request/kick stress test's hooks (the loader's `requests` suite):
//! each vCPU counts its VM entries and the [`Requests::PROBE`] requests it
//! takes, and the `vm` table's probe entries make PROBE requests on sets of
//! vCPUs, wait for their acknowledgement and read the counts.
//!
//! What the test checks with them: every request is taken once (sent ==
//! seen per vCPU), before the vCPU's next entry after the request (its
//! entry count at the take is at most its count right after the request,
//! plus one if the request kicked it: the entry it may have been making
//! then), and before its next entry after the requester saw it
//! acknowledged.

use super::vm::{self, Vm};
use crate::requests::{make_request_mask_each, wait_for_acks, Requests, Ticket};
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};
use plugins::ffi;
use vmx_api::code;

/// A vCPU's counts; only its own thread writes them.
pub struct Probe {
    entries: AtomicU64,
    seen: AtomicU64,
    /// `entries` when the last PROBE was taken.
    seen_at: AtomicU64,
}

impl Probe {
    pub const fn new() -> Self {
        Self { entries: AtomicU64::new(0), seen: AtomicU64::new(0), seen_at: AtomicU64::new(0) }
    }

    /// Counts one VM entry; call it after the entry checks, right before
    /// the entry. A plain load and store (one writer): no locked
    /// instruction on every entry. Release, so that a requester that saw
    /// the vCPU leave guest mode afterwards reads this count or a newer one.
    pub fn entering(&self) {
        self.entries.store(self.entries.load(Ordering::Relaxed) + 1, Ordering::Release);
    }

    /// Counts a PROBE among requests the vCPU just took before an entry.
    pub fn took(&self, requests: Requests) {
        if requests.contains(Requests::PROBE) {
            self.seen_at.store(self.entries.load(Ordering::Relaxed), Ordering::Relaxed);
            self.seen.store(self.seen.load(Ordering::Relaxed) + 1, Ordering::Release);
        }
    }

    /// (PROBEs seen, entries when the last was seen, entries).
    fn counts(&self) -> [u64; 3] {
        let seen = self.seen.load(Ordering::Acquire);
        [seen, self.seen_at.load(Ordering::Relaxed), self.entries.load(Ordering::Acquire)]
    }
}

/// How long `probe_wait` waits for acknowledgements: far longer than a
/// vCPU's slice, so only a lost kick or request reaches it.
const ACK_WAIT_US: u64 = 200_000;

fn by_id(id: u32) -> Option<Arc<Vm>> {
    vm::VMS.lock().iter().find(|v| v.id == id).cloned()
}

/// `vm` table: makes PROBE pending on the vCPUs set in `vcpus` (bit i:
/// vCPU i) and kicks those in guest mode elsewhere; `tickets[i]` (64
/// entries) gets each target's ticket and `bounds[i]` the entry count by
/// which it must take the request (see the module). The IPIs sent, or a
/// code.
pub extern "C" fn probe_send(id: u32, vcpus: u64, tickets: *mut u32, bounds: *mut u64) -> i64 {
    let Some(v) = by_id(id) else { return code::NO_SUCH_VM as i64 };
    if (0..64).any(|i| vcpus >> i & 1 != 0 && v.vcpus.get(i).is_none()) {
        return code::REFUSED as i64;
    }
    let mut mine = [Ticket::default(); 64];
    let mut limits = [0u64; 64];
    // SAFETY: a plain query of the loader.
    let me = unsafe { ffi::mv_current_cpu() };
    let kick = |cpu| {
        // SAFETY: a plain call of the loader; a CPU that went offline since
        // its vCPU's pCPU was read refuses it (see `kick_target`).
        let _ = unsafe { ffi::mv_kick(cpu) };
    };
    // Read right after the target's request and kick: not kicked, it was
    // outside guest mode, so its next entry check sees the request and no
    // entry comes first; kicked, it may have been between its checks and
    // the entry, which it makes (and leaves at once).
    let each = |i: usize, t: Ticket, kicked: bool| {
        mine[i] = t;
        // Every set bit names a vCPU (checked above).
        limits[i] = v.vcpus.get(i).map_or(0, |c| c.probe.counts()[2]) + u64::from(kicked);
    };
    match make_request_mask_each(&v.slots, Requests::PROBE, &[vcpus], me, kick, each) {
        Err(_) => code::REFUSED as i64,
        Ok(outcome) => {
            // SAFETY: the caller passes 64 writable u32s.
            let out = unsafe { core::slice::from_raw_parts_mut(tickets, mine.len()) };
            for (o, t) in out.iter_mut().zip(mine) {
                *o = t.raw();
            }
            // SAFETY: the caller passes 64 writable u64s.
            unsafe { bounds.cast::<[u64; 64]>().write(limits) };
            outcome.ipis as i64
        }
    }
}

/// `vm` table: waits until every vCPU set in `vcpus` acknowledged the
/// request its ticket (from `probe_send`) came from, then writes each
/// one's entry count to `entries[i]` (64 entries). 0, the number that did
/// not acknowledge in time, or a negative code.
pub extern "C" fn probe_wait(id: u32, vcpus: u64, tickets: *const u32, entries: *mut u64) -> i64 {
    let Some(v) = by_id(id) else { return code::NO_SUCH_VM as i64 };
    // SAFETY: the caller passes 64 readable u32s.
    let raw = unsafe { core::slice::from_raw_parts(tickets, 64) };
    let mut mine = [Ticket::default(); 64];
    for (t, r) in mine.iter_mut().zip(raw) {
        *t = Ticket::from_raw(*r);
    }
    // SAFETY: a plain query of the loader.
    let deadline = crate::plugin::rdtsc() + unsafe { ffi::mv_tsc_khz() } * ACK_WAIT_US / 1000;
    let mut pending = [vcpus];
    let relax = || {
        core::hint::spin_loop();
        crate::plugin::rdtsc() < deadline
    };
    match wait_for_acks(&v.slots, &mine, &mut pending, relax) {
        Ok(()) => {}
        Err(crate::requests::Error::NotAcked { remaining }) => return remaining as i64,
        Err(_) => return code::REFUSED as i64,
    }
    // SAFETY: the caller passes 64 writable u64s.
    let out = unsafe { core::slice::from_raw_parts_mut(entries, 64) };
    // A VM's vCPU ids are below MAX_VCPUS (16).
    for c in v.vcpus.iter() {
        out[c.index as usize] = c.probe.counts()[2];
    }
    0
}

/// `vm` table: vCPU `vcpu`'s PROBEs seen, its entry count when it saw the
/// last, and its entries, into `out[0..3]`. 0 or a code.
pub extern "C" fn probe_counts(id: u32, vcpu: u32, out: *mut u64) -> i32 {
    let Some(v) = by_id(id) else { return code::NO_SUCH_VM };
    let Some(c) = v.vcpus.get(vcpu as usize) else { return code::REFUSED };
    // SAFETY: the caller passes 3 writable u64s.
    unsafe { out.cast::<[u64; 3]>().write(c.probe.counts()) };
    0
}
