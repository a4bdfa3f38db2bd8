//! Host tests of the state machine against a modelled CPU set.

use crate::blob;
use crate::events::{clean_reason, Event, Kind, Subscribers, LOG_CAPACITY, REASON_LEN};
use crate::machine::*;
use std::vec;
use std::vec::Vec;

extern "C" fn fallible(_: u32, _: usize) -> i32 {
    0
}
extern "C" fn infallible(_: u32, _: usize) {}
extern "C" fn on_event(_: *const Event, _: usize) {}

/// Modelled CPUs: which run, which callbacks ran where, and failures a
/// callback reports every time (unlike injected ones, used once).
struct Model {
    current: usize,
    running: Vec<bool>,
    calls: Vec<Call>,
    refuse: Vec<(usize, u32, Direction)>,
    events: Vec<Event>,
    /// A STARTING or ONLINE callback for a CPU that does not run.
    misplaced: Vec<Call>,
}

impl Model {
    fn new(n: usize, running: &[usize]) -> Model {
        Model {
            current: 0,
            running: (0..n).map(|c| running.contains(&c)).collect(),
            calls: vec![],
            refuse: vec![],
            events: vec![],
            misplaced: vec![],
        }
    }

    fn outcome(&self, call: Call) -> Result<(), i32> {
        if self.refuse.contains(&(call.cpu, call.state, call.dir)) {
            Err(-5)
        } else {
            Ok(())
        }
    }

    fn on_cpu(&mut self, call: Call) {
        if !self.running[call.cpu] {
            self.misplaced.push(call);
        }
        self.calls.push(call);
    }

    fn take(&mut self) -> Vec<(u32, Direction)> {
        self.calls.drain(..).map(|c| (c.state, c.dir)).collect()
    }

    /// A callback's refusal: the code, and the reason it gives.
    fn refusal(&self, call: Call) -> Result<(), Refusal> {
        self.outcome(call).map_err(|code| Refusal { code, reason: Some(MODEL_REASON.into()) })
    }
}

const MODEL_REASON: &str = "the model refuses";

impl Platform for Model {
    fn current_cpu(&self) -> usize {
        self.current
    }
    fn prepare(&mut self, call: Call, _: Fallible, _: usize) -> Result<(), Refusal> {
        self.calls.push(call);
        self.refusal(call)
    }
    fn starting(&mut self, call: Call, _: Infallible, _: usize) {
        self.on_cpu(call);
    }
    fn online(&mut self, call: Call, _: Fallible, _: usize) -> Result<(), Refusal> {
        self.on_cpu(call);
        self.refusal(call)
    }
    fn start(&mut self, cpu: usize) -> Result<(), i32> {
        let call = Call { cpu, state: BRINGUP_ID, dir: Direction::Up };
        self.calls.push(call);
        self.outcome(call)?;
        self.running[cpu] = true;
        Ok(())
    }
    fn park(&mut self, cpu: usize) -> Result<(), i32> {
        let call = Call { cpu, state: BRINGUP_ID, dir: Direction::Down };
        self.calls.push(call);
        self.outcome(call)?;
        self.running[cpu] = false;
        Ok(())
    }
    fn publish(&mut self, event: &Event) {
        self.events.push(*event);
    }
}

const F: FallibleHooks = FallibleHooks { startup: Some(fallible), teardown: Some(fallible), ctx: 0 };
const S: StartingHooks = StartingHooks { startup: Some(infallible), teardown: Some(infallible), ctx: 0 };

/// CPUs 0-2 enabled at boot (0 the boot CPU), 3 a hot-pluggable slot;
/// two states per section registered without calls, in mixed order.
fn machine() -> (Machine, Model, Vec<u32>) {
    let mut m = Machine::new(&[(0, true), (1, true), (2, true), (3, false)], 0);
    let mut p = Model::new(4, &[0]);
    let mut ids = vec![];
    for (name, hooks) in [
        ("a:online1", Hooks::Online(F)),
        ("a:prep1", Hooks::Prepare(F)),
        ("a:start1", Hooks::Starting(S)),
        ("b:prep2", Hooks::Prepare(F)),
        ("b:online2", Hooks::Online(F)),
        ("b:start2", Hooks::Starting(S)),
    ] {
        ids.push(m.setup(&mut p, name, hooks, false).unwrap());
    }
    assert!(p.calls.is_empty(), "nocalls setup called back");
    (m, p, ids)
}

