//! The cpuhp physical hotplug scenario (`cpuhp-qmp-q35`, `cpuhp-qmp-pc`):
//! the `cpuhp-qmp` image (cpuhp and cpuidcheck loaded, the shell on COM1)
//! boots with two CPUs of four; the runner hot-adds and removes CPUs
//! through QMP and onlines/offlines them through the shell, and after each
//! operation checks the event log (`cpu events`) for the operation's
//! events with no sequence gap and `cpus` against the model; at the end
//! QEMU's `query-cpus-fast` must match it too. Early on a CPU without
//! SSE4.2 is hot-added: cpuidcheck's ONLINE state must refuse it, naming
//! the feature, and the other CPUs must not notice.
//!
//! The plan and every check are pure (data in, problems out) and unit
//! tested; [`play`] is the thin plumbing over COM1 and QMP. Every wait has
//! a timeout and waits for something the guest or QEMU says.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::json;

use crate::hotplug;
use crate::qmp::{self, Qmp};
use crate::session::{self, Received};
use crate::{Error, Result};

/// What one scenario does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Seeds the random operations (the same seed, the same run).
    pub seed: u64,
    /// Random operations after the fixed prefix.
    pub random_ops: usize,
    /// Whether a CPU may be hot-added after one was ejected. Not under
    /// TCG, measured with QEMU 7.2 (Debian's) and 10.0.2 (bookworm-
    /// backports): with multi-threaded TCG, 7.2's eject leaves TCG's
    /// memory listener on the freed address space and the next realize
    /// corrupts the heap, and both abort in `tcg_register_thread` (`n <
    /// tcg_max_ctxs`: an ejected vCPU's context is never given back); with
    /// `thread=single` both stop in `qemu_thread_join` ("Resource deadlock
    /// avoided"). KVM has none of this.
    pub readd: bool,
    /// Whether the emulated CPU lacks VMX (TCG): the image also loads
    /// vmx-plugin, whose load must then fail with "not supported" before
    /// any of the hotplug above (cpuhp unaffected by the failed load).
    pub vmx_absent: bool,
}

pub const PLAN: Plan = Plan { seed: 0x6d76_6370_7568_7031, random_ops: 50, readd: true, vmx_absent: false };

/// The plan for `accel`: under TCG no hot-add after an eject, and no VMX.
pub fn plan_for(accel: crate::emulator::Accel) -> Plan {
    let tcg = accel == crate::emulator::Accel::Tcg;
    Plan { readd: !tcg, vmx_absent: tcg, ..PLAN }
}

/// CPUs the image boots with, and the slots in all (QEMU's `maxcpus`:
/// `-smp 2,maxcpus=4`). Both hot-pluggable slots are
/// filled before any eject (see [`Plan::readd`]): slot 2 with a full CPU,
/// [`REFUSED_SLOT`] with the CPU without [`DROPPED_FEATURE`].
pub const BOOT_CPUS: usize = 2;
pub const SLOTS: usize = 4;
pub const MAX_CPUS: u32 = SLOTS as u32;
pub const REFUSED_SLOT: usize = 3;
/// The cpuhp version swapped in after the fixed operations (the image
/// loads 1.2.0; the store holds both).
pub const SWAPPED_TO: &str = "1.3.0";
/// Fixed operations before the random ones, besides the re-add.
const PREFIX: usize = 4;
/// The feature switched off on the last hot-added CPU, as QEMU spells the
/// property and cpuidcheck names the feature, and cpuidcheck's error for it
/// (-(1000 + word 0 * 32 + bit 20)).
pub const DROPPED_FEATURE: &str = "sse4.2";
pub const DROPPED_FEATURE_ERROR: i32 = -1020;
pub const CHECK_STATE: &str = "cpuidcheck:online";

