//! Requests for sets of vCPUs: the set-bits walk touches only the targets,
//! the full scan walks every id, and both make the same requests and kicks.

use super::slot;
use crate::requests::*;

const VCPUS: usize = 4096;
const ME: PcpuId = 0;
/// The four targets: 5 and 69 report the same pCPU (one stale, say).
const TARGETS: [usize; 4] = [5, 69, 1000, 4095];

/// Every vCPU in guest mode, vCPU `id` on pCPU `1 + id % 64`.
fn vm() -> Vec<VcpuSlot> {
    (0..VCPUS).map(|id| slot(0, Mode::InGuest, 1 + (id % 64) as PcpuId)).collect()
}

fn bitmap(ids: &[usize]) -> Vec<u64> {
    let mut bitmap = vec![0u64; VCPUS / 64];
    for &id in ids {
        bitmap[id / 64] |= 1 << (id % 64);
    }
    bitmap
}

/// The slots whose state differs from `vm()`'s.
fn changed(vcpus: &[VcpuSlot]) -> Vec<usize> {
    (0..VCPUS).filter(|&id| vcpus[id].mode() != Mode::InGuest || !vcpus[id].pending().is_empty()).collect()
}

#[test]
fn set_bits_walk_touches_only_the_four_targets() {
    let vcpus = vm();
    let mut ipis = Vec::new();
    let outcome = make_request_mask(&vcpus, Requests::TLB_FLUSH, &bitmap(&TARGETS), ME, |cpu| ipis.push(cpu)).unwrap();
    assert_eq!(outcome, MaskOutcome { examined: 4, requested: 4, kicked: 4, ipis: 3 });
    // 5 and 69 share pCPU 6: one IPI.
    assert_eq!(ipis, [6, 41, 64]);
    assert_eq!(changed(&vcpus), TARGETS);
    for id in TARGETS {
        assert_eq!(vcpus[id].pending(), Requests::TLB_FLUSH);
        assert_eq!(vcpus[id].mode(), Mode::ExitingGuest);
    }
}

#[test]
fn full_scan_makes_the_same_requests_after_examining_every_id() {
    let (walked, scanned) = (vm(), vm());
    let (mut walk_ipis, mut scan_ipis) = (Vec::new(), Vec::new());
    let targets = bitmap(&TARGETS);
    let walk = make_request_mask(&walked, Requests::EVENT, &targets, ME, |cpu| walk_ipis.push(cpu)).unwrap();
    let scan = make_request_full_scan(&scanned, Requests::EVENT, &targets, ME, |cpu| scan_ipis.push(cpu)).unwrap();
    assert_eq!(scan, MaskOutcome { examined: VCPUS, ..walk });
    assert_eq!((walk.examined, scan.examined), (4, 4096), "the bench's comparison: 4 set bits of 4096 ids");
    assert_eq!(walk_ipis, scan_ipis);
    assert_eq!(changed(&walked), changed(&scanned));
}

#[test]
fn only_vcpus_in_guest_mode_on_other_pcpus_get_ipis() {
    let vcpus = [
        slot(0, Mode::OutsideGuest, 1),
        slot(0, Mode::ExitingGuest, 2),
        slot(0, Mode::InGuest, ME),
        slot(0, Mode::InGuest, 3),
        slot(0, Mode::InGuest, PcpuId::MAX),
    ];
    let mut ipis = Vec::new();
    let outcome = make_request_mask(&vcpus, Requests::STOP, &[0b11111], ME, |cpu| ipis.push(cpu)).unwrap();
    assert_eq!(outcome, MaskOutcome { examined: 5, requested: 5, kicked: 1, ipis: 1 });
    assert_eq!(ipis, [3]);
    assert!(vcpus.iter().all(|vcpu| vcpu.pending() == Requests::STOP), "every target gets the request");
    assert_eq!(vcpus[0].mode(), Mode::OutsideGuest);
}

#[test]
fn more_distinct_pcpus_than_a_batch_still_get_one_ipi_each() {
    let vcpus = vm();
    let all: Vec<usize> = (0..64).chain(64..128).collect();
    let mut ipis = Vec::new();
    let outcome = make_request_mask(&vcpus, Requests::EVENT, &bitmap(&all), ME, |cpu| ipis.push(cpu)).unwrap();
    assert_eq!((outcome.requested, outcome.kicked), (128, 128));
    // Batches of 16 distinct pCPUs: 1..=64 go out in four batches, and
    // vCPUs 64..128 repeat pCPUs already flushed, so each pCPU is
    // interrupted twice; none is missed.
    let mut sorted = ipis.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, (1..=64).collect::<Vec<_>>());
    assert_eq!((outcome.ipis, ipis.len()), (128, 128));
}