/// The state ids in bring-up order.
fn order(m: &Machine) -> Vec<u32> {
    m.states().iter().map(|s| s.id).collect()
}

fn up(ids: &[u32]) -> Vec<(u32, Direction)> {
    ids.iter().map(|&i| (i, Direction::Up)).collect()
}

fn down(ids: &[u32]) -> Vec<(u32, Direction)> {
    ids.iter().rev().map(|&i| (i, Direction::Down)).collect()
}

#[test]
fn states_are_ordered_by_section_then_registration() {
    let (m, _, ids) = machine();
    let names: Vec<&str> = m.states().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a:prep1", "b:prep2", "cpuhp:bringup", "a:start1", "b:start2", "a:online1", "b:online2"]);
    assert_eq!(ids.len(), 6);
    assert_eq!(m.states()[5].owner(), "a");
}

#[test]
fn bring_up_walks_in_order_and_tear_down_in_reverse() {
    let (mut m, mut p, _) = machine();
    m.bring_up(&mut p, 1).unwrap();
    let all = order(&m);
    assert_eq!(p.take(), up(&all));
    assert!(p.misplaced.is_empty(), "callbacks on a CPU that was not running: {:?}", p.misplaced);
    assert_eq!(m.cpus()[1].stage, Stage::Online);
    assert!(p.running[1]);
    m.tear_down(&mut p, 1).unwrap();
    assert_eq!(p.take(), down(&all));
    assert!(p.misplaced.is_empty(), "{:?}", p.misplaced);
    assert_eq!(m.cpus()[1].stage, Stage::Offline);
    assert!(!p.running[1]);
}

#[test]
fn injected_failure_rolls_back_in_exact_reverse_at_every_state() {
    let (m0, _, _) = machine();
    let all = order(&m0);
    for (i, s) in m0.states().iter().enumerate() {
        for dir in [Direction::Up, Direction::Down] {
            let (mut m, mut p, _) = machine();
            if dir == Direction::Down {
                m.bring_up(&mut p, 2).unwrap();
                p.take();
            }
            let r = m.inject(2, &s.name, dir);
            if matches!(s.hooks, Hooks::Starting(_)) {
                assert_eq!(r, Err(Error::StartingCannotFail(s.name.clone())));
                continue;
            }
            r.unwrap();
            let err = match dir {
                Direction::Up => m.bring_up(&mut p, 2),
                Direction::Down => m.tear_down(&mut p, 2),
            }
            .unwrap_err();
            let why = Refusal { code: INJECTED, reason: Some(INJECTED_REASON.into()) };
            assert_eq!(err, Error::Failed { cpu: 2, dir, state: s.id, name: s.name.clone(), why });
            // The failed state's own callback never ran: the injection
            // replaced it.
            let expected = match dir {
                Direction::Up => [up(&all[..i]), down(&all[..i])].concat(),
                Direction::Down => [down(&all[i + 1..]), up(&all[i + 1..])].concat(),
            };
            assert_eq!(p.take(), expected, "{} {dir:?}", s.name);
            assert!(p.misplaced.is_empty(), "{} {dir:?}: {:?}", s.name, p.misplaced);
            let (stage, runs) = if dir == Direction::Up { (Stage::Offline, false) } else { (Stage::Online, true) };
            assert_eq!((m.cpus()[2].stage, p.running[2]), (stage, runs), "{} {dir:?}", s.name);
            assert_eq!(m.cpus()[2].fail, None, "an injection is used once");
            let kinds: Vec<Kind> = p.events.iter().filter_map(Event::kind).collect();
            assert!(kinds.contains(&Kind::Failed) && kinds.last() == Some(&Kind::RolledBack), "{kinds:?}");
            // The next walk in that direction succeeds.
            match dir {
                Direction::Up => m.bring_up(&mut p, 2).unwrap(),
                Direction::Down => m.tear_down(&mut p, 2).unwrap(),
            }
        }
    }
}

