//! The checks after each operation: the guest's event log and `cpus`,
//! QEMU's CPUs, the refused CPU and the refused vmx-plugin load.

use std::collections::BTreeMap;

use super::model::{Model, Stage};
use super::{BOOT_CPUS, CHECK_STATE, DROPPED_FEATURE_ERROR, MAX_CPUS, SLOTS};

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

/// `cpus` against the model: one row per possible CPU (`maxcpus` of
/// them), each slot's stage and origin (`-` for an empty slot), and
/// nothing in the slots past the model's.
pub fn check_list(model: &Model, list: &BTreeMap<usize, (String, String)>) -> Vec<String> {
    let mut problems = Vec::new();
    let rows: Vec<usize> = list.keys().copied().collect();
    if rows != (0..MAX_CPUS as usize).collect::<Vec<_>>() {
        problems.push(format!("cpus: rows for CPUs {rows:?}, not one for each of the {MAX_CPUS} possible"));
    }
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

/// What QEMU says is plugged: the cpu-index of every CPU in
/// `query-cpus-fast`, and the slots of `query-hotpluggable-cpus` that hold
/// a CPU (in cpu-index order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QemuCpus {
    pub running: Vec<u64>,
    pub plugged: Vec<usize>,
}

/// QEMU's CPUs against the model and against every `cpus` row: a row is
/// a CPU (online or offline) exactly when QEMU has one at that index, in
/// both of its answers (cpu-index is the slot with the default topology).
pub fn check_qemu(model: &Model, list: &BTreeMap<usize, (String, String)>, qemu: &QemuCpus) -> Vec<String> {
    let mut problems = Vec::new();
    let mut running = qemu.running.clone();
    running.sort_unstable();
    let want: Vec<u64> = model.present().into_iter().map(|s| s as u64).collect();
    if running != want {
        problems.push(format!("query-cpus-fast has CPUs {running:?}, the model {want:?}"));
    }
    let plugged: Vec<u64> = qemu.plugged.iter().map(|s| *s as u64).collect();
    if plugged != running {
        problems
            .push(format!("query-hotpluggable-cpus has slots {plugged:?} filled, query-cpus-fast CPUs {running:?}"));
    }
    let rows: Vec<u64> = list.iter().filter(|(_, (s, _))| s != "absent").map(|(c, _)| *c as u64).collect();
    if rows != running {
        problems.push(format!("cpus has CPUs {rows:?} present, QEMU {running:?}"));
    }
    problems
}

const VMX_REFUSAL: &str = "cannot load vmx-plugin: vmx-plugin needs vmx, which this CPU does not have";

