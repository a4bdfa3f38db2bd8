//! Host tests of requests and kicks: each transition alone (here), every
//! interleaving of the protocol's atomic steps against a model (`model`),
//! threads with migrating vCPUs (`stress`), and the set-bits walk against
//! the full scan (`mask`).

use super::*;

mod mask;
mod model;
mod stress;

/// A slot with the given raw state, as the model and the unit tests set it.
fn slot(word: u64, mode: Mode, pcpu: PcpuId) -> VcpuSlot {
    VcpuSlot { word: AtomicU64::new(word), mode: AtomicU8::new(mode as u8), pcpu: AtomicU32::new(pcpu) }
}

fn generation(vcpu: &VcpuSlot) -> u32 {
    generation_of(vcpu.word.load(Ordering::SeqCst))
}

// A slot is one cache line, so an array of them shares none.
const _: () = assert!(core::mem::size_of::<VcpuSlot>() == 64 && core::mem::align_of::<VcpuSlot>() == 64);

#[test]
fn new_slot_is_outside_guest_with_nothing_pending_and_no_pcpu() {
    let vcpu = VcpuSlot::new();
    assert_eq!(vcpu.mode(), Mode::OutsideGuest);
    assert!(vcpu.pending().is_empty());
    assert_eq!(vcpu.pcpu(), None);
    vcpu.set_pcpu(3);
    assert_eq!(vcpu.pcpu(), Some(3));
}

#[test]
fn request_constants_are_distinct_bits_below_the_generation() {
    let all = [Requests::TLB_FLUSH, Requests::EVENT, Requests::PAUSE, Requests::MIGRATE, Requests::STOP];
    let mut union = Requests::NONE;
    for req in all {
        assert_eq!(req.bits().count_ones(), 1, "{req:?}");
        assert!(!union.contains(req), "{req:?} reuses a bit");
        union |= req;
    }
    assert!(Requests::ALL.contains(union));
    assert!(Requests::NONE.is_empty() && union.contains(Requests::NONE));
    assert_eq!(u64::from(Requests::ALL.bits()), REQUEST_MASK);
}

#[test]
fn make_request_sets_bits_merges_repeats_and_returns_the_generation() {
    let vcpu = slot(7 << GENERATION_SHIFT, Mode::OutsideGuest, 1);
    assert_eq!(vcpu.make_request(Requests::TLB_FLUSH), Ticket(7));
    assert_eq!(vcpu.make_request(Requests::TLB_FLUSH | Requests::EVENT), Ticket(7));
    assert_eq!(vcpu.pending(), Requests::TLB_FLUSH | Requests::EVENT);
    assert_eq!(generation(&vcpu), 7, "requesters never move the generation");
}

#[test]
fn kick_outside_guest_mode_sends_nothing_and_leaves_the_mode() {
    let vcpu = slot(0, Mode::OutsideGuest, 1);
    assert_eq!(vcpu.kick(0), None);
    assert_eq!(vcpu.mode(), Mode::OutsideGuest);
}

#[test]
fn kick_in_guest_elsewhere_claims_the_exit_once() {
    let vcpu = slot(0, Mode::InGuest, 5);
    assert_eq!(vcpu.kick(0), Some(5));
    assert_eq!(vcpu.mode(), Mode::ExitingGuest);
    // The second kicker finds ExitingGuest: the first one's IPI will do.
    assert_eq!(vcpu.kick(1), None);
    assert_eq!(vcpu.mode(), Mode::ExitingGuest);
}

#[test]
fn kick_of_a_vcpu_on_the_callers_pcpu_sends_no_ipi_but_marks_it_exiting() {
    let vcpu = slot(0, Mode::InGuest, 2);
    assert_eq!(vcpu.kick(2), None);
    // Its own entry path then cancels (still_in_guest fails).
    assert_eq!(vcpu.mode(), Mode::ExitingGuest);
    assert!(!vcpu.still_in_guest());
}

#[test]
fn kick_of_a_vcpu_that_never_ran_sends_no_ipi() {
    let vcpu = slot(0, Mode::InGuest, NO_PCPU);
    assert_eq!(vcpu.kick(0), None);
}

#[test]
fn entry_with_nothing_pending_enters_guest_mode() {
    let vcpu = slot(0, Mode::OutsideGuest, 1);
    assert_eq!(vcpu.enter_guest_prepare(), Ok(()));
    assert_eq!(vcpu.mode(), Mode::InGuest);
    assert_eq!(generation(&vcpu), 0, "an entry is no acknowledgement");
    vcpu.exit_guest();
    assert_eq!(vcpu.mode(), Mode::OutsideGuest);
}

