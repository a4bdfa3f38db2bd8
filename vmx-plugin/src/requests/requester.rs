//! The requester's side: set request bits, then kick the vCPU out of guest
//! mode if it is running guest code on another pCPU.

use super::{generation_of, Mode, PcpuId, Requests, Ticket, VcpuSlot, NO_PCPU};
use core::sync::atomic::Ordering;

impl VcpuSlot {
    /// Makes the requests `req` pending, and returns the ticket to wait for
    /// the vCPU's acknowledgement with ([`super::wait_for_ack`]).
    ///
    /// SeqCst: the bits must be globally visible before this CPU reads the
    /// vCPU's mode in [`Self::kick`] (KVM: `smp_mb` between the request and
    /// the mode read), which pairs with the vCPU's store of InGuest before it
    /// reads the requests. The release half also publishes whatever the
    /// caller wrote for the request before making it (KVM's `smp_wmb` in
    /// `__kvm_make_request`); the vCPU's take acquires it.
    pub fn make_request(&self, req: Requests) -> Ticket {
        let before = self.word.fetch_or(u64::from(req.bits()), Ordering::SeqCst);
        Ticket(generation_of(before))
    }

    /// Kicks the vCPU if it is running guest code on another pCPU: returns
    /// the pCPU the caller must send an IPI to, or `None` if no IPI is
    /// needed. `me` is the pCPU the caller runs on. Call it after
    /// [`Self::make_request`], or after publishing the state the vCPU must
    /// see (a bare kick). Not from the vCPU's own thread once
    /// `enter_guest_prepare` returned `Ok`: nothing would check again.
    ///
    /// Only one of many concurrent kickers sends the IPI: the first one
    /// moves InGuest to ExitingGuest, and the others find ExitingGuest and
    /// rely on that IPI; the vCPU re-checks every request after it exits.
    pub fn kick(&self, me: PcpuId) -> Option<PcpuId> {
        if !self.claim_kick() {
            // Outside guest mode: it checks the requests before entering.
            // Exiting: another kicker's IPI is on its way.
            return None;
        }
        self.kick_target(me)
    }

    /// The second half of a kick that claimed the vCPU: where to send the
    /// IPI, if anywhere. Separate from `kick` for the model tests only.
    pub(super) fn kick_target(&self, me: PcpuId) -> Option<PcpuId> {
        // Read once. The value may be stale by the time the IPI lands: the
        // vCPU can exit, move to another pCPU and enter again right after
        // this load, so the IPI reaches a CPU it left. That is benign: the
        // IPI exists to get the vCPU out of guest mode, and a vCPU that moved
        // has left guest mode already; before entering on its new pCPU it
        // stored InGuest and then read its requests with interrupts off
        // (enter_guest_prepare), so it saw ours. The pCPU it left takes a
        // spurious interrupt and does nothing (KVM argues the same in
        // kvm_make_vcpu_request; SVM's AVIC doorbell likewise). The pCPU
        // may even have gone offline meanwhile (cpuhp moved the vCPU off
        // it): the IPI layer refuses a CPU that left, and the vCPU saw the
        // request before entering elsewhere all the same. The loader's
        // `requests` suite moves vCPUs this way while it makes requests.
        let cpu = self.pcpu.load(Ordering::Acquire);
        // The vCPU cannot be in guest mode on this pCPU behind our back: we
        // are running here, and a VM exit leaves guest mode before enabling
        // interrupts. pcpu == me only when the caller is the vCPU's own
        // thread in its interrupts-off entry path; its entry checks then
        // find the request (or ExitingGuest) and cancel the entry.
        (cpu != me && cpu != NO_PCPU).then_some(cpu)
    }

    /// The kick's one write: InGuest becomes ExitingGuest; true if this call
    /// did it. SeqCst, the other half of the pairing in `make_request`;
    /// acquire also makes `pcpu` at least as new as the one the vCPU stored
    /// before it entered (set_pcpu precedes its store of InGuest).
    pub(super) fn claim_kick(&self) -> bool {
        self.mode
            .compare_exchange(Mode::InGuest as u8, Mode::ExitingGuest as u8, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}