/// How long the guest may take to answer one operation.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
const BOOT_TIMEOUT: Duration = Duration::from_secs(40);
/// Events read back after each operation: more than any one operation
/// makes (about 10 with cpuhp's and cpuidcheck's states).
const EVENTS_READ: usize = 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// device_add into slot (cpu-index) `slot`, with `features` switched off.
    Add { slot: usize, without: Option<&'static str> },
    /// device_del of the CPU in `slot`.
    Remove(usize),
    /// `cpu online N` in the shell.
    Online(usize),
    /// `cpu offline N` in the shell.
    Offline(usize),
    /// `cpu fail N cpuhp:bringup down` (the tear-down's park fails), then
    /// device_del: cpuhp must refuse the eject and keep the CPU online.
    RefusedRemove(usize),
    /// `swap cpuhp-plugin <version>` in the shell: every later hotplug
    /// event reaches the new version's GPE handler.
    Swap(&'static str),
}

/// A slot as the model sees it (the lifecycle words of `cpus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Absent,
    Offline,
    Online,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Absent => "absent",
            Stage::Offline => "offline",
            Stage::Online => "online",
        }
    }
}

/// The expected state of the machine: one stage per slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model(pub [Stage; SLOTS]);

impl Model {
    pub fn boot() -> Model {
        let mut s = [Stage::Absent; SLOTS];
        s[..BOOT_CPUS].fill(Stage::Online);
        Model(s)
    }

    /// Every operation allowed now. CPU 0 (the boot CPU) is never touched;
    /// only hot-pluggable slots are added and removed, since QEMU refuses
    /// to unplug the CPUs of `-smp` on some machine versions.
    /// `plug`: hot-adds and removals are allowed (without, online and
    /// offline only).
    pub fn choices(&self, plug: bool) -> Vec<Op> {
        let mut ops = Vec::new();
        for (slot, stage) in self.0.iter().enumerate().skip(1) {
            let pluggable = slot >= BOOT_CPUS;
            match stage {
                Stage::Absent if plug => ops.push(Op::Add { slot, without: None }),
                Stage::Absent => {}
                Stage::Online => ops.push(Op::Offline(slot)),
                Stage::Offline => ops.push(Op::Online(slot)),
            }
            if plug && pluggable && *stage != Stage::Absent {
                ops.push(Op::Remove(slot));
            }
        }
        ops
    }

    /// Applies `op`; the event kinds it must publish for its CPU, in order.
    pub fn apply(&mut self, op: Op) -> &'static [&'static str] {
        let (slot, before) = (op.cpu(), self.0[op.cpu()]);
        let (after, kinds): (Stage, &'static [&'static str]) = match (op, before) {
            (Op::Add { without: Some(_), .. }, _) => {
                (Stage::Offline, &["discovered", "bring-up-started", "failed", "rolled-back"])
            }
            (Op::Add { .. }, _) => (Stage::Online, &["discovered", "bring-up-started", "online", "active"]),
            (Op::Remove(_), Stage::Online) => (Stage::Absent, &["tear-down-started", "offline", "removed"]),
            (Op::Remove(_), _) => (Stage::Absent, &["removed"]),
            (Op::Online(_), _) => (Stage::Online, &["bring-up-started", "online", "active"]),
            (Op::Offline(_), _) => (Stage::Offline, &["tear-down-started", "offline"]),
            (Op::RefusedRemove(_), _) => (Stage::Online, &["tear-down-started", "failed", "rolled-back"]),
            (Op::Swap(_), stage) => (stage, &[]),
        };
        self.0[slot] = after;
        kinds
    }
}

impl Op {
    pub fn cpu(self) -> usize {
        match self {
            Op::Add { slot, .. }
            | Op::Remove(slot)
            | Op::Online(slot)
            | Op::Offline(slot)
            | Op::RefusedRemove(slot) => slot,
            Op::Swap(_) => 0,
        }
    }
}

