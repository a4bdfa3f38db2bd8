//! Playing the operations on a booted `cpuhp-qmp` image: the thin
//! plumbing over COM1 and QMP.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::json;

use super::checks::{
    check_insert_logged, check_list, check_qemu, check_refusal, check_vmx_refused, parse_events, parse_list, Log,
    QemuCpus,
};
use super::model::{operations, Model, Op};
use super::{Plan, SLOTS};
use crate::link::console::{prompt_end, ready, transcript, transcript_len, wait_for, Received};
use crate::link::qmp::{self, Qmp, OST_EJECTED, OST_EJECT_REFUSED, OST_INSERTED, OST_INSERT_FAILED};
use crate::scenarios::{Error, Result};

/// How long the guest may take to answer one operation.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
const BOOT_TIMEOUT: Duration = Duration::from_secs(40);
/// Events read back after each operation: more than any one operation
/// makes (about 10 with cpuhp's and cpuidcheck's states).
const EVENTS_READ: usize = 40;
/// Problems after which the run stops: the rest would only repeat them.
const MAX_PROBLEMS: usize = 5;

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
        wait_for(self.received, STEP_TIMEOUT, |t| prompt_end(t, from, 1))
            .map(|end| transcript(self.received)[from..end].to_string())
            .ok_or_else(|| Error::Script(format!("`{line}`: no prompt within {} s", STEP_TIMEOUT.as_secs())))
    }
}

/// A run in progress: the shell, QMP, and which device id sits in which
/// slot.
struct Run<'a, 'q> {
    sh: Shell<'a>,
    q: &'q mut Qmp,
    ids: [Option<String>; SLOTS],
    problems: Vec<String>,
}

/// Plays [`operations`] on a booted image; the problems found. Ends the
/// machine with `poweroff`.
pub fn play(stream: &UnixStream, received: &Received, q: &mut Qmp, plan: &Plan) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    if wait_for(received, BOOT_TIMEOUT, ready).is_none() {
        return Ok(vec![format!("no prompt within {} s of starting", BOOT_TIMEOUT.as_secs())]);
    }
    if plan.vmx_absent {
        problems.extend(check_vmx_refused(&transcript(received)));
    }
    let sh = Shell { writer: stream.try_clone().map_err(|e| Error::io("cloning COM1", e))?, received };
    let mut run = Run { sh, q, ids: Default::default(), problems };
    let mut model = Model::boot();
    let mut log = Log::default();
    if let Some(p) = log.merge(parse_events(&run.sh.run(&format!("cpu events {EVENTS_READ}"))?)) {
        run.problems.push(p);
    }
    let list = parse_list(&run.sh.run("cpus")?);
    run.problems.extend(check_list(&model, &list).into_iter().map(|p| format!("at boot: {p}")));
    let qemu = run.qemu_cpus()?;
    run.problems.extend(check_qemu(&model, &list, &qemu).into_iter().map(|p| format!("at boot: {p}")));
    for (n, op) in operations(plan).into_iter().enumerate() {
        // A step that cannot go on (no answer, a slot QEMU calls taken)
        // ends the run; what was found before it stays in the report.
        if let Err(e) = run.step(n, op, &mut model, &mut log) {
            run.problems.push(format!("op {n} {op:?}: {e}"));
            break;
        }
        if run.problems.len() > MAX_PROBLEMS {
            run.problems.push(format!("stopped after op {n}"));
            break;
        }
    }
    write!(run.sh.writer, "poweroff\r").map_err(|e| Error::io("typing on COM1", e))?;
    Ok(run.problems)
}

impl Run<'_, '_> {
    /// Plays operation `n` and checks what it did: its events (and no gap
    /// in the log), a hot-add's log line or refusal, and every CPU in
    /// `cpus` against the model and QEMU.
    fn step(&mut self, n: usize, op: Op, model: &mut Model, log: &mut Log) -> Result<()> {
        let received = self.sh.received;
        let before = log.last_seq();
        let from = transcript_len(received);
        self.q.events.clear();
        self.apply(n, op)?;
        let kinds = model.apply(op);
        // The handler has answered QEMU (or the command its prompt), so
        // its events are in the log.
        if let Some(p) = log.merge(parse_events(&self.sh.run(&format!("cpu events {EVENTS_READ}"))?)) {
            self.problems.push(format!("op {n} {op:?}: {p}"));
        }
        if let Some(p) = log.check(before, op.cpu(), kinds) {
            self.problems.push(format!("op {n} {op:?}: {p}"));
        }
        match op {
            Op::Add { slot, without: Some(f) } => {
                self.problems.extend(check_refusal(log, before, slot, f, &transcript(received)));
            }
            Op::Add { slot, without: None } => {
                let since = transcript(received).get(from..).unwrap_or_default().to_string();
                self.problems.extend(check_insert_logged(&since, slot).map(|p| format!("op {n} {op:?}: {p}")));
            }
            _ => {}
        }
        // Every CPU, not only the operation's: the rest is unaffected, and
        // the guest and QEMU agree on which slots hold a CPU.
        let list = parse_list(&self.sh.run("cpus")?);
        let qemu = self.qemu_cpus()?;
        let found = check_list(model, &list).into_iter().chain(check_qemu(model, &list, &qemu));
        self.problems.extend(found.map(|p| format!("op {n} {op:?}: {p}")));
        Ok(())
    }