/// What the boot must show when the CPU has no VMX: the store refused
/// vmx-plugin for the feature its signed manifest entry names, and nothing
/// of it loaded.
pub fn check_vmx_refused(boot: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if !boot.contains(VMX_REFUSAL) {
        problems.push(format!("boot: the loader did not say \"{VMX_REFUSAL}\""));
    }
    if !boot.contains("error: cannot load vmx-plugin: ") || boot.contains("loaded vmx-plugin") {
        problems.push("boot: vmx-plugin was not refused".to_string());
    }
    problems
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

/// A CPU hot-added into `cpu` (a fresh slot or one ejected before): cpuhp's
/// GPE handler logs its insertion anew in `since` (the log after the
/// operation began). Its `discovered` event is checked with the others.
pub fn check_insert_logged(since: &str, cpu: usize) -> Option<String> {
    let line = format!("cpu {cpu} (APIC id ");
    let logged = since.lines().any(|l| l.contains(&line) && l.trim_end().ends_with("inserted and online"));
    (!logged).then(|| format!("no `cpu {cpu} (APIC id ..) inserted and online` in the log"))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// `cpus` as the shell prints it for `stages` (by slot), every other
    /// possible CPU absent.
    fn cpus_text(stages: &[(&str, &str)]) -> String {
        let mut text = String::from("cpus\r\n");
        for cpu in 0..MAX_CPUS as usize {
            let (stage, origin) = stages.get(cpu).copied().unwrap_or(("absent", "-"));
            text.push_str(&format!("cpu {cpu} apic {cpu} {stage} {origin}\r\n"));
        }
        text
    }

    fn model(stages: &[Stage]) -> Model {
        let mut m = Model([Stage::Absent; SLOTS]);
        m.0[..stages.len()].copy_from_slice(stages);
        m
    }

    #[test]
    fn cpus_are_compared_with_the_model() {
        let shown = [("online", "boot"), ("offline", "boot"), ("absent", "-"), ("offline", "hot-added")];
        let list = parse_list(&cpus_text(&shown));
        assert_eq!(list.len(), MAX_CPUS as usize);
        let m = model(&[Stage::Online, Stage::Offline, Stage::Absent, Stage::Offline]);
        assert_eq!(check_list(&m, &list), Vec::<String>::new());
        let m2 = model(&[Stage::Online, Stage::Online, Stage::Absent, Stage::Offline]);
        assert!(check_list(&m2, &list)[0].starts_with("cpus: cpu 1"));
        // The origin counts for a CPU that is there.
        let wrong = parse_list(&cpus_text(&[shown[0], shown[1], shown[2], ("offline", "boot")]));
        assert_eq!(
            check_list(&m, &wrong),
            ["cpus: cpu 3 is Some((\"offline\", \"boot\")), expected offline hot-added"]
        );
        let stale = parse_list(&cpus_text(&[shown[0], shown[1], ("absent", "hot-added"), shown[3]]));
        assert_eq!(check_list(&m, &stale).len(), 1, "an empty slot has no origin");
        let mut past = shown.to_vec();
        past.resize(SLOTS + 1, ("absent", "-"));
        past[SLOTS] = ("online", "hot-added");
        assert!(check_list(&m, &parse_list(&cpus_text(&past)))[0].contains(&format!("past slot {SLOTS}")));
        // A row missing is a problem of its own.
        let short = parse_list("cpu 0 apic 0 online boot\ncpu 1 apic 1 offline boot\n");
        assert!(
            check_list(&m, &short)[0].contains("not one for each of the 64 possible"),
            "{:?}",
            check_list(&m, &short)
        );
    }

    #[test]
    fn qemu_is_compared_with_the_model_and_every_row() {
        let shown = [("online", "boot"), ("offline", "boot"), ("absent", "-"), ("offline", "hot-added")];
        let list = parse_list(&cpus_text(&shown));
        let m = model(&[Stage::Online, Stage::Offline, Stage::Absent, Stage::Offline]);
        let qemu = QemuCpus { running: vec![3, 0, 1], plugged: vec![0, 1, 3] };
        assert_eq!(check_qemu(&m, &list, &qemu), Vec::<String>::new());
        // QEMU still has the ejected CPU 2: both the model and the row disagree.
        let stale = QemuCpus { running: vec![0, 1, 2, 3], plugged: vec![0, 1, 2, 3] };
        let p = check_qemu(&m, &list, &stale);
        assert_eq!(
            p,
            [
                "query-cpus-fast has CPUs [0, 1, 2, 3], the model [0, 1, 3]",
                "cpus has CPUs [0, 1, 3] present, QEMU [0, 1, 2, 3]"
            ]
        );
        // The two QEMU answers disagree with each other.
        let torn = QemuCpus { running: vec![0, 1, 3], plugged: vec![0, 1] };
        assert_eq!(check_qemu(&m, &list, &torn).len(), 1);
        // A row that says present where QEMU has nothing.
        let ghost = parse_list(&cpus_text(&[shown[0], shown[1], ("offline", "hot-added"), shown[3]]));
        assert_eq!(check_qemu(&m, &ghost, &qemu), ["cpus has CPUs [0, 1, 2, 3] present, QEMU [0, 1, 3]"]);
    }

    #[test]
    fn every_insertion_is_logged_anew() {
        let since = "cpu events 40\r\n[    1.2 0 INFO  cpuhp-plugin] cpu 2 (APIC id 2) inserted and online\r\n";
        assert_eq!(check_insert_logged(since, 2), None);
        assert!(check_insert_logged(since, 3).unwrap().contains("cpu 3"));
        let refused = "[1.2 0 WARN cpuhp-plugin] cpu 3 (APIC id 3) inserted but stays offline: state x\r\n";
        assert!(check_insert_logged(refused, 3).is_some());
        assert!(check_insert_logged("", 2).is_some());
    }

    #[test]
    fn a_refused_vmx_load_is_checked() {
        let good = "error: cannot load vmx-plugin: vmx-plugin needs vmx, which this CPU does not have\r\n";
        assert!(check_vmx_refused(good).is_empty());
        assert_eq!(check_vmx_refused("loaded vmx-plugin 1.1.0\r\n").len(), 2);
    }
}
