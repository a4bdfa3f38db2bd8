//! Every interleaving of the protocol's atomic steps, for one vCPU that
//! enters, exits and moves between two pCPUs, and two requesters that each
//! make one request and kick.
//!
//! Each step runs the crate's own step function (`publish_in_guest`,
//! `make_request`, `claim_kick`, ...) on a real slot rebuilt from the model
//! state, so the model checks our code, not a copy of it. Running the steps
//! one at a time in every order gives every sequentially consistent
//! execution; the protocol's steps are all SeqCst, so these are all the
//! executions it allows (the pCPU field, release/acquire, is only ever
//! read after a SeqCst step that ordered it).
//!
//! IPIs follow the local APIC: one sent to the vCPU's pCPU while it runs
//! guest code forces an exit; while the vCPU has interrupts off (entering,
//! or between a VM exit and `exit_guest`) it stays pending; anywhere else
//! (a pCPU the vCPU left, or host code with interrupts on) it is taken and
//! does nothing.
//!
//! Deliberately broken variants of the protocol must fail, so that a pass
//! means the model can see the bugs it claims to rule out.

use super::slot;
use crate::requests::*;
use std::collections::HashSet;

/// The requesters' pCPU; the vCPU runs on HOME or AWAY.
const ME: PcpuId = 0;
const HOME: PcpuId = 1;
const AWAY: PcpuId = 2;
const PCPUS: usize = 3;
const REQUESTERS: usize = 2;
const BITS: [Requests; REQUESTERS] = [Requests::TLB_FLUSH, Requests::EVENT];
/// Entry attempts, and VM exits the guest makes on its own (which let the
/// vCPU move with a kick in flight): enough for stale pCPUs and cancelled
/// entries, small enough to explore in a second.
const ENTRIES: u8 = 3;
const NATURAL_EXITS: u8 = 1;

/// The atomic steps of `enter_guest_prepare`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum EntryStep {
    Publish,
    CheckRequests,
    CheckMode,
}

/// The atomic steps of `make_request` and `kick`, and of a broken variant
/// that reads the ticket separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum RequestStep {
    Set,
    SetWithoutTicket,
    ReadTicket,
    Claim,
    Target,
}

use EntryStep::*;
use RequestStep::*;

/// The order each side runs its steps in.
#[derive(Clone, Copy)]
struct Protocol {
    entry: &'static [EntryStep],
    request: &'static [RequestStep],
}

/// What the code does.
const CORRECT: Protocol = Protocol { entry: &[Publish, CheckRequests, CheckMode], request: &[Set, Claim, Target] };

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Phase {
    /// Interrupts off, running `entry[step]` next.
    Entering {
        step: u8,
    },
    Guest,
    /// VM exit (or cancelled entry) done, `exit_guest` next; interrupts off.
    Exit,
    Take,
    /// Back in the host: enter again here, move, or stop.
    Move,
    Done,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    word: u64,
    mode: Mode,
    pcpu: PcpuId,
    phase: Phase,
    entries_left: u8,
    natural_exits_left: u8,
    /// How often the vCPU took each requester's request.
    seen: [u8; REQUESTERS],
    /// Each requester's next step, whether its claim succeeded, its ticket.
    pc: [u8; REQUESTERS],
    claimed: [bool; REQUESTERS],
    ticket: [Option<Ticket>; REQUESTERS],
    /// IPIs sent and not yet taken, per pCPU.
    ipis: [u8; PCPUS],
}

/// What the exploration saw: counts that show the interesting schedules
/// happened, and the invariant violations.
#[derive(Debug, Default)]
struct Report {
    states: usize,
    terminals: usize,
    /// IPIs taken by a pCPU the vCPU had left.
    stale_ipis: usize,
    /// Exits forced by a kick's IPI.
    kicked_exits: usize,
    /// Entries cancelled by the mode check (a kick after the request check).
    mode_cancels: usize,
    violations: Vec<String>,
}

impl State {
    fn initial() -> Self {
        Self {
            word: 0,
            mode: Mode::OutsideGuest,
            pcpu: HOME,
            phase: Phase::Entering { step: 0 },
            entries_left: ENTRIES,
            natural_exits_left: NATURAL_EXITS,
            seen: [0; REQUESTERS],
            pc: [0; REQUESTERS],
            claimed: [false; REQUESTERS],
            ticket: [None; REQUESTERS],
            ipis: [0; PCPUS],
        }
    }

