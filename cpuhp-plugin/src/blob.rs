//! The state a swap carries from one cpuhp to the next (layout 2): the
//! states with their callbacks, every CPU's stage, origin and pending fault,
//! the event log with its sequence and failure reasons, the last failure,
//! and the subscribers. Callbacks travel as addresses: both versions live
//! in the same address space and the plugins that own them are not part of
//! the swap.
//!
//! Layout 1 (cpuhp 1.0.0 and 1.1.0) has no reasons and no last failure;
//! it is still read, so that a running 1.0/1.1 can be swapped for this
//! version. Its last failure is the newest `failed` event still logged.

use crate::events::{cut, Event, EventFn, EventLog, Kind, Logged, Subscriber, Subscribers, REASON_LEN};
use crate::machine::{
    Cpu, Direction, Fallible, FallibleHooks, Hooks, Infallible, Machine, Origin, Stage, StartingHooks, State, NAME_LEN,
};
use alloc::string::String;
use alloc::vec::Vec;

pub const LAYOUT: u32 = 2;
/// The oldest layout `import` reads.
pub const OLDEST_LAYOUT: u32 = 1;

/// The blob's first bytes; the last one is the layout.
fn magic(layout: u32) -> [u8; 8] {
    let mut m = *b"CPUHP\0\0\0";
    m[7] = layout as u8;
    m
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobError {
    /// The buffer is too small for the state.
    NoRoom,
    /// A layout this version does not read.
    Layout(u32),
    /// Truncated or inconsistent bytes.
    Malformed,
}

impl BlobError {
    /// Error codes of the descriptor's export/import entries.
    pub fn code(self) -> i32 {
        match self {
            BlobError::NoRoom => 1,
            BlobError::Layout(_) => 2,
            BlobError::Malformed => 3,
        }
    }
}

struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) -> Result<(), BlobError> {
        self.buf.get_mut(self.at..self.at + b.len()).ok_or(BlobError::NoRoom)?.copy_from_slice(b);
        self.at += b.len();
        Ok(())
    }
    fn u8(&mut self, v: u8) -> Result<(), BlobError> {
        self.bytes(&[v])
    }
    fn u32(&mut self, v: u32) -> Result<(), BlobError> {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> Result<(), BlobError> {
        self.bytes(&v.to_le_bytes())
    }
    /// An event and its reason (length byte, then the text; 0: none).
    fn logged(&mut self, l: &Logged) -> Result<(), BlobError> {
        let e = &l.event;
        self.u64(e.seq)?;
        self.u32(e.kind)?;
        self.u32(e.cpu)?;
        self.u32(e.state)?;
        self.u32(e.code as u32)?;
        self.bytes(&e.name)?;
        let reason = cut(l.reason.as_deref().unwrap_or(""), REASON_LEN);
        self.u8(reason.len() as u8)?;
        self.bytes(reason.as_bytes())
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], BlobError> {
        let b = self.buf.get(self.at..self.at + n).ok_or(BlobError::Malformed)?;
        self.at += n;
        Ok(b)
    }
    fn u8(&mut self) -> Result<u8, BlobError> {
        Ok(self.bytes(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, BlobError> {
        Ok(u32::from_le_bytes(self.bytes(4)?.try_into().map_err(|_| BlobError::Malformed)?))
    }
    fn u64(&mut self) -> Result<u64, BlobError> {
        Ok(u64::from_le_bytes(self.bytes(8)?.try_into().map_err(|_| BlobError::Malformed)?))
    }
    /// A state as [`export`] wrote it.
    ///
    /// # Safety
    /// As for [`import`]: its callback addresses are live functions of the
    /// types its tag says.
    unsafe fn state(&mut self) -> Result<State, BlobError> {
        let id = self.u32()?;
        let (tag, up, down, ctx) = (self.u8()?, self.u64()?, self.u64()?, self.u64()? as usize);
        let fallible = || FallibleHooks {
            // SAFETY: `up` was a `Fallible` (the tag says PREPARE or ONLINE).
            startup: unsafe { func::<Fallible>(up) },
            // SAFETY: `down` was a `Fallible`.
            teardown: unsafe { func::<Fallible>(down) },
            ctx,
        };
        let hooks = match tag {
            0 => Hooks::Prepare(fallible()),
            1 => Hooks::Bringup,
            2 => Hooks::Starting(StartingHooks {
                // SAFETY: `up` was an `Infallible` (the tag says STARTING).
                startup: unsafe { func::<Infallible>(up) },
                // SAFETY: `down` was an `Infallible`.
                teardown: unsafe { func::<Infallible>(down) },
                ctx,
            }),
            3 => Hooks::Online(fallible()),
            _ => return Err(BlobError::Malformed),
        };
        let len = self.u8()? as usize;
        if len > NAME_LEN {
            return Err(BlobError::Malformed);
        }
        let name = String::from(core::str::from_utf8(self.bytes(len)?).map_err(|_| BlobError::Malformed)?);
        Ok(State { id, name, hooks })
    }

    /// A CPU as [`export`] wrote it.
    fn cpu(&mut self) -> Result<Cpu, BlobError> {
        let apic_id = self.u32()?;
        let origin = match self.u8()? {
            0 => None,
            1 => Some(Origin::Boot),
            2 => Some(Origin::HotAdded),
            _ => return Err(BlobError::Malformed),
        };
        let stage = Stage::from_u8(self.u8()?).ok_or(BlobError::Malformed)?;
        let (fail_state, dir) = (self.u32()?, if self.u8()? == 0 { Direction::Up } else { Direction::Down });
        Ok(Cpu { apic_id, origin, stage, fail: (fail_state != 0).then_some((fail_state, dir)) })
    }

    /// An event as [`Writer::logged`] wrote it; `layout` 1 has no reason.
    fn logged(&mut self, layout: u32) -> Result<Logged, BlobError> {
        let (seq, kind, cpu, state, code) = (self.u64()?, self.u32()?, self.u32()?, self.u32()?, self.u32()? as i32);
        let name = self.bytes(NAME_LEN)?.try_into().map_err(|_| BlobError::Malformed)?;
        let len = if layout == 1 { 0 } else { self.u8()? as usize };
        if len > REASON_LEN {
            return Err(BlobError::Malformed);
        }
        let reason = core::str::from_utf8(self.bytes(len)?).map_err(|_| BlobError::Malformed)?;
        Ok(Logged { event: Event { seq, kind, cpu, state, code, name }, reason: (len > 0).then(|| reason.into()) })
    }
}

/// A callback address as written by `export` (0: none).
fn addr<T: Copy>(f: Option<T>, to_usize: fn(T) -> usize) -> u64 {
    f.map_or(0, to_usize) as u64
}

/// Turns an exported callback address back into a function pointer.
///
/// # Safety
/// `a` must be 0 or the address of a live function of type `F` (it was
/// written by [`export`] in this address space and its owner is loaded).
unsafe fn func<F: Copy>(a: u64) -> Option<F> {
    const { assert!(core::mem::size_of::<F>() == core::mem::size_of::<usize>()) };
    // SAFETY: per the caller, `a` is a function of type `F`; function
    // pointers are address-sized.
    (a != 0).then(|| unsafe { core::mem::transmute_copy::<usize, F>(&(a as usize)) })
}

pub fn export(m: &Machine, subs: &Subscribers, buf: &mut [u8]) -> Result<usize, BlobError> {
    let mut w = Writer { buf, at: 0 };
    w.bytes(&magic(LAYOUT))?;
    w.u32(m.boot_cpu() as u32)?;
    w.u32(m.next_id())?;
    w.u32(m.states().len() as u32)?;
    for s in m.states() {
        w.u32(s.id)?;
        let (tag, up, down, ctx) = match s.hooks {
            Hooks::Prepare(h) => {
                (0, addr(h.startup, |f: Fallible| f as usize), addr(h.teardown, |f: Fallible| f as usize), h.ctx)
            }
            Hooks::Bringup => (1, 0, 0, 0),
            Hooks::Starting(h) => {
                (2, addr(h.startup, |f: Infallible| f as usize), addr(h.teardown, |f: Infallible| f as usize), h.ctx)
            }
            Hooks::Online(h) => {
                (3, addr(h.startup, |f: Fallible| f as usize), addr(h.teardown, |f: Fallible| f as usize), h.ctx)
            }
        };
        w.u8(tag)?;
        w.u64(up)?;
        w.u64(down)?;
        w.u64(ctx as u64)?;
        w.u8(s.name.len() as u8)?;
        w.bytes(s.name.as_bytes())?;
    }
    w.u32(m.cpus().len() as u32)?;
    for c in m.cpus() {
        w.u32(c.apic_id)?;
        w.u8(c.origin.map_or(0, |o| o as u8 + 1))?;
        w.u8(c.stage as u8)?;
        w.u32(c.fail.map_or(0, |(s, _)| s))?;
        w.u8(c.fail.map_or(0, |(_, d)| d as u8))?;
    }
    w.u64(m.events.next_seq())?;
    w.u64(m.events.dropped())?;
    w.u32(m.events.events().count() as u32)?;
    for l in m.events.events() {
        w.logged(l)?;
    }
    match m.events.last_failure() {
        Some(l) => {
            w.u8(1)?;
            w.logged(l)?;
        }
        None => w.u8(0)?,
    }
    w.u32(subs.next_id)?;
    w.u32(subs.list.len() as u32)?;
    for s in &subs.list {
        w.u32(s.id)?;
        w.u64(s.f as usize as u64)?;
        w.u64(s.ctx as u64)?;
    }
    Ok(w.at)
}

/// Reads a blob [`export`] wrote, or an older version's (`layout` from
/// [`OLDEST_LAYOUT`] to [`LAYOUT`]).
///
/// # Safety
/// The blob must come from `export` in this address space, with every
/// plugin whose callbacks it names still loaded.
pub unsafe fn import(layout: u32, buf: &[u8]) -> Result<(Machine, Subscribers), BlobError> {
    if !(OLDEST_LAYOUT..=LAYOUT).contains(&layout) {
        return Err(BlobError::Layout(layout));
    }
    let mut r = Reader { buf, at: 0 };
    if r.bytes(8)? != magic(layout) {
        return Err(BlobError::Malformed);
    }
    let boot_cpu = r.u32()? as usize;
    let next_id = r.u32()?;
    let mut states = Vec::new();
    for _ in 0..r.u32()? {
        // SAFETY: the blob's callbacks are live, per this function's contract.
        states.push(unsafe { r.state() }?);
    }
    let mut cpus = Vec::new();
    for _ in 0..r.u32()? {
        cpus.push(r.cpu()?);
    }
    let (next_seq, dropped) = (r.u64()?, r.u64()?);
    let mut events = Vec::new();
    for _ in 0..r.u32()? {
        events.push(r.logged(layout)?);
    }
    let last_failure = match layout {
        1 => events.iter().rev().find(|l| l.event.kind() == Some(Kind::Failed)).cloned(),
        _ => match r.u8()? {
            0 => None,
            1 => Some(r.logged(layout)?),
            _ => return Err(BlobError::Malformed),
        },
    };
    let mut subs = Subscribers { list: Vec::new(), next_id: r.u32()? };
    for _ in 0..r.u32()? {
        let id = r.u32()?;
        // SAFETY: as above, for the subscriber callbacks.
        let f = unsafe { func::<EventFn>(r.u64()?) }.ok_or(BlobError::Malformed)?;
        subs.list.push(Subscriber { id, f, ctx: r.u64()? as usize });
    }
    if boot_cpu >= cpus.len() || r.at != buf.len() {
        return Err(BlobError::Malformed);
    }
    Ok((
        Machine::from_parts(
            states,
            cpus,
            boot_cpu,
            next_id,
            EventLog::from_parts(events, next_seq, dropped, last_failure),
        ),
        subs,
    ))
}