#[test]
fn a_callback_refusing_rolls_back_too() {
    let (mut m, mut p, ids) = machine();
    // b:online2 refuses cpu 1's bring-up every time.
    p.refuse.push((1, ids[4], Direction::Up));
    let e = m.bring_up(&mut p, 1).unwrap_err();
    assert!(matches!(&e, Error::Failed { cpu: 1, why: Refusal { code: -5, .. }, .. }), "{e:?}");
    assert!(e.to_string().contains("`b:online2` failed with -5: the model refuses; rolled back"), "{e}");
    // The failed event carries the reason; last_failure keeps it.
    let failed = m.events.last_failure().unwrap();
    assert_eq!(
        (failed.event.kind(), failed.event.state, failed.reason.as_deref()),
        (Some(Kind::Failed), ids[4], Some(MODEL_REASON))
    );
    assert!(failed.to_string().ends_with("failed state=b:online2 error=-5 reason: the model refuses"), "{failed}");
    assert_eq!(m.events.reason_of(failed.event.seq), Some(Some(MODEL_REASON)));
    assert_eq!(m.events.reason_of(failed.event.seq + 1), None, "rolled-back is no failure");
    let all = order(&m);
    let at = all.iter().position(|&s| s == ids[4]).unwrap();
    assert_eq!(p.take(), [up(&all[..=at]), down(&all[..at])].concat());
    assert_eq!(m.cpus()[1].stage, Stage::Offline);
}

#[test]
fn offline_refusals() {
    let (mut m, mut p, _) = machine();
    assert_eq!(m.tear_down(&mut p, 0), Err(Error::BootCpu(0)));
    assert_eq!(m.tear_down(&mut p, 1), Err(Error::AlreadyOffline(1)));
    assert_eq!(m.tear_down(&mut p, 3), Err(Error::Absent(3)));
    assert_eq!(m.tear_down(&mut p, 9), Err(Error::NoSuchCpu(9)));
    assert_eq!(m.bring_up(&mut p, 0), Err(Error::AlreadyOnline(0)));
    m.bring_up(&mut p, 1).unwrap();
    p.current = 1;
    assert_eq!(m.tear_down(&mut p, 1), Err(Error::ControlCpu(1)));
    // A machine whose boot CPU is not the only one online: the last CPU
    // rule stands on its own.
    let mut m = Machine::new(&[(0, true), (1, true)], 0);
    let mut p = Model::new(2, &[0]);
    m.bring_up(&mut p, 1).unwrap();
    m.tear_down(&mut p, 1).unwrap();
    assert_eq!(m.online_count(), 1);
    let mut lone = Machine::new(&[(0, true), (1, true)], 1);
    assert_eq!(lone.tear_down(&mut p, 1), Err(Error::BootCpu(1)));
}

#[test]
fn last_online_cpu_is_refused() {
    // The boot CPU is 0, but say only 1 is online (0 not yet adopted).
    let mut m = Machine::new(&[(0, false), (1, true)], 1);
    let mut p = Model::new(2, &[1]);
    m.insert(&mut p, 0).unwrap();
    assert_eq!(m.online_count(), 1);
    // cpu 1 is the boot CPU here; make a machine where it is not.
    let mut m2 = Machine::from_parts(m.states().to_vec(), m.cpus().to_vec(), 0, m.next_id(), m.events.clone());
    p.current = 0;
    assert_eq!(m2.tear_down(&mut p, 1), Err(Error::LastCpu(1)));
}

#[test]
fn setup_runs_startup_everywhere_and_undoes_on_the_kth_cpu() {
    let (mut m, mut p, _) = machine();
    m.bring_up(&mut p, 1).unwrap();
    m.bring_up(&mut p, 2).unwrap();
    p.take();
    let next = m.next_id();
    p.refuse.push((2, next, Direction::Up));
    let before = order(&m);
    let e = m.setup(&mut p, "c:refuses", Hooks::Online(F), true).unwrap_err();
    assert_eq!(
        e,
        Error::SetupFailed {
            cpu: 2,
            name: "c:refuses".into(),
            why: Refusal { code: -5, reason: Some(MODEL_REASON.into()) }
        }
    );
    let calls: Vec<(usize, Direction)> = p.calls.drain(..).map(|c| (c.cpu, c.dir)).collect();
    use Direction::*;
    assert_eq!(calls, [(0, Up), (1, Up), (2, Up), (1, Down), (0, Down)]);
    assert_eq!(order(&m), before, "nothing registered");
    // Registered fine it runs on every online CPU, and a CPU brought up
    // later passes it too.
    let id = m.setup(&mut p, "c:fine", Hooks::Starting(S), true).unwrap();
    assert_eq!(p.calls.drain(..).map(|c| c.cpu).collect::<Vec<_>>(), [0, 1, 2]);
    m.tear_down(&mut p, 2).unwrap();
    assert!(p.take().contains(&(id, Down)));
    // Removal runs the teardown on every online CPU.
    m.remove(&mut p, id, true).unwrap();
    assert_eq!(p.calls.drain(..).map(|c| (c.cpu, c.state, c.dir)).collect::<Vec<_>>(), [(1, id, Down), (0, id, Down)]);
    assert_eq!(m.remove(&mut p, id, true), Err(Error::NoSuchState(id)));
    assert_eq!(m.remove(&mut p, BRINGUP_ID, true), Err(Error::StaticState(BRINGUP_ID)));
    m.bring_up(&mut p, 2).unwrap();
    assert!(!p.take().iter().any(|&(s, _)| s == id), "a removed state ran");
}