/// xorshift64*: small, seeded, the same on every host.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// The whole sequence. Every hot-add of the fixed part comes before the
/// first eject (see [`Plan::readd`]): a CPU into slot 2 (online), the CPU
/// without [`DROPPED_FEATURE`] into [`REFUSED_SLOT`] (refused, it stays
/// offline and the rest goes on); then that CPU is removed and, if
/// `readd`, a full CPU takes its slot; a swap of cpuhp; `random_ops`
/// seeded operations (without `readd`, online and offline only); an eject
/// of CPU 2 refused by an injected teardown failure (then, without
/// `readd`, CPU 2's removal, an eject of an online CPU); and an
/// offline/online of CPU 1 to show the rest still works.
pub fn operations(plan: &Plan) -> Vec<Op> {
    let mut model = Model::boot();
    let mut ops = vec![
        Op::Add { slot: 2, without: None },
        Op::Add { slot: REFUSED_SLOT, without: Some(DROPPED_FEATURE) },
        Op::Remove(REFUSED_SLOT),
    ];
    if plan.readd {
        ops.push(Op::Add { slot: REFUSED_SLOT, without: None });
    }
    ops.push(Op::Swap(SWAPPED_TO));
    for op in &ops {
        model.apply(*op);
    }
    let mut rng = plan.seed | 1;
    for _ in 0..plan.random_ops {
        let choices = model.choices(plan.readd);
        let op = choices[(next(&mut rng) % choices.len() as u64) as usize];
        model.apply(op);
        ops.push(op);
    }
    // An eject a teardown refuses, on CPU 2 brought online for it.
    match model.0[2] {
        Stage::Absent => ops.push(Op::Add { slot: 2, without: None }),
        Stage::Offline => ops.push(Op::Online(2)),
        Stage::Online => {}
    }
    ops.push(Op::RefusedRemove(2));
    if !plan.readd {
        ops.push(Op::Remove(2));
    }
    for op in &ops[PREFIX + plan.readd as usize + plan.random_ops..] {
        model.apply(*op);
    }
    if model.0[1] == Stage::Offline {
        ops.push(Op::Online(1));
    }
    ops.extend([Op::Offline(1), Op::Online(1)]);
    ops
}

/// One line of `cpu events`: `#seq cpu N kind [state=..] [error=..]
/// [reason: <words to the end of the line>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    pub cpu: usize,
    pub kind: String,
    pub state: Option<String>,
    pub error: Option<i32>,
    pub reason: Option<String>,
}

pub fn parse_events(text: &str) -> Vec<Event> {
    text.lines()
        .filter_map(|l| {
            let (l, reason) = match l.split_once(" reason: ") {
                Some((l, r)) => (l, Some(r.trim_end().to_string())),
                None => (l, None),
            };
            let mut w = l.split_whitespace();
            let seq = w.next()?.strip_prefix('#')?.parse().ok()?;
            (w.next()? == "cpu").then_some(())?;
            let cpu = w.next()?.parse().ok()?;
            let kind = w.next()?.to_string();
            let (mut state, mut error) = (None, None);
            for rest in w {
                if let Some(s) = rest.strip_prefix("state=") {
                    state = Some(s.to_string());
                } else if let Some(e) = rest.strip_prefix("error=") {
                    error = e.parse().ok();
                }
            }
            Some(Event { seq, cpu, kind, state, error, reason })
        })
        .collect()
}

/// The host's copy of the guest's event log, merged from overlapping
/// tails; a tail that starts past the copy's end is a gap.
#[derive(Debug, Default)]
pub struct Log {
    pub events: BTreeMap<u64, Event>,
}

impl Log {
    pub fn last_seq(&self) -> u64 {
        self.events.keys().next_back().copied().unwrap_or(0)
    }

    /// Merges `tail`; a problem if sequence numbers are missing between
    /// what the log had and what `tail` brings, or inside `tail`.
    pub fn merge(&mut self, tail: Vec<Event>) -> Option<String> {
        let mut expected = self.events.keys().next().map(|_| self.last_seq() + 1);
        let mut problem = None;
        for e in tail {
            if e.seq > self.last_seq() {
                if let Some(x) = expected.filter(|x| e.seq != *x) {
                    problem.get_or_insert(format!("event log gap: #{x} missing before #{}", e.seq));
                }
                expected = Some(e.seq + 1);
            }
            self.events.insert(e.seq, e);
        }
        problem
    }