    /// Runs `f` on a real slot holding this state, and keeps what it did.
    fn on_slot<T>(&mut self, f: impl FnOnce(&VcpuSlot) -> T) -> T {
        let vcpu = slot(self.word, self.mode, self.pcpu);
        let out = f(&vcpu);
        (self.word, self.mode, self.pcpu) =
            (vcpu.word.load(Ordering::SeqCst), vcpu.mode(), vcpu.pcpu.load(Ordering::SeqCst));
        out
    }

    fn requesters_done(&self, p: Protocol) -> bool {
        self.pc.iter().all(|&pc| usize::from(pc) == p.request.len())
    }

    fn pending(&self) -> Requests {
        requests_of(self.word)
    }

    fn successors(&self, p: Protocol, report: &mut Report) -> Vec<State> {
        let mut next = self.vcpu_steps(p, report);
        for r in 0..REQUESTERS {
            if usize::from(self.pc[r]) < p.request.len() {
                next.push(self.request_step(p, r));
            }
        }
        for cpu in 0..PCPUS {
            if let Some(s) = self.deliver(cpu as PcpuId, report) {
                next.push(s);
            }
        }
        next
    }

    fn vcpu_steps(&self, p: Protocol, report: &mut Report) -> Vec<State> {
        let mut s = self.clone();
        match self.phase {
            Phase::Entering { step } => {
                let cancel = match p.entry[usize::from(step)] {
                    Publish => {
                        s.on_slot(|v| v.publish_in_guest());
                        false
                    }
                    CheckRequests => !s.on_slot(|v| v.pending_after_publish()).is_empty(),
                    CheckMode => {
                        let kicked = !s.on_slot(|v| v.still_in_guest());
                        report.mode_cancels += usize::from(kicked);
                        kicked
                    }
                };
                let last = usize::from(step) + 1 == p.entry.len();
                s.phase = match (cancel, last) {
                    (true, _) => Phase::Exit,
                    (false, true) => Phase::Guest,
                    (false, false) => Phase::Entering { step: step + 1 },
                };
                if cancel || last {
                    s.entries_left -= 1;
                }
            }
            Phase::Guest if self.natural_exits_left > 0 => {
                s.natural_exits_left -= 1;
                s.phase = Phase::Exit;
            }
            Phase::Guest | Phase::Done => return Vec::new(),
            Phase::Exit => {
                s.on_slot(|v| v.exit_guest());
                s.phase = Phase::Take;
            }
            Phase::Take => {
                let taken = s.on_slot(|v| v.take_requests());
                for (seen, bit) in s.seen.iter_mut().zip(BITS) {
                    *seen += u8::from(taken.contains(bit));
                }
                s.phase = Phase::Move;
            }
            Phase::Move if self.entries_left == 0 => s.phase = Phase::Done,
            Phase::Move => {
                s.phase = Phase::Entering { step: 0 };
                let mut moved = s.clone();
                moved.on_slot(|v| v.set_pcpu(if self.pcpu == HOME { AWAY } else { HOME }));
                return vec![s, moved];
            }
        }
        vec![s]
    }

    fn request_step(&self, p: Protocol, r: usize) -> State {
        let mut s = self.clone();
        match p.request[usize::from(self.pc[r])] {
            Set => s.ticket[r] = Some(s.on_slot(|v| v.make_request(BITS[r]))),
            SetWithoutTicket => {
                s.on_slot(|v| v.make_request(BITS[r]));
            }
            ReadTicket => s.ticket[r] = Some(Ticket(generation_of(s.word))),
            Claim => s.claimed[r] = s.on_slot(|v| v.claim_kick()),
            Target => {
                if let Some(cpu) = s.claimed[r].then(|| s.on_slot(|v| v.kick_target(ME))).flatten() {
                    s.ipis[cpu as usize] += 1;
                }
            }
        }
        s.pc[r] += 1;
        s
    }

    /// The local APIC of `cpu` takes one pending IPI, if it can now.
    fn deliver(&self, cpu: PcpuId, report: &mut Report) -> Option<State> {
        if self.ipis[cpu as usize] == 0 {
            return None;
        }
        let mut s = self.clone();
        s.ipis[cpu as usize] -= 1;
        if cpu != self.pcpu {
            report.stale_ipis += 1;
            return Some(s);
        }
        match self.phase {
            Phase::Guest => s.phase = Phase::Exit,
            Phase::Entering { .. } | Phase::Exit => return None,
            Phase::Take | Phase::Move | Phase::Done => {}
        }
        report.kicked_exits += usize::from(self.phase == Phase::Guest);
        Some(s)
    }

