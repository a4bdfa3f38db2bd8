//! Waiting until targets acknowledge a request.
//!
//! Acknowledged means: since the request was made, the vCPU has been
//! outside guest mode, so it runs no more guest code before it has seen the
//! request. That is what a TLB shootdown needs (no vCPU keeps using stale
//! translations), and it is KVM's guarantee for requests made with
//! KVM_REQUEST_WAIT, which waits for the kick IPIs' handlers. It is not
//! "handled": a request whose completion matters publishes its own.
//!
//! Our per-vCPU form needs no IPI handler: a vCPU acknowledges when it takes
//! requests (the generation in its slot's word moves), and a vCPU seen
//! outside guest mode has acknowledged already, since its next entry check
//! comes after the request (the Dekker pairing of `make_request`).

use super::mask::{check_targets, check_tickets};
use super::{generation_of, Error, Mode, VcpuSlot};
use core::sync::atomic::Ordering;

/// What a requester keeps to wait for one vCPU's acknowledgement: the
/// acknowledgement generation at the moment its request bits were set
/// (read in the same atomic operation, see [`VcpuSlot::make_request`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ticket(pub(super) u32);

impl Ticket {
    /// The generation it holds, for a caller that keeps tickets across a
    /// table call (the `vm` table's probe entries).
    pub const fn raw(self) -> u32 {
        self.0
    }

    pub const fn from_raw(raw: u32) -> Self {
        Self(raw)
    }
}

impl VcpuSlot {
    /// Whether the vCPU has acknowledged the request `ticket` came from.
    pub fn is_acked(&self, ticket: Ticket) -> bool {
        // A take since the request: the generation moved (any change: it
        // wraps, see next_generation).
        if generation_of(self.word.load(Ordering::SeqCst)) != ticket.0 {
            return true;
        }
        // Outside guest mode now, after the request was made: the next
        // store of InGuest follows this load, so the vCPU's entry check
        // after it sees the request.
        self.mode.load(Ordering::SeqCst) == Mode::OutsideGuest as u8
    }
}

/// Waits until `vcpu` acknowledged the request `ticket` came from.
/// `relax` runs between polls (a pause, a yield, a clock check) and returns
/// false to stop waiting: the bound is the caller's.
pub fn wait_for_ack(vcpu: &VcpuSlot, ticket: Ticket, mut relax: impl FnMut() -> bool) -> Result<(), Error> {
    loop {
        if vcpu.is_acked(ticket) {
            return Ok(());
        }
        if !relax() {
            return Err(Error::NotAcked { remaining: 1 });
        }
    }
}

/// Waits until every vCPU whose bit is set in `pending` acknowledged its
/// request, with `tickets[id]` from [`super::make_request_mask_tickets`].
/// Acknowledged bits are cleared as they are seen, so on
/// [`Error::NotAcked`] the bits left in `pending` are the vCPUs that did not
/// acknowledge in time. `relax` as in [`wait_for_ack`], once per pass.
pub fn wait_for_acks(
    vcpus: &[VcpuSlot],
    tickets: &[Ticket],
    pending: &mut [u64],
    mut relax: impl FnMut() -> bool,
) -> Result<(), Error> {
    check_targets(pending, vcpus.len())?;
    check_tickets(pending, tickets.len())?;
    loop {
        let mut remaining = 0;
        for (index, word) in pending.iter_mut().enumerate() {
            // Only the set bits, as in make_request_mask.
            let mut bits = *word;
            while bits != 0 {
                let bit = bits.trailing_zeros();
                bits &= bits - 1;
                let id = index * 64 + bit as usize;
                if vcpus[id].is_acked(tickets[id]) {
                    *word &= !(1 << bit);
                } else {
                    remaining += 1;
                }
            }
        }
        if remaining == 0 {
            return Ok(());
        }
        if !relax() {
            return Err(Error::NotAcked { remaining });
        }
    }
}
