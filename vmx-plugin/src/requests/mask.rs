//! Requests for a set of vCPUs, named by a bitmap of vCPU ids (bit `id % 64`
//! of word `id / 64`), as KVM's `kvm_make_vcpus_request_mask`: only the set
//! bits are visited, each target's pCPU is read once, and the IPIs go out
//! after every request is made, one per distinct pCPU where that is cheap
//! to see.
//!
//! A vCPU blocked in the host (halted) is OutsideGuest: a request reaches
//! it at its next entry, but nothing here wakes it; that is the scheduler's
//! part (KVM's `kvm_vcpu_wake_up`).

use super::{Error, PcpuId, Requests, Ticket, VcpuSlot};

/// What a request for a set of vCPUs did; deterministic, so the set-bits
/// walk and the full scan compare by operation count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaskOutcome {
    /// vCPU ids looked at: the set bits for [`make_request_mask`], every
    /// slot for [`make_request_full_scan`].
    pub examined: usize,
    /// vCPUs whose requests were made (the set bits).
    pub requested: usize,
    /// Of those, the ones this call kicked out of guest mode on another pCPU.
    pub kicked: usize,
    /// IPIs sent: one per kicked vCPU, less those to a pCPU already in the
    /// batch (two targets that report one pCPU, one of them stale).
    pub ipis: usize,
}

/// Makes `req` pending on every vCPU set in `bitmap` and kicks those in
/// guest mode on a pCPU other than `me`, calling `ipi` once per pCPU to
/// interrupt. Visits only the set bits: cost follows the targets, not the
/// VM's size. Fails before any request if a set bit names no slot.
pub fn make_request_mask(
    vcpus: &[VcpuSlot],
    req: Requests,
    bitmap: &[u64],
    me: PcpuId,
    ipi: impl FnMut(PcpuId),
) -> Result<MaskOutcome, Error> {
    check_targets(bitmap, vcpus.len())?;
    Ok(walk_set_bits(vcpus, req, bitmap, me, ipi, |_, _, _| {}))
}

/// The set-bits walk of the mask functions; `each` gets every target's id,
/// ticket and whether this walk kicked it, right after its request and
/// kick. The bitmap is checked against the slots already.
fn walk_set_bits(
    vcpus: &[VcpuSlot],
    req: Requests,
    bitmap: &[u64],
    me: PcpuId,
    ipi: impl FnMut(PcpuId),
    mut each: impl FnMut(usize, Ticket, bool),
) -> MaskOutcome {
    let mut walk = Walk::new(req, me, ipi);
    for_each_set_bit(bitmap, |id| {
        walk.outcome.examined += 1;
        let (ticket, kicked) = walk.target(&vcpus[id]);
        each(id, ticket, kicked);
    });
    walk.finish()
}

/// [`make_request_mask`], calling `each` with every target's id, ticket
/// and whether this call kicked it out of guest mode, right after its
/// request and kick (the stress test reads the target's entry count there).
pub fn make_request_mask_each(
    vcpus: &[VcpuSlot],
    req: Requests,
    bitmap: &[u64],
    me: PcpuId,
    ipi: impl FnMut(PcpuId),
    each: impl FnMut(usize, Ticket, bool),
) -> Result<MaskOutcome, Error> {
    check_targets(bitmap, vcpus.len())?;
    Ok(walk_set_bits(vcpus, req, bitmap, me, ipi, each))
}

/// [`make_request_mask`], also storing each target's ticket in
/// `tickets[id]` for [`super::wait_for_acks`] (with the same bitmap).
pub fn make_request_mask_tickets(
    vcpus: &[VcpuSlot],
    req: Requests,
    bitmap: &[u64],
    me: PcpuId,
    tickets: &mut [Ticket],
    ipi: impl FnMut(PcpuId),
) -> Result<MaskOutcome, Error> {
    check_targets(bitmap, vcpus.len())?;
    check_tickets(bitmap, tickets.len())?;
    Ok(walk_set_bits(vcpus, req, bitmap, me, ipi, |id, ticket, _| tickets[id] = ticket))
}