    /// What must hold in every state.
    fn check(&self, p: Protocol) -> Result<(), String> {
        let vcpu = slot(self.word, self.mode, self.pcpu);
        for r in 0..REQUESTERS {
            if self.seen[r] > 1 {
                return Err(format!("request {r} taken twice: {self:?}"));
            }
            let acked = self.ticket[r].is_some_and(|t| vcpu.is_acked(t));
            if acked && self.phase == Phase::Guest && self.seen[r] == 0 {
                return Err(format!("request {r} acknowledged while the guest runs without it: {self:?}"));
            }
        }
        // Once every requester is done, nothing else will kick: a vCPU in
        // the guest with no IPI coming must have no request pending.
        let no_ipi_coming = self.ipis[self.pcpu as usize] == 0;
        if self.requesters_done(p) && self.phase == Phase::Guest && no_ipi_coming && !self.pending().is_empty() {
            return Err(format!("request stranded while the guest runs: {self:?}"));
        }
        Ok(())
    }

    /// What must hold when nothing can happen any more.
    fn check_terminal(&self, p: Protocol) -> Result<(), String> {
        if !self.requesters_done(p) {
            return Err(format!("a requester is stuck: {self:?}"));
        }
        let vcpu = slot(self.word, self.mode, self.pcpu);
        for (r, bit) in BITS.into_iter().enumerate() {
            let pending = self.pending().contains(bit);
            // Seen once, or still pending for an entry that never came.
            let kept = (self.seen[r] == 1 && !pending) || (self.seen[r] == 0 && pending && self.phase == Phase::Done);
            if !kept {
                return Err(format!("request {r} lost: {self:?}"));
            }
            if !self.ticket[r].is_some_and(|t| vcpu.is_acked(t)) {
                return Err(format!("request {r} never acknowledged: a wait would time out: {self:?}"));
            }
        }
        Ok(())
    }
}

fn explore(p: Protocol) -> Report {
    let mut report = Report::default();
    let mut visited = HashSet::new();
    let mut stack = vec![State::initial()];
    while let Some(state) = stack.pop() {
        if !visited.insert(state.clone()) {
            continue;
        }
        report.states += 1;
        if let Err(violation) = state.check(p) {
            report.violations.push(violation);
            continue;
        }
        let next = state.successors(p, &mut report);
        if next.is_empty() {
            report.terminals += 1;
            if let Err(violation) = state.check_terminal(p) {
                report.violations.push(violation);
            }
        }
        stack.extend(next);
    }
    report
}

#[test]
fn every_interleaving_keeps_every_request() {
    let report = explore(CORRECT);
    assert!(report.violations.is_empty(), "{:#?}", &report.violations[..report.violations.len().min(3)]);
    // The schedules the protocol is about were all reached.
    assert!(report.stale_ipis > 0, "no IPI reached a pCPU the vCPU had left: {report:?}");
    assert!(report.kicked_exits > 0, "{report:?}");
    assert!(report.mode_cancels > 0, "{report:?}");
    assert!(report.terminals > 100 && report.states > 10_000, "{report:?}");
}

#[test]
fn checking_requests_before_publishing_in_guest_loses_requests() {
    let report = explore(Protocol { entry: &[CheckRequests, Publish, CheckMode], ..CORRECT });
    assert!(report.violations.iter().any(|v| v.starts_with("request stranded")), "{report:?}");
}

#[test]
fn reading_the_mode_before_setting_the_request_loses_requests() {
    let report = explore(Protocol { request: &[Claim, Target, Set], ..CORRECT });
    assert!(report.violations.iter().any(|v| v.starts_with("request stranded")), "{report:?}");
}

#[test]
fn a_ticket_read_after_the_request_can_miss_its_acknowledgement() {
    let report = explore(Protocol { request: &[SetWithoutTicket, ReadTicket, Claim, Target], ..CORRECT });
    assert!(report.violations.iter().any(|v| v.contains("never acknowledged")), "{report:?}");
    assert!(!report.violations.iter().any(|v| v.contains("stranded") || v.contains("lost")), "{report:?}");
}

#[test]
fn the_mode_check_is_an_optimisation_not_a_requirement() {
    // Without it, a kick after the request check is caught by the held IPI.
    let report = explore(Protocol { entry: &[Publish, CheckRequests], ..CORRECT });
    assert!(report.violations.is_empty(), "{:#?}", &report.violations[..report.violations.len().min(3)]);
    assert_eq!(report.mode_cancels, 0);
}