#[test]
fn setup_refusals() {
    let (mut m, mut p, _) = machine();
    assert_eq!(m.setup(&mut p, "a:prep1", Hooks::Prepare(F), false), Err(Error::NameTaken("a:prep1".into())));
    assert_eq!(m.setup(&mut p, "", Hooks::Prepare(F), false), Err(Error::BadName));
    assert_eq!(m.setup(&mut p, &"x".repeat(NAME_LEN + 1), Hooks::Prepare(F), false), Err(Error::BadName));
    assert_eq!(m.setup(&mut p, "x:bringup", Hooks::Bringup, false), Err(Error::BadName));
    for i in m.states().len()..=MAX_DYNAMIC {
        m.setup(&mut p, &std::format!("n:{i}"), Hooks::Online(F), false).unwrap();
    }
    assert_eq!(m.setup(&mut p, "n:full", Hooks::Online(F), false), Err(Error::TooManyStates));
    let none = FallibleHooks { startup: None, teardown: Some(fallible), ctx: 0 };
    let mut m = Machine::new(&[(0, true), (1, true)], 0);
    m.setup(&mut p, "z:down-only", Hooks::Online(none), false).unwrap();
    assert_eq!(m.inject(1, "z:down-only", Direction::Up), Err(Error::NothingToFail("z:down-only".into())));
    assert_eq!(m.inject(1, "z:nope", Direction::Up), Err(Error::UnknownState("z:nope".into())));
    assert_eq!(m.inject(1, "1", Direction::Up), Ok(BRINGUP_ID), "by id");
}

#[test]
fn hot_add_and_remove() {
    let (mut m, mut p, _) = machine();
    assert_eq!(m.bring_up(&mut p, 3), Err(Error::Absent(3)));
    m.insert(&mut p, 3).unwrap();
    assert_eq!(m.insert(&mut p, 3), Err(Error::Present(3)));
    assert_eq!(m.cpus()[3].origin, Some(Origin::HotAdded));
    m.bring_up(&mut p, 3).unwrap();
    assert_eq!(m.eject(&mut p, 3), Err(Error::StillOnline(3)));
    m.tear_down(&mut p, 3).unwrap();
    m.eject(&mut p, 3).unwrap();
    assert_eq!((m.cpus()[3].stage, m.cpus()[3].origin), (Stage::Absent, None));
    assert_eq!(m.eject(&mut p, 0), Err(Error::StillOnline(0)));
    let kinds: Vec<Kind> = p.events.iter().filter_map(Event::kind).collect();
    assert_eq!(kinds.first(), Some(&Kind::Discovered));
    assert_eq!(kinds.last(), Some(&Kind::Removed));
}

#[test]
fn events_are_numbered_and_complete() {
    let (mut m, mut p, _) = machine();
    m.bring_up(&mut p, 1).unwrap();
    m.tear_down(&mut p, 1).unwrap();
    // Discovered x3 at creation went only to the log (no subscriber yet).
    let seqs: Vec<u64> = p.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (4..4 + seqs.len() as u64).collect::<Vec<_>>());
    let n = m.states().len();
    let kinds: Vec<Kind> = p.events.iter().filter_map(Event::kind).collect();
    let mut expected = vec![Kind::BringUpStarted];
    expected.extend(std::iter::repeat_n(Kind::StateReached, 5));
    expected.push(Kind::Online);
    expected.extend(std::iter::repeat_n(Kind::StateReached, 2));
    expected.push(Kind::Active);
    expected.push(Kind::TearDownStarted);
    expected.extend(std::iter::repeat_n(Kind::StateLeft, n));
    expected.push(Kind::Offline);
    assert_eq!(kinds, expected);
    assert_eq!(p.events[1].state_name(), "a:prep1");
    assert!(p.events[1].to_string().contains("cpu 1 state-reached state=a:prep1"), "{}", p.events[1]);
    let all: Vec<u64> = m.events.events().map(|e| e.event.seq).collect();
    assert_eq!(all, (1..m.events.next_seq()).collect::<Vec<_>>(), "the log has every event");
}

