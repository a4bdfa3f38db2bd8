//! Lifecycle events: numbered, kept in a bounded log, and handed to
//! subscribers as they happen. Subscribers get every event synchronously,
//! so none is lost to them; the log keeps the newest [`LOG_CAPACITY`] and
//! counts what it had to let go, which readers see as an explicit gap.
//!
//! A failure's reason in words (what a failing callback said through
//! `set_failure_reason`) stays in the log beside its event: the `#[repr(C)]`
//! [`Event`] keeps its size, so subscribers and `last_failure` callers
//! built against 1.0 still read it whole.

use crate::machine::{State, NAME_LEN};
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
pub use cpuhp_api::{Event, EventFn, Kind, LOG_CAPACITY, REASON_LEN};

/// `text` as a reason: control characters (a line break would split the
/// event's line) become spaces, surrounding blanks go, and at most
/// [`REASON_LEN`] bytes stay, cut at a character boundary. `None` if
/// nothing is left.
pub fn clean_reason(text: &str) -> Option<String> {
    let cleaned: String = text.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let reason = cut(&cleaned, REASON_LEN).trim_end();
    (!reason.is_empty()).then(|| reason.into())
}

/// The longest prefix of `s` of at most `max` bytes that ends at a
/// character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    let mut n = s.len().min(max);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s[..n]
}

/// An event as the log keeps it: with the reason its failing callback
/// gave, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub event: Event,
    pub reason: Option<String>,
}

/// One line of `cpu events`; the reason comes last, after `reason: `,
/// since it may hold spaces.
impl core::fmt::Display for Logged {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.event)?;
        match &self.reason {
            Some(r) => write!(f, " reason: {r}"),
            None => Ok(()),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventLog {
    ring: VecDeque<Logged>,
    /// The next event's sequence number (the first is 1).
    next_seq: u64,
    /// Events the log let go of to stay bounded.
    dropped: u64,
    /// The newest `failed` event, kept after the ring lets it go.
    last_failure: Option<Logged>,
}

/// What [`EventLog::last`] found: the events, and how many older ones in
/// the range asked for are gone.
pub struct Tail {
    pub events: Vec<Logged>,
    pub missing: u64,
}

impl EventLog {
    pub fn new() -> EventLog {
        EventLog { ring: VecDeque::new(), next_seq: 1, dropped: 0, last_failure: None }
    }

    pub fn from_parts(events: Vec<Logged>, next_seq: u64, dropped: u64, last_failure: Option<Logged>) -> EventLog {
        EventLog { ring: events.into(), next_seq, dropped, last_failure }
    }

    pub fn push(&mut self, kind: Kind, cpu: usize, state: Option<&State>, code: i32, reason: Option<String>) -> Event {
        let mut name = [0; NAME_LEN];
        if let Some(s) = state {
            let n = s.name.len().min(NAME_LEN);
            name[..n].copy_from_slice(&s.name.as_bytes()[..n]);
        }
        let e = Event {
            seq: self.next_seq,
            kind: kind as u32,
            cpu: cpu as u32,
            state: state.map_or(0, |s| s.id),
            code,
            name,
        };
        self.next_seq += 1;
        if self.ring.len() == LOG_CAPACITY {
            self.ring.pop_front();
            self.dropped += 1;
        }
        let logged = Logged { event: e, reason };
        if kind == Kind::Failed {
            self.last_failure = Some(logged.clone());
        }
        self.ring.push_back(logged);
        e
    }

    /// The newest `failed` event, with its reason.
    pub fn last_failure(&self) -> Option<&Logged> {
        self.last_failure.as_ref()
    }

    /// The reason given with failure event `seq` (`Some(None)`: none was
    /// given); `None` if the log knows no such failure.
    pub fn reason_of(&self, seq: u64) -> Option<Option<&str>> {
        let is_failure =
            |l: &&Logged| l.event.seq == seq && matches!(l.event.kind(), Some(Kind::Failed | Kind::RollbackStepFailed));
        self.last_failure.iter().chain(&self.ring).find(is_failure).map(|l| l.reason.as_deref())
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn events(&self) -> impl Iterator<Item = &Logged> {
        self.ring.iter()
    }

    /// The last `n` events; `missing` counts those of the last `n` the log
    /// no longer has.
    pub fn last(&self, n: usize) -> Tail {
        let have = self.ring.len().min(n);
        let total = (self.next_seq - 1) as usize;
        Tail {
            events: self.ring.iter().skip(self.ring.len() - have).cloned().collect(),
            missing: (n.min(total) - have) as u64,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Subscriber {
    pub id: u32,
    pub f: EventFn,
    pub ctx: usize,
}

/// By address, as for state hooks.
impl PartialEq for Subscriber {
    fn eq(&self, o: &Self) -> bool {
        (self.id, self.f as usize, self.ctx) == (o.id, o.f as usize, o.ctx)
    }
}
impl Eq for Subscriber {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribers {
    pub list: Vec<Subscriber>,
    pub next_id: u32,
}

impl Default for Subscribers {
    fn default() -> Self {
        Subscribers { list: Vec::new(), next_id: 1 }
    }
}

impl Subscribers {
    pub fn add(&mut self, f: EventFn, ctx: usize) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        self.list.push(Subscriber { id, f, ctx });
        id
    }

    /// False if there is no such subscription.
    pub fn remove(&mut self, id: u32) -> bool {
        let before = self.list.len();
        self.list.retain(|s| s.id != id);
        self.list.len() != before
    }
}