#[test]
fn entry_with_requests_pending_is_cancelled_and_returns_them_taken() {
    let vcpu = slot(0, Mode::OutsideGuest, 1);
    let ticket = vcpu.make_request(Requests::PAUSE | Requests::EVENT);
    assert_eq!(vcpu.enter_guest_prepare(), Err(Requests::PAUSE | Requests::EVENT));
    assert_eq!(vcpu.mode(), Mode::OutsideGuest);
    assert!(vcpu.pending().is_empty());
    assert_eq!(generation(&vcpu), 1);
    assert!(vcpu.is_acked(ticket));
}

#[test]
fn entry_steps_cancel_on_a_bare_kick_between_store_and_check() {
    // What enter_guest_prepare does, with a bare kick landing after the
    // store of InGuest: the request check finds nothing, the mode check
    // finds ExitingGuest.
    let vcpu = slot(0, Mode::OutsideGuest, 4);
    vcpu.publish_in_guest();
    assert_eq!(vcpu.kick(0), Some(4));
    assert!(vcpu.pending_after_publish().is_empty());
    assert!(!vcpu.still_in_guest());
}

#[test]
fn take_requests_clears_all_and_bumps_the_generation_even_when_empty() {
    let vcpu = slot(0, Mode::OutsideGuest, 1);
    vcpu.make_request(Requests::STOP | Requests::MIGRATE);
    assert_eq!(vcpu.take_requests(), Requests::STOP | Requests::MIGRATE);
    assert!(vcpu.pending().is_empty());
    assert_eq!(generation(&vcpu), 1);
    assert_eq!(vcpu.take_requests(), Requests::NONE);
    assert_eq!(generation(&vcpu), 2);
}

#[test]
fn check_request_tests_and_clears_one_kind_and_acks_only_when_found() {
    let vcpu = slot(0, Mode::OutsideGuest, 1);
    vcpu.make_request(Requests::TLB_FLUSH | Requests::EVENT);
    assert!(vcpu.check_request(Requests::TLB_FLUSH));
    assert_eq!(vcpu.pending(), Requests::EVENT);
    assert_eq!(generation(&vcpu), 1);
    assert!(!vcpu.check_request(Requests::TLB_FLUSH));
    assert!(!vcpu.check_request(Requests::STOP));
    assert_eq!(generation(&vcpu), 1, "nothing taken, nothing written");
}

#[test]
fn a_ticket_is_acked_by_a_take_or_by_the_vcpu_being_outside_guest_mode() {
    let vcpu = slot(0, Mode::InGuest, 1);
    let ticket = vcpu.make_request(Requests::TLB_FLUSH);
    assert!(!vcpu.is_acked(ticket), "still running guest code that may predate the request");
    vcpu.mode.store(Mode::ExitingGuest as u8, Ordering::SeqCst);
    assert!(!vcpu.is_acked(ticket), "kicked, not yet out");
    vcpu.exit_guest();
    assert!(vcpu.is_acked(ticket), "out: the next entry check sees the request");
    vcpu.publish_in_guest();
    assert!(!vcpu.is_acked(ticket), "entering again, nothing taken yet");
    assert!(vcpu.check_request(Requests::TLB_FLUSH));
    assert!(vcpu.is_acked(ticket));
}

#[test]
fn the_generation_wraps_and_still_acks() {
    let vcpu = slot(u64::from(u32::MAX) << GENERATION_SHIFT, Mode::InGuest, 1);
    let ticket = vcpu.make_request(Requests::EVENT);
    assert_eq!(ticket, Ticket(u32::MAX));
    assert_eq!(vcpu.take_requests(), Requests::EVENT);
    assert_eq!(generation(&vcpu), 0);
    assert!(vcpu.is_acked(ticket));
}

#[test]
fn wait_for_ack_stops_when_relax_gives_up_and_succeeds_once_acked() {
    let vcpu = slot(0, Mode::InGuest, 1);
    let ticket = vcpu.make_request(Requests::TLB_FLUSH);
    let mut polls = 0;
    let result = wait_for_ack(&vcpu, ticket, || {
        polls += 1;
        polls < 5
    });
    assert_eq!(result, Err(Error::NotAcked { remaining: 1 }));
    assert_eq!(polls, 5);
    // Acknowledged on the third poll.
    let mut polls = 0;
    let result = wait_for_ack(&vcpu, ticket, || {
        polls += 1;
        if polls == 3 {
            vcpu.exit_guest();
        }
        true
    });
    assert_eq!(result, Ok(()));
    assert_eq!(polls, 3);
}

#[test]
fn errors_say_what_to_fix() {
    assert_eq!(Error::NoSuchVcpu { id: 9, slots: 4 }.to_string(), "no vCPU 9: the VM has 4 vCPU slots");
    assert_eq!(
        Error::NoTicket { id: 9, tickets: 4 }.to_string(),
        "no ticket for vCPU 9: the ticket array has 4 entries"
    );
    assert_eq!(Error::NotAcked { remaining: 2 }.to_string(), "2 vCPUs did not acknowledge the request in time");
}