    /// Whether the events after `after` hold `kinds` for `cpu`, in order.
    pub fn check(&self, after: u64, cpu: usize, kinds: &[&str]) -> Option<String> {
        let mut want = kinds.iter().peekable();
        for e in self.events.range(after + 1..).map(|(_, e)| e).filter(|e| e.cpu == cpu) {
            if want.peek().is_some_and(|k| **k == e.kind) {
                want.next();
            }
        }
        want.peek().map(|k| format!("cpu {cpu}: no `{k}` event (of {kinds:?}) after #{after}"))
    }
}

/// `cpus` rows: `cpu N apic A stage origin`, by CPU.
pub fn parse_list(text: &str) -> BTreeMap<usize, (String, String)> {
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                ["cpu", n, "apic", _, stage, origin] => {
                    Some((n.parse().ok()?, (stage.to_string(), origin.to_string())))
                }
                _ => None,
            }
        })
        .collect()
}

/// `cpus` against the model: every slot's stage and origin (`-` for an
/// empty slot).
pub fn check_list(model: &Model, list: &BTreeMap<usize, (String, String)>) -> Vec<String> {
    let mut problems = Vec::new();
    let unused: Vec<usize> = list.iter().filter(|(c, (s, _))| **c >= SLOTS && s != "absent").map(|(c, _)| *c).collect();
    if !unused.is_empty() {
        problems.push(format!("cpus: CPUs past slot {SLOTS} are in: {unused:?}"));
    }
    for (cpu, stage) in model.0.iter().enumerate() {
        let want_origin = match (cpu < BOOT_CPUS, stage) {
            (_, Stage::Absent) => "-",
            (true, _) => "boot",
            (false, _) => "hot-added",
        };
        match list.get(&cpu) {
            Some((s, o)) if s == stage.name() && o == want_origin => {}
            got => problems.push(format!("cpus: cpu {cpu} is {got:?}, expected {} {want_origin}", stage.name())),
        }
    }
    problems
}

/// QEMU's CPUs (cpu-index, which is the slot with the default topology)
/// against the model.
pub fn check_qemu(model: &Model, qemu: &[u64]) -> Vec<String> {
    let mut problems = Vec::new();
    if qemu.iter().any(|c| *c >= SLOTS as u64) {
        problems.push(format!("query-cpus-fast {qemu:?}: CPUs past slot {SLOTS}"));
    }
    for (cpu, stage) in model.0.iter().enumerate() {
        if qemu.contains(&(cpu as u64)) != (*stage != Stage::Absent) {
            problems.push(format!("query-cpus-fast {qemu:?}: cpu {cpu} should be {}", stage.name()));
        }
    }
    problems
}

/// The COM1 shell: types a command, returns its reply (up to the next
/// prompt).
struct Shell<'a> {
    writer: UnixStream,
    received: &'a Received,
}

impl Shell<'_> {
    fn run(&mut self, line: &str) -> Result<String> {
        let from = transcript(self.received).len();
        write!(self.writer, "{line}\r").map_err(|e| Error::io("typing on COM1", e))?;
        session::wait_for(self.received, STEP_TIMEOUT, |t| session::prompt_end(t, from, 1))
            .map(|end| transcript(self.received)[from..end].to_string())
            .ok_or_else(|| Error::Qmp(format!("`{line}`: no prompt within {} s", STEP_TIMEOUT.as_secs())))
    }
}

