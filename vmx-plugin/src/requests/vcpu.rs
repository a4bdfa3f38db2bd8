//! The vCPU's side, called only on the vCPU's own thread: publish the pCPU,
//! check requests before each entry, leave guest mode after each exit, and
//! take the requests to handle them.
//!
//! The run loop this expects, with interrupts off from `enter_guest_prepare`
//! to the VM entry, and from the VM exit to `exit_guest`:
//!
//! ```text
//! set_pcpu(this CPU)                 // when scheduled here
//! loop {
//!     irqs off
//!     match enter_guest_prepare() {
//!         Err(requests) => { irqs on; handle(requests); continue }
//!         Ok(()) => VMLAUNCH/VMRESUME, VM exit,
//!     }
//!     exit_guest(); irqs on
//!     handle(take_requests())        // or check_request per kind
//! }
//! ```
//!
//! An IPI that arrives in the interrupts-off window before entry stays
//! pending in the local APIC and makes the VM exit right after the entry
//! (external-interrupt exiting, SDM vol. 3C), so a kick there is not lost.

use super::{generation_of, requests_of, Mode, PcpuId, Requests, VcpuSlot, GENERATION_SHIFT, NO_PCPU, REQUEST_MASK};
use core::sync::atomic::Ordering;

impl VcpuSlot {
    /// Records the pCPU the vCPU now runs on; call it when the vCPU thread
    /// is scheduled on a pCPU, before its first `enter_guest_prepare` there.
    /// Release, and before the SeqCst store of InGuest: a kicker that sees
    /// InGuest reads this pCPU or a newer one.
    pub fn set_pcpu(&self, cpu: PcpuId) {
        debug_assert_ne!(cpu, NO_PCPU, "pCPU id {cpu} is the never-ran marker");
        self.pcpu.store(cpu, Ordering::Release);
    }

    /// The last step before VM entry, with interrupts off: enter guest mode,
    /// then look for requests. `Ok` means enter now; `Err` means the entry
    /// is cancelled, the vCPU is back outside guest mode, and these requests
    /// (taken, possibly none for a bare kick) must be handled first.
    ///
    /// The order is the point: mode first, requests second (KVM's
    /// `smp_store_mb(vcpu->mode, IN_GUEST_MODE)` then the request check).
    /// A requester sets its bits first and reads the mode second, so one of
    /// the two sees the other. Checking requests first would let one land
    /// between the check and the store, unseen by both.
    pub fn enter_guest_prepare(&self) -> Result<(), Requests> {
        self.publish_in_guest();
        if self.pending_after_publish().is_empty() && self.still_in_guest() {
            return Ok(());
        }
        self.exit_guest();
        Err(self.take_requests())
    }

    /// Leaves guest mode; call it after every VM exit, before interrupts
    /// are enabled again (so no host code on this pCPU sees InGuest). After
    /// this, requesters stop sending IPIs and rely on the next entry check.
    pub fn exit_guest(&self) {
        // SeqCst like every mode store: a requester waiting for an
        // acknowledgement may count OutsideGuest as one (`ack`).
        self.mode.store(Mode::OutsideGuest as u8, Ordering::SeqCst);
    }

    /// Takes every pending request (clears them) and acknowledges: bumps
    /// the generation in the same atomic operation, so a requester whose
    /// ticket predates this take sees its request consumed.
    pub fn take_requests(&self) -> Requests {
        // Acquire pairs with the requester's release: what it wrote for
        // the request is visible to the handler.
        let before = self.word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| Some(next_generation(word)));
        // fetch_update only fails when the closure returns None.
        requests_of(before.unwrap_or_else(|word| word))
    }

    /// Takes the requests of `req` only (test and clear), acknowledging if
    /// any was pending; returns whether one was. Other requests stay
    /// pending for the next entry check.
    pub fn check_request(&self, req: Requests) -> bool {
        // The common answer is "no": read before writing the shared line.
        if (requests_of(self.word.load(Ordering::Acquire)) & req).is_empty() {
            return false;
        }
        let before = self.word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
            let taken = u64::from((requests_of(word) & req).bits());
            (taken != 0).then_some(next_generation(word) | (word & REQUEST_MASK & !taken))
        });
        before.is_ok()
    }

    /// Step 1 of `enter_guest_prepare` (a separate step so the model tests
    /// can interleave it): store InGuest, SeqCst, i.e. a full barrier before
    /// the request read on x86 (the store is an XCHG).
    pub(super) fn publish_in_guest(&self) {
        self.mode.store(Mode::InGuest as u8, Ordering::SeqCst);
    }

    /// Step 2: the requests pending after InGuest was published.
    pub(super) fn pending_after_publish(&self) -> Requests {
        requests_of(self.word.load(Ordering::SeqCst))
    }

    /// Step 3: whether no bare kick moved us to ExitingGuest since step 1.
    /// Not needed for correctness: such a kick's IPI stays pending in the
    /// local APIC while interrupts are off and forces an exit right after
    /// entry (the window after the last check exists whatever we check).
    /// Cancelling here saves that entry and exit; KVM checks for
    /// EXITING_GUEST_MODE at the same point.
    pub(super) fn still_in_guest(&self) -> bool {
        self.mode.load(Ordering::SeqCst) == Mode::InGuest as u8
    }
}

/// `word` with no requests and the generation advanced (wrapping: waiters
/// compare for inequality, and 2^32 takes during one bounded wait do not
/// happen).
fn next_generation(word: u64) -> u64 {
    u64::from(generation_of(word).wrapping_add(1)) << GENERATION_SHIFT
}