#[test]
fn a_bit_past_the_slots_fails_before_any_request() {
    let vcpus = vm();
    let mut wide = bitmap(&TARGETS);
    wide.push(1 << 3);
    let none = |_| panic!("no IPI on error");
    let err = Error::NoSuchVcpu { id: 4096 + 3, slots: VCPUS };
    assert_eq!(make_request_mask(&vcpus, Requests::EVENT, &wide, ME, none), Err(err));
    assert_eq!(make_request_full_scan(&vcpus, Requests::EVENT, &wide, ME, none), Err(err));
    assert_eq!(changed(&vcpus), Vec::<usize>::new());
    // A partial last word: 10 slots, bit 10 set.
    assert_eq!(
        make_request_mask(&vcpus[..10], Requests::EVENT, &[1 << 10], ME, none),
        Err(Error::NoSuchVcpu { id: 10, slots: 10 })
    );
    // A bitmap shorter than the slots is fine.
    assert!(make_request_mask(&vcpus, Requests::EVENT, &[], ME, none).is_ok());
}

#[test]
fn tickets_record_each_target_and_wait_for_acks_reports_the_laggards() {
    let vcpus = vm();
    let targets = bitmap(&TARGETS);
    let mut tickets = vec![Ticket::default(); VCPUS];
    make_request_mask_tickets(&vcpus, Requests::TLB_FLUSH, &targets, ME, &mut tickets, |_| {}).unwrap();
    // Two targets leave guest mode and take; two stay in guest mode.
    vcpus[5].exit_guest();
    assert_eq!(vcpus[1000].take_requests(), Requests::TLB_FLUSH);
    let mut pending = targets.clone();
    let mut passes = 0;
    let result = wait_for_acks(&vcpus, &tickets, &mut pending, || {
        passes += 1;
        passes < 3
    });
    assert_eq!(result, Err(Error::NotAcked { remaining: 2 }));
    assert_eq!(pending, bitmap(&[69, 4095]));
    // They exit; the same pending bitmap now drains.
    vcpus[69].exit_guest();
    vcpus[4095].exit_guest();
    assert_eq!(wait_for_acks(&vcpus, &tickets, &mut pending, || false), Ok(()));
    assert_eq!(pending, bitmap(&[]));
}

#[test]
fn each_target_is_reported_with_its_ticket_and_whether_it_was_kicked() {
    let vcpus = vm();
    // 1000 is outside guest mode, 4095 runs on this pCPU: neither is kicked.
    vcpus[1000].exit_guest();
    let mine = slot(0, Mode::InGuest, ME);
    let mut all: Vec<VcpuSlot> = vcpus;
    all[4095] = mine;
    let mut seen = Vec::new();
    let outcome = make_request_mask_each(
        &all,
        Requests::PROBE,
        &bitmap(&TARGETS),
        ME,
        |_| {},
        |id, t, kicked| seen.push((id, t, kicked)),
    )
    .unwrap();
    assert_eq!(
        seen.iter().map(|(id, _, k)| (*id, *k)).collect::<Vec<_>>(),
        [(5, true), (69, true), (1000, false), (4095, false)]
    );
    assert_eq!(outcome.kicked, 2);
    // Each ticket is its target's: a take acknowledges it.
    assert_eq!(all[1000].take_requests(), Requests::PROBE);
    assert!(all[1000].is_acked(seen[2].1) && !all[5].is_acked(seen[0].1));
    assert_eq!(
        make_request_mask_each(&all[..10], Requests::PROBE, &[1 << 10], ME, |_| {}, |_, _, _| {}),
        Err(Error::NoSuchVcpu { id: 10, slots: 10 })
    );
}

#[test]
fn short_ticket_arrays_are_refused() {
    let vcpus = vm();
    let mut tickets = vec![Ticket::default(); 100];
    let targets = bitmap(&TARGETS);
    let err = Error::NoTicket { id: 1000, tickets: 100 };
    assert_eq!(make_request_mask_tickets(&vcpus, Requests::EVENT, &targets, ME, &mut tickets, |_| {}), Err(err));
    assert_eq!(wait_for_acks(&vcpus, &tickets, &mut targets.clone(), || false), Err(err));
}