#[test]
fn reasons_are_one_bounded_line() {
    assert_eq!(clean_reason("  sse4.2 (absent)\n"), Some("sse4.2 (absent)".into()));
    assert_eq!(clean_reason("two\r\nlines\tand a tab"), Some("two  lines and a tab".into()));
    assert_eq!(clean_reason(" \n "), None);
    let long = "é".repeat(REASON_LEN);
    let cut = clean_reason(&long).unwrap();
    assert!(cut.len() <= REASON_LEN && cut.len() > REASON_LEN - 2 && long.starts_with(&cut), "{cut}");
}

#[test]
fn the_log_reports_what_it_let_go() {
    let (mut m, mut p, ids) = machine();
    // A failure first: the log lets its event go, but not the last failure.
    p.refuse.push((1, ids[0], Direction::Up));
    m.bring_up(&mut p, 1).unwrap_err();
    p.refuse.clear();
    let failed = m.events.last_failure().unwrap().clone();
    let mut published = 0;
    while m.events.next_seq() <= 2 * LOG_CAPACITY as u64 {
        m.bring_up(&mut p, 1).unwrap();
        m.tear_down(&mut p, 1).unwrap();
        published = p.events.len();
    }
    let total = m.events.next_seq() - 1;
    assert_eq!(published as u64, total - 3, "subscribers got every event but the three before them");
    assert_eq!(m.events.dropped(), total - LOG_CAPACITY as u64);
    let tail = m.events.last(LOG_CAPACITY + 10);
    assert_eq!((tail.events.len(), tail.missing), (LOG_CAPACITY, 10));
    assert_eq!(tail.events.last().map(|e| e.event.seq), Some(total));
    let tail = m.events.last(5);
    assert_eq!((tail.events.len(), tail.missing), (5, 0));
    assert!(m.events.events().all(|l| l.event.seq > failed.event.seq), "the failure left the ring");
    assert_eq!(m.events.last_failure(), Some(&failed));
    assert_eq!(m.events.reason_of(failed.event.seq), Some(Some(MODEL_REASON)));
}

#[test]
fn maxcpus_limits_the_cpus_started_at_load() {
    let enabled = [true, false, true, true, true];
    assert_eq!(started_at_load(&enabled, 0, u32::MAX), [2, 3, 4]);
    assert_eq!(started_at_load(&enabled, 0, 3), [2, 3], "the boot CPU is one of the 3");
    assert_eq!(started_at_load(&enabled, 0, 1), Vec::<usize>::new());
    assert_eq!(started_at_load(&enabled, 3, 2), [0], "a boot CPU that is not cpu 0 counts first");
    assert_eq!(started_at_load(&[true], 0, 8), Vec::<usize>::new());
}

#[test]
fn adopt_only_without_dynamic_states() {
    let mut m = Machine::new(&[(0, true), (1, true)], 0);
    m.adopt(1).unwrap();
    assert_eq!(m.cpus()[1].stage, Stage::Online);
    let (mut m, _, _) = machine();
    assert_eq!(m.adopt(1), Err(Error::TooManyStates));
}

#[test]
fn state_blob_round_trips() {
    let (mut m, mut p, ids) = machine();
    // A failure with its reason, which must cross too.
    p.refuse.push((1, ids[1], Direction::Up));
    m.bring_up(&mut p, 1).unwrap_err();
    assert!(m.events.last_failure().is_some_and(|l| l.reason.as_deref() == Some(MODEL_REASON)));
    m.bring_up(&mut p, 2).unwrap();
    m.insert(&mut p, 3).unwrap();
    m.inject(3, "b:prep2", Direction::Up).unwrap();
    let mut subs = Subscribers::default();
    subs.add(on_event, 7);
    let gone = subs.add(on_event, 8);
    assert!(subs.remove(gone) && !subs.remove(gone));
    let mut buf = vec![0u8; 64 * 1024];
    let n = blob::export(&m, &subs, &mut buf).unwrap();
    // SAFETY: written just above, callbacks of this test binary.
    let (m2, subs2) = unsafe { blob::import(blob::LAYOUT, &buf[..n]) }.unwrap();
    assert_eq!(m2.states(), m.states());
    assert_eq!(m2.cpus(), m.cpus());
    assert_eq!(m2.events, m.events, "events, reasons and the last failure");
    assert_eq!((m2.boot_cpu(), m2.next_id()), (m.boot_cpu(), m.next_id()));
    assert_eq!(subs2, subs);
    assert_eq!(m2.cpus()[3].fail, Some((ids[3], Direction::Up)));
    assert_eq!(blob::export(&m, &subs, &mut buf[..n - 1]), Err(blob::BlobError::NoRoom));
    // Truncated and unknown layouts are refused, as is a blob announced
    // under another layout than its own.
    // SAFETY: as above.
    let truncated = unsafe { blob::import(blob::LAYOUT, &buf[..n - 1]) };
    assert!(matches!(truncated, Err(blob::BlobError::Malformed)));
    // SAFETY: as above.
    let unknown = unsafe { blob::import(9, &buf[..n]) };
    assert!(matches!(unknown, Err(blob::BlobError::Layout(9))));
    // SAFETY: as above.
    let other = unsafe { blob::import(1, &buf[..n]) };
    assert!(matches!(other, Err(blob::BlobError::Malformed)));
}