fn transcript(received: &Received) -> String {
    String::from_utf8_lossy(&received.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

/// What the boot must show when the CPU has no VMX: vmx-plugin refused
/// with KVM's words, and nothing of it loaded.
pub fn check_vmx_refused(boot: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if !boot.contains("VMX not supported by CPU 0") {
        problems.push("boot: vmx-plugin did not say \"VMX not supported by CPU 0\"".to_string());
    }
    if !boot.contains("error: cannot load vmx-plugin: ") || boot.contains("loaded vmx-plugin") {
        problems.push("boot: vmx-plugin was not refused".to_string());
    }
    problems
}

/// Plays [`operations`] on a booted image; the problems found. Ends the
/// machine with `poweroff`.
pub fn play(stream: &UnixStream, received: &Received, q: &mut Qmp, plan: &Plan) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    if session::wait_for(received, BOOT_TIMEOUT, session::ready).is_none() {
        return Ok(vec![format!("no prompt within {} s of starting", BOOT_TIMEOUT.as_secs())]);
    }
    if plan.vmx_absent {
        problems.extend(check_vmx_refused(&transcript(received)));
    }
    let mut sh = Shell { writer: stream.try_clone().map_err(|e| Error::io("cloning COM1", e))?, received };
    let mut model = Model::boot();
    let mut log = Log::default();
    let mut ids: [Option<String>; SLOTS] = Default::default();
    // Asked once: the slots' properties do not change, and the fewer QMP
    // requests after an eject, the less of QEMU 7.2's unplug path is
    // touched (see `Plan::readd`).
    let hotpluggable = q.execute("query-hotpluggable-cpus", json!({}))?;
    if let Some(p) = log.merge(parse_events(&sh.run(&format!("cpu events {EVENTS_READ}"))?)) {
        problems.push(p);
    }
    for (n, op) in operations(plan).into_iter().enumerate() {
        let before = log.last_seq();
        q.events.clear();
        match op {
            Op::Add { slot, without } => {
                let (driver, props) = qmp::slot(&hotpluggable, slot)
                    .ok_or_else(|| Error::Qmp(format!("op {n}: slot {slot} is not free")))?;
                let id = format!("hp{n}");
                let features = without.map(|f| format!("\"{f}\": false")).unwrap_or_default();
                q.execute("device_add", qmp::device_add_args(&driver, &props, &id, &features)?)?;
                ids[slot] = Some(id);
                let want = if without.is_some() { hotplug::OST_INSERT_FAILED } else { hotplug::OST_INSERTED };
                if !q.wait_event(STEP_TIMEOUT, |e| qmp::ost_reports(std::slice::from_ref(e)).contains(&want))? {
                    problems.push(format!("op {n} {op:?}: no _OST {want:x?}; got {:x?}", qmp::ost_reports(&q.events)));
                }
            }
            Op::Remove(slot) => {
                let id =
                    ids[slot].take().ok_or_else(|| Error::Qmp(format!("op {n}: nothing was added to slot {slot}")))?;
                q.execute("device_del", json!({ "id": id }))?;
                if !q.wait_event(STEP_TIMEOUT, |e| qmp::is_deleted(e, &id))? {
                    problems.push(format!("op {n} {op:?}: QEMU never reported DEVICE_DELETED for `{id}`"));
                }
                if !q
                    .wait_event(STEP_TIMEOUT, |e| qmp::ost_reports(std::slice::from_ref(e)) == [hotplug::OST_EJECTED])?
                {
                    problems.push(format!("op {n} {op:?}: no _OST {:x?} (ejected)", hotplug::OST_EJECTED));
                }
            }
            Op::RefusedRemove(slot) => {
                let reply = sh.run(&format!("cpu fail {slot} cpuhp:bringup down"))?;
                if reply.contains("error:") {
                    problems.push(format!("op {n} `cpu fail {slot} cpuhp:bringup down`: {reply:?}"));
                }
                let id =
                    ids[slot].clone().ok_or_else(|| Error::Qmp(format!("op {n}: nothing was added to slot {slot}")))?;
                q.execute("device_del", json!({ "id": id }))?;
                if !q.wait_event(STEP_TIMEOUT, |e| {
                    qmp::ost_reports(std::slice::from_ref(e)) == [hotplug::OST_EJECT_REFUSED]
                })? {
                    problems.push(format!(
                        "op {n} {op:?}: no _OST {:x?} (eject refused, busy)",
                        hotplug::OST_EJECT_REFUSED
                    ));
                }
                if q.events.iter().any(|e| qmp::is_deleted(e, &id)) {
                    problems.push(format!("op {n} {op:?}: `{id}` was ejected although its teardown refused"));
                }
            }
            Op::Swap(version) => {
                let reply = sh.run(&format!("swap cpuhp-plugin {version}"))?;
                if reply.contains("error:") || !reply.contains("swapped cpuhp-plugin") {
                    problems.push(format!("op {n} {op:?}: {reply:?}"));
                }
            }
            Op::Online(cpu) | Op::Offline(cpu) => {
                let verb = if matches!(op, Op::Online(_)) { "online" } else { "offline" };
                let reply = sh.run(&format!("cpu {verb} {cpu}"))?;
                if reply.contains("error:") {
                    problems.push(format!("op {n} `cpu {verb} {cpu}`: {reply:?}"));
                }
            }
        }
        let kinds = model.apply(op);
        // The handler has answered QEMU (or the command its prompt), so
        // its events are in the log.
        if let Some(p) = log.merge(parse_events(&sh.run(&format!("cpu events {EVENTS_READ}"))?)) {
            problems.push(format!("op {n} {op:?}: {p}"));
        }
        if let Some(p) = log.check(before, op.cpu(), kinds) {
            problems.push(format!("op {n} {op:?}: {p}"));
        }
        if let Op::Add { slot, without: Some(f) } = op {
            problems.extend(check_refusal(&log, before, slot, f, &transcript(received)));
        }
        // Every CPU, not only the operation's: the rest is unaffected.
        let list = parse_list(&sh.run("cpus")?);
        problems.extend(check_list(&model, &list).into_iter().map(|p| format!("op {n} {op:?}: {p}")));
        if problems.len() > 5 {
            break;
        }
    }
    let qemu: Vec<u64> = qmp::cpus(&q.execute("query-cpus-fast", json!({}))?).into_iter().map(|(i, _)| i).collect();
    problems.extend(check_qemu(&model, &qemu));
    write!(sh.writer, "poweroff\r").map_err(|e| Error::io("typing on COM1", e))?;
    Ok(problems)
}

/// The refused CPU: the failure event names cpuidcheck's state, its error
/// and, in its reason, the feature; cpuhp's log line for the insertion
/// says the same.
pub fn check_refusal(log: &Log, after: u64, cpu: usize, feature: &str, transcript: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let failed = log.events.range(after + 1..).map(|(_, e)| e).find(|e| e.cpu == cpu && e.kind == "failed");
    let names_feature = |e: &Event| e.reason.as_deref().is_some_and(|r| r.split_whitespace().next() == Some(feature));
    match failed {
        Some(e) if e.state.as_deref() == Some(CHECK_STATE) && e.error == Some(DROPPED_FEATURE_ERROR) && names_feature(e) => {}
        other => problems.push(format!(
            "cpu {cpu}: expected `failed state={CHECK_STATE} error={DROPPED_FEATURE_ERROR} reason: {feature} ...`, got {other:?}"
        )),
    }
    let logged = format!(
        "inserted but stays offline: state {CHECK_STATE} refused with error {DROPPED_FEATURE_ERROR}: {feature} ("
    );
    if !transcript.lines().any(|l| l.contains(&format!("cpu {cpu} (")) && l.contains(&logged)) {
        problems.push(format!("no `cpu {cpu} (APIC id ..) {logged}...` in the log"));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_fixed_valid_and_refuses_one_cpu() {
        for plan in [PLAN, plan_for(crate::emulator::Accel::Tcg)] {
            let ops = operations(&plan);
            assert_eq!(ops, operations(&plan), "the same seed gives the same run");
            assert_eq!(
                &ops[..3],
                [
                    Op::Add { slot: 2, without: None },
                    Op::Add { slot: REFUSED_SLOT, without: Some("sse4.2") },
                    Op::Remove(REFUSED_SLOT),
                ]
            );
            assert_eq!(ops[3] == (Op::Add { slot: REFUSED_SLOT, without: None }), plan.readd);
            let random = PREFIX + plan.readd as usize..PREFIX + plan.readd as usize + plan.random_ops;
            assert_eq!(ops[random.start - 1], Op::Swap("1.3.0"));
            // Both fixed hot-adds come before the first eject; without
            // readd no hot-add follows it.
            let first_eject = ops.iter().position(|o| matches!(o, Op::Remove(_) | Op::RefusedRemove(_))).unwrap();
            assert_eq!(first_eject, 2);
            assert_eq!(ops[first_eject..].iter().any(|o| matches!(o, Op::Add { .. })), plan.readd);
            // Replayed on the model, every random operation is one of the
            // allowed; the refused CPU stays offline until it is removed.
            let mut m = Model::boot();
            let tail = ops.iter().rposition(|o| matches!(o, Op::RefusedRemove(_))).unwrap();
            assert_eq!(ops[tail], Op::RefusedRemove(2));
            for (i, op) in ops.iter().enumerate() {
                if i == tail {
                    assert_eq!(m.0[2], Stage::Online, "CPU 2 must be online for the refused eject");
                }
                if random.contains(&i) {
                    assert!(m.choices(plan.readd).contains(op), "{op:?} not allowed in {m:?}");
                }
                m.apply(*op);
                if i == 1 {
                    assert_eq!(m, Model([Stage::Online, Stage::Online, Stage::Online, Stage::Offline]));
                }
            }
            assert_eq!(&ops[ops.len() - 2..], [Op::Offline(1), Op::Online(1)]);
            assert_eq!(ops[tail + 1] == Op::Remove(2), !plan.readd);
            for k in [Op::Online(1), Op::Offline(1), Op::Online(2), Op::Offline(2)] {
                assert!(ops[random.clone()].contains(&k), "{k:?} among the random operations");
            }
            assert_ne!(operations(&Plan { seed: 7, ..plan }), ops);
        }
        let plugs = |p: &Plan| {
            operations(p).iter().skip(PREFIX).filter(|o| matches!(o, Op::Add { .. } | Op::Remove(_))).count()
        };
        assert!(plugs(&PLAN) > 4, "KVM's random operations hot-add and remove");
        assert_eq!(plugs(&plan_for(crate::emulator::Accel::Tcg)), 1, "TCG's only removal is CPU 2's at the end");
    }

    #[test]
    fn choices_never_touch_the_boot_cpu_or_remove_boot_cpus() {
        let m = Model::boot();
        assert_eq!(
            m.choices(true),
            [Op::Offline(1), Op::Add { slot: 2, without: None }, Op::Add { slot: 3, without: None }]
        );
        assert_eq!(m.choices(false), [Op::Offline(1)]);
        let m = Model([Stage::Online, Stage::Online, Stage::Offline, Stage::Absent]);
        assert_eq!(m.choices(false), [Op::Offline(1), Op::Online(2)]);
        let mut m = Model([Stage::Online, Stage::Offline, Stage::Offline, Stage::Online]);
        assert_eq!(m.choices(true), [Op::Online(1), Op::Online(2), Op::Remove(2), Op::Offline(3), Op::Remove(3)]);
        assert_eq!(m.apply(Op::Remove(2)), ["removed"]);
        assert_eq!(m.apply(Op::Remove(3)), ["tear-down-started", "offline", "removed"]);
        assert_eq!(
            m.apply(Op::Add { slot: 3, without: Some("sse4.2") }),
            ["discovered", "bring-up-started", "failed", "rolled-back"]
        );
        assert_eq!(m, Model([Stage::Online, Stage::Offline, Stage::Absent, Stage::Offline]));
    }

    const EVENTS: &str = "cpu events 3\r\n#7 cpu 2 discovered\r\n#8 cpu 2 bring-up-started\r\n\
        [1.2 0 WARN cpuhp-plugin] cpu 2 (APIC id 2) inserted but stays offline: state cpuidcheck:online refused with error -1020: sse4.2 (absent on this CPU, present on the boot CPU) (event #9)\r\n\
        #9 cpu 2 failed state=cpuidcheck:online error=-1020 reason: sse4.2 (absent on this CPU, present on the boot CPU)\r\n\
        #10 cpu 2 rolled-back state=cpuidcheck:online error=-1020\r\n";

    #[test]
    fn events_parse_and_merge_without_gaps() {
        let e = parse_events(EVENTS);
        assert_eq!(e.len(), 4);
        let reason = Some("sse4.2 (absent on this CPU, present on the boot CPU)".into());
        assert_eq!(
            e[2],
            Event {
                seq: 9,
                cpu: 2,
                kind: "failed".into(),
                state: Some("cpuidcheck:online".into()),
                error: Some(-1020),
                reason
            }
        );
        assert_eq!((e[3].error, &e[3].reason), (Some(-1020), &None));
        let mut log = Log::default();
        assert_eq!(log.merge(e[..2].to_vec()), None);
        // Overlap is fine; a skipped number is not.
        assert_eq!(log.merge(e[1..].to_vec()), None);
        assert_eq!(log.last_seq(), 10);
        let later = parse_events("#12 cpu 1 offline\r\n");
        assert_eq!(log.merge(later), Some("event log gap: #11 missing before #12".into()));
        let mut log = Log::default();
        log.merge(parse_events(EVENTS));
        assert_eq!(log.check(6, 2, &["discovered", "bring-up-started", "failed", "rolled-back"]), None);
        assert!(log.check(7, 2, &["discovered"]).unwrap().contains("no `discovered`"));
        assert!(log.check(6, 3, &["discovered"]).is_some());
        assert_eq!(check_refusal(&log, 6, 2, "sse4.2", EVENTS), Vec::<String>::new());
        // Another feature is named neither in the event nor in the log.
        let p = check_refusal(&log, 6, 2, "avx", EVENTS);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(check_refusal(&log, 9, 2, "sse4.2", EVENTS)[0].contains("got None"));
        // A failure without the reason does not pass.
        let mut bare = Log::default();
        bare.merge(parse_events(&EVENTS.replace(" reason: sse4.2", "")));
        assert_eq!(check_refusal(&bare, 6, 2, "sse4.2", EVENTS).len(), 1);
    }

    #[test]
    fn cpus_and_qemu_are_compared_with_the_model() {
        let list = parse_list(
            "cpus\r\ncpu 0 apic 0 online boot\r\ncpu 1 apic 1 offline boot\r\ncpu 2 apic 2 absent -\r\n\
             cpu 3 apic 3 offline hot-added\r\n",
        );
        let m = Model([Stage::Online, Stage::Offline, Stage::Absent, Stage::Offline]);
        assert_eq!(check_list(&m, &list), Vec::<String>::new());
        assert_eq!(check_qemu(&m, &[0, 1, 3]), Vec::<String>::new());
        assert_eq!(check_qemu(&m, &[0, 1, 2, 3]), ["query-cpus-fast [0, 1, 2, 3]: cpu 2 should be absent"]);
        assert!(check_qemu(&m, &[0, 1, 3, 9])[0].ends_with("CPUs past slot 4"));
        let m2 = Model([Stage::Online, Stage::Online, Stage::Absent, Stage::Offline]);
        assert!(check_list(&m2, &list)[0].starts_with("cpus: cpu 1"));
        // The origin counts for a CPU that is there.
        let wrong = parse_list(
            "cpu 0 apic 0 online boot\ncpu 1 apic 1 offline boot\ncpu 2 apic 2 absent -\ncpu 3 apic 3 offline boot\n",
        );
        assert_eq!(
            check_list(&m, &wrong),
            ["cpus: cpu 3 is Some((\"offline\", \"boot\")), expected offline hot-added"]
        );
        let stale = parse_list("cpu 0 apic 0 online boot\ncpu 1 apic 1 offline boot\ncpu 2 apic 2 absent hot-added\ncpu 3 apic 3 offline hot-added\n");
        assert_eq!(check_list(&m, &stale).len(), 1, "an empty slot has no origin");
        assert!(check_list(&m, &parse_list("cpu 4 apic 4 online boot"))[0].contains("past slot 4"));
    }

    #[test]
    fn a_refused_vmx_load_is_checked() {
        let good = "[0.1 0 WARN  vmx-plugin] VMX not supported by CPU 0\r\n\
                    error: cannot load vmx-plugin: vmx-plugin's init failed with code -1; nothing of it stays loaded\r\n";
        assert!(check_vmx_refused(good).is_empty());
        assert_eq!(check_vmx_refused("loaded vmx-plugin 1.1.0\r\n").len(), 2);
    }
}