/// The same requests and kicks as [`make_request_mask`], found by testing
/// every vCPU id against the bitmap (KVM's shape before it walked the set
/// bits). Kept as the baseline the set-bits walk is measured against.
pub fn make_request_full_scan(
    vcpus: &[VcpuSlot],
    req: Requests,
    bitmap: &[u64],
    me: PcpuId,
    ipi: impl FnMut(PcpuId),
) -> Result<MaskOutcome, Error> {
    check_targets(bitmap, vcpus.len())?;
    let mut walk = Walk::new(req, me, ipi);
    for (id, vcpu) in vcpus.iter().enumerate() {
        walk.outcome.examined += 1;
        if bitmap.get(id / 64).is_some_and(|word| word & 1 << (id % 64) != 0) {
            walk.target(vcpu);
        }
    }
    Ok(walk.finish())
}

/// Calls `f` with the index of every set bit of `bitmap`, lowest first:
/// each word is read once and only its set bits are visited.
pub(super) fn for_each_set_bit(bitmap: &[u64], mut f: impl FnMut(usize)) {
    for (index, &word) in bitmap.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            f(index * 64 + bits.trailing_zeros() as usize);
            // Clear the lowest set bit.
            bits &= bits - 1;
        }
    }
}

/// The lowest id set in `bitmap` that is `limit` or more.
fn first_set_from(bitmap: &[u64], limit: usize) -> Option<usize> {
    let (start, shift) = (limit / 64, limit % 64);
    bitmap.iter().enumerate().skip(start).find_map(|(index, &word)| {
        let word = if index == start { word & u64::MAX << shift } else { word };
        (word != 0).then(|| index * 64 + word.trailing_zeros() as usize)
    })
}

/// Every id set in `bitmap` has a slot among `slots`.
pub(super) fn check_targets(bitmap: &[u64], slots: usize) -> Result<(), Error> {
    first_set_from(bitmap, slots).map_or(Ok(()), |id| Err(Error::NoSuchVcpu { id, slots }))
}

/// Every id set in `bitmap` has an entry among `tickets`.
pub(super) fn check_tickets(bitmap: &[u64], tickets: usize) -> Result<(), Error> {
    first_set_from(bitmap, tickets).map_or(Ok(()), |id| Err(Error::NoTicket { id, tickets }))
}

/// How many distinct pCPUs a batch holds before its IPIs go out: small
/// enough that the duplicate check is a few compares, large enough that a
/// VM-wide request for a typical VM sends each IPI once.
const BATCH: usize = 16;

/// One request over many vCPUs: the requests are made as targets come,
/// the IPIs are batched (KVM collects a cpumask and kicks it at the end).
struct Walk<I: FnMut(PcpuId)> {
    req: Requests,
    me: PcpuId,
    ipi: I,
    batch: [PcpuId; BATCH],
    batched: usize,
    outcome: MaskOutcome,
}

impl<I: FnMut(PcpuId)> Walk<I> {
    fn new(req: Requests, me: PcpuId, ipi: I) -> Self {
        Self { req, me, ipi, batch: [0; BATCH], batched: 0, outcome: MaskOutcome::default() }
    }

    /// Requests and, if it is in guest mode elsewhere, kicks one target:
    /// its ticket, and whether it was kicked.
    fn target(&mut self, vcpu: &VcpuSlot) -> (Ticket, bool) {
        let ticket = vcpu.make_request(self.req);
        self.outcome.requested += 1;
        // kick reads the target's pCPU once; see there why a stale value
        // is benign.
        let kicked = vcpu.kick(self.me);
        if let Some(cpu) = kicked {
            self.outcome.kicked += 1;
            self.queue(cpu);
        }
        (ticket, kicked.is_some())
    }

    fn queue(&mut self, cpu: PcpuId) {
        if self.batch[..self.batched].contains(&cpu) {
            return;
        }
        if self.batched == BATCH {
            self.flush();
        }
        self.batch[self.batched] = cpu;
        self.batched += 1;
    }

    fn flush(&mut self) {
        for &cpu in &self.batch[..self.batched] {
            (self.ipi)(cpu);
        }
        self.outcome.ipis += self.batched;
        self.batched = 0;
    }

    fn finish(mut self) -> MaskOutcome {
        self.flush();
        self.outcome
    }
}