extern "C" fn other_fallible(_: u32, _: usize) -> i32 {
    1
}

#[test]
fn rebind_swaps_callbacks_in_place_and_refuses_other_states() {
    let (mut m, _, ids) = machine();
    let before = order(&m);
    let new = FallibleHooks { startup: Some(other_fallible), teardown: None, ctx: 7 };
    // ids[0] is `a:online1`, ids[1] `a:prep1`, ids[2] `a:start1`.
    m.rebind(ids[0], new).unwrap();
    m.rebind(ids[1], new).unwrap();
    assert_eq!(order(&m), before, "rebinding moved a state");
    let hooks = |id| m.states().iter().find(|s| s.id == id).unwrap().hooks;
    assert_eq!(hooks(ids[0]), Hooks::Online(new));
    assert_eq!(hooks(ids[1]), Hooks::Prepare(new));
    assert_eq!(m.rebind(ids[2], new), Err(Error::StartingCannotFail("a:start1".into())));
    assert_eq!(m.rebind(BRINGUP_ID, new), Err(Error::StaticState(BRINGUP_ID)));
    assert_eq!(m.rebind(999, new), Err(Error::NoSuchState(999)));
}

/// What cpuhp 1.0.0 exported (layout 1) for CPUs 0 and 1 enabled at boot
/// and slot 2, after an injected failure of cpuhp:bringup on cpu 1.
const LAYOUT_1: &str = "\
    435055485000000100000000100000000100000001000000010000000000000000000000000000000000000000000000000d63707568703a\
    6272696e67757003000000000000000102000000000001000000010100000000000200000000000000000000060000000000000000000000\
    0000000005000000010000000000000001000000000000000000000000000000000000000000000000000000000000000000000000000000\
    0000000000000000020000000000000001000000010000000000000000000000000000000000000000000000000000000000000000000000\
    0000000000000000030000000000000002000000010000000000000000000000000000000000000000000000000000000000000000000000\
    000000000000000004000000000000000a0000000100000001000000f5ffffff63707568703a6272696e6775700000000000000000000000\
    000000000000000005000000000000000b0000000100000001000000f5ffffff63707568703a6272696e6775700000000000000000000000\
    00000000000000000100000000000000";

#[test]
fn a_layout_1_blob_is_still_read() {
    let bytes: Vec<u8> =
        (0..LAYOUT_1.len()).step_by(2).map(|i| u8::from_str_radix(&LAYOUT_1[i..i + 2], 16).unwrap()).collect();
    // SAFETY: no callbacks in it (only cpuhp:bringup, no subscriber).
    let (m, subs) = unsafe { blob::import(1, &bytes) }.unwrap();
    assert_eq!(m.cpus().iter().map(|c| c.stage).collect::<Vec<_>>(), [Stage::Online, Stage::Offline, Stage::Absent]);
    assert_eq!((m.states().len(), m.events.next_seq(), subs.list.len()), (1, 6, 0));
    // Layout 1 carried no last failure: it is the newest `failed` event.
    let failed = m.events.last_failure().unwrap();
    assert_eq!(
        (failed.event.seq, failed.event.kind(), failed.event.code, failed.reason.as_deref()),
        (4, Some(Kind::Failed), INJECTED, None)
    );
    assert!(m.events.events().all(|l| l.reason.is_none()));
}