    /// QEMU's two views of its CPUs.
    fn qemu_cpus(&mut self) -> Result<QemuCpus> {
        let running = qmp::cpus(&self.q.execute("query-cpus-fast", json!({}))?).into_iter().map(|(i, _)| i).collect();
        let plugged = qmp::plugged_slots(&self.q.execute("query-hotpluggable-cpus", json!({}))?);
        Ok(QemuCpus { running, plugged })
    }

    /// Performs operation `n`, `op`, and waits for QEMU's or the shell's
    /// answer to it.
    fn apply(&mut self, n: usize, op: Op) -> Result<()> {
        match op {
            Op::Add { slot, without } => self.add(n, op, slot, without),
            Op::Remove(slot) => self.remove(n, op, slot),
            Op::RefusedRemove(slot) => self.refused_remove(n, op, slot),
            Op::Swap(version) => {
                let reply = self.sh.run(&format!("swap cpuhp-plugin {version}"))?;
                if reply.contains("error:") || !reply.contains("swapped cpuhp-plugin") {
                    self.problems.push(format!("op {n} {op:?}: {reply:?}"));
                }
                Ok(())
            }
            Op::Online(cpu) | Op::Offline(cpu) => {
                let verb = if matches!(op, Op::Online(_)) { "online" } else { "offline" };
                let reply = self.sh.run(&format!("cpu {verb} {cpu}"))?;
                if reply.contains("error:") {
                    self.problems.push(format!("op {n} `cpu {verb} {cpu}`: {reply:?}"));
                }
                Ok(())
            }
        }
    }

    /// Waits for an `ACPI_DEVICE_OST` event that satisfies `want`.
    fn ost(&mut self, want: impl Fn(&[(u64, u64)]) -> bool) -> Result<bool> {
        Ok(self.q.wait_event(STEP_TIMEOUT, |e| want(&qmp::ost_reports(std::slice::from_ref(e))))?)
    }

    fn add(&mut self, n: usize, op: Op, slot: usize, without: Option<&str>) -> Result<()> {
        // Asked anew each time: a slot is free again after its CPU left.
        let hotpluggable = self.q.execute("query-hotpluggable-cpus", json!({}))?;
        let (driver, props) =
            qmp::slot(&hotpluggable, slot).ok_or_else(|| Error::Script(format!("op {n}: slot {slot} is not free")))?;
        let id = format!("hp{n}");
        let features = without.map(|f| format!("\"{f}\": false")).unwrap_or_default();
        self.q.execute("device_add", qmp::device_add_args(&driver, &props, &id, &features)?)?;
        self.ids[slot] = Some(id);
        let want = if without.is_some() { OST_INSERT_FAILED } else { OST_INSERTED };
        if !self.ost(|r| r.contains(&want))? {
            self.problems
                .push(format!("op {n} {op:?}: no _OST {want:x?}; got {:x?}", qmp::ost_reports(&self.q.events)));
        }
        Ok(())
    }

    fn remove(&mut self, n: usize, op: Op, slot: usize) -> Result<()> {
        let id =
            self.ids[slot].take().ok_or_else(|| Error::Script(format!("op {n}: nothing was added to slot {slot}")))?;
        self.q.execute("device_del", json!({ "id": id }))?;
        if !self.q.wait_event(STEP_TIMEOUT, |e| qmp::is_deleted(e, &id))? {
            self.problems.push(format!("op {n} {op:?}: QEMU never reported DEVICE_DELETED for `{id}`"));
        }
        if !self.ost(|r| r == [OST_EJECTED])? {
            self.problems.push(format!("op {n} {op:?}: no _OST {OST_EJECTED:x?} (ejected)"));
        }
        Ok(())
    }

    fn refused_remove(&mut self, n: usize, op: Op, slot: usize) -> Result<()> {
        let reply = self.sh.run(&format!("cpu fail {slot} cpuhp:bringup down"))?;
        if reply.contains("error:") {
            self.problems.push(format!("op {n} `cpu fail {slot} cpuhp:bringup down`: {reply:?}"));
        }
        let id =
            self.ids[slot].clone().ok_or_else(|| Error::Script(format!("op {n}: nothing was added to slot {slot}")))?;
        self.q.execute("device_del", json!({ "id": id }))?;
        if !self.ost(|r| r == [OST_EJECT_REFUSED])? {
            self.problems.push(format!("op {n} {op:?}: no _OST {OST_EJECT_REFUSED:x?} (eject refused, busy)"));
        }
        if self.q.events.iter().any(|e| qmp::is_deleted(e, &id)) {
            self.problems.push(format!("op {n} {op:?}: `{id}` was ejected although its teardown refused"));
        }
        Ok(())
    }
}
