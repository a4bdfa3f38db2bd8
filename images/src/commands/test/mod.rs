//! `runner test`: boots every (image, emulator, layout) combination and
//! plays every scripted shell session, judges each run, and reports.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;

use loader_core::power::exit::Status;

use super::{Error, Result};
use crate::build::builder::{self};
use crate::build::recipes::{self, Recipe, RECIPES};
use crate::machine::banner;
use crate::machine::layout::{Emulator, Target};
use crate::machine::outcome::{classify, Ended, Outcome};
use crate::machine::qemu::{Accel, Qemu};
use crate::scenarios::cpuhp_qmp;
use crate::scenarios::hotplug::{HotplugScenario, Script, HOTPLUG_SCENARIOS};
use crate::scenarios::session::data::{Scenario, SCENARIOS};
use crate::shown;

mod execute;

use execute::execute;
pub use execute::Setting;

/// One boot to perform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub recipe: &'static Recipe,
    pub target: Target,
    pub kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Boot and wait for the image to end by itself.
    Boot,
    /// Type a scripted session on the serial console; it ends with a
    /// power-off.
    Session(&'static Scenario),
    /// Boot with QMP and answer the image's CPU hotplug handshake.
    Hotplug(&'static HotplugScenario),
    /// Boot a seeded image with `seed=<n>` added to its command line.
    Seeded(u64),
}

impl Run {
    /// The run's name in the report: the image, or the session.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Boot | Kind::Seeded(_) => self.recipe.name,
            Kind::Session(s) => s.name,
            Kind::Hotplug(s) => s.name,
        }
    }

    /// The run's line in `runner test --help`.
    pub fn about(&self) -> &'static str {
        match self.kind {
            Kind::Boot | Kind::Seeded(_) => self.recipe.about,
            Kind::Session(s) => s.about,
            Kind::Hotplug(s) => s.about,
        }
    }

    pub fn expect(&self) -> Outcome {
        match self.kind {
            Kind::Boot | Kind::Seeded(_) => {
                self.recipe.expect().expect("only recipes with an expected outcome are planned")
            }
            Kind::Session(_) => Outcome::Exited(Status::PowerOff),
            Kind::Hotplug(s) => s.expect(),
        }
    }

    fn dir_name(&self) -> String {
        match self.kind {
            Kind::Seeded(seed) => format!("{}.{}-seed{seed}", self.name(), self.target.slug()),
            _ => format!("{}.{}", self.name(), self.target.slug()),
        }
    }

    /// Where it boots, as the report says it: the target, and the seed of
    /// a seeded run.
    pub fn label(&self) -> String {
        match self.kind {
            Kind::Seeded(seed) => format!("{} seed {seed}", self.target),
            _ => self.target.to_string(),
        }
    }
}

/// The seeds of the seeded images' runs when `--seed` gives none: three,
/// new for every `runner test` (from the clock), so each run tries new
/// choices; the report prints them and `--seed N` replays one.
pub fn fresh_seeds() -> [u64; 3] {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let base = (nanos % 1_000_000_000) as u64;
    [base, base + 1, base + 2]
}

/// Every run `runner test` performs, in report order: seeded images once
/// per seed of `seeds` on each target. `filter` keeps the runs whose image
/// name contains it, or whose emulator it names.
pub fn plan(filter: Option<&str>, seeds: &[u64]) -> Vec<Run> {
    let kinds = |recipe: &Recipe| -> Vec<Kind> {
        match recipe.role {
            recipes::Role::Seeded { .. } => seeds.iter().map(|s| Kind::Seeded(*s)).collect(),
            _ => vec![Kind::Boot],
        }
    };
    let boots = RECIPES.iter().flat_map(|recipe| {
        let kinds = kinds(recipe);
        recipe
            .targets()
            .into_iter()
            .flat_map(move |target| kinds.clone().into_iter().map(move |kind| Run { recipe, target, kind }))
    });
    let sessions = SCENARIOS.iter().map(|s| Run {
        recipe: recipes::find(s.image).expect("a scenario names an image of the table"),
        target: Target::Qemu(s.layout),
        kind: Kind::Session(s),
    });
    let hotplugs = HOTPLUG_SCENARIOS.iter().map(|s| Run {
        recipe: recipes::find(s.image).expect("a scenario names an image of the table"),
        target: Target::Qemu(s.layout),
        kind: Kind::Hotplug(s),
    });
    boots
        .chain(sessions)
        .chain(hotplugs)
        .filter(|run| match filter {
            None => true,
            Some(f) => run.name().contains(f) || run.target.emulator().name() == f,
        })
        .collect()
}

/// The judgement on one boot: its outcome and everything that was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub problems: Vec<String>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

pub fn judge(run: &Run, ended: Ended, serial: &str) -> Verdict {
    let outcome = classify(run.target.emulator(), ended, serial);
    let mut problems = Vec::new();
    if outcome != run.expect() {
        problems.push(format!("expected {}, got {outcome}", run.expect()));
    }
    problems.extend(banner::check(serial, &run.target.expected_banner(), run.recipe.banner_required()));
    Verdict { outcome, problems }
}

/// The progress line of a finished run.
pub fn progress_line(done: usize, total: usize, name_width: usize, run: &Run, passed: bool, seconds: f64) -> String {
    let width = total.to_string().len();
    let result = if passed { "ok" } else { "FAILED" };
    format!("[{done:>width$}/{total}] {:<name_width$} {} ... {result} ({seconds:.1} s)", run.name(), run.label())
}

/// The per-image summary and the closing count line.
pub fn summary(runs: &[Run], passed: &[bool]) -> Vec<String> {
    let mut lines = vec!["results per image:".to_string()];
    let name_width = runs.iter().map(|r| r.name().len()).max().unwrap_or(0);
    let mut names: Vec<&str> = Vec::new();
    for r in runs {
        if !names.contains(&r.name()) {
            names.push(r.name());
        }
    }
    for name in names {
        let mine: Vec<(&Run, bool)> =
            runs.iter().zip(passed.iter().copied()).filter(|(r, _)| r.name() == name).collect();
        let ok = mine.iter().filter(|(_, p)| *p).count();
        let mut line = format!("  {name:<name_width$} {ok}/{} passed", mine.len());
        let failed: Vec<String> = mine.iter().filter(|(_, p)| !*p).map(|(r, _)| r.label()).collect();
        // Naming the failed targets helps only when some passed.
        if !failed.is_empty() && ok > 0 {
            line.push_str(&format!("; failed on: {}", failed.join(", ")));
        }
        lines.push(line);
    }
    let ok = passed.iter().filter(|p| **p).count();
    lines.push(format!("{ok} passed, {} failed", passed.len() - ok));
    lines
}

/// Runs `runs` on `jobs` threads; prints progress as runs finish and the
/// summary at the end. Returns whether every run passed.
pub fn run_all(runs: &[Run], jobs: usize, setting: Setting) -> bool {
    // Longest deadlines (Bochs) first, so they overlap with the many short
    // QEMU runs instead of trailing at the end.
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(runs[i].recipe.timeout(&runs[i].target)));
    let next = AtomicUsize::new(0);
    let done = Mutex::new((0usize, vec![false; runs.len()]));
    let name_width = runs.iter().map(|r| r.name().len()).max().unwrap_or(0);
    thread::scope(|scope| {
        for _ in 0..jobs.min(runs.len()) {
            scope.spawn(|| {
                while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let finished = execute(&runs[i], setting);
                    let mut state = done.lock().unwrap_or_else(|e| e.into_inner());
                    state.0 += 1;
                    state.1[i] = finished.passed;
                    // Printed under the lock so a failure's details stay together.
                    println!(
                        "{}",
                        progress_line(state.0, runs.len(), name_width, &runs[i], finished.passed, finished.seconds)
                    );
                    for line in &finished.details {
                        println!("    {line}");
                    }
                }
            });
        }
    });
    let passed = done.into_inner().unwrap_or_else(|e| e.into_inner()).1;
    for line in summary(runs, &passed) {
        println!("{line}");
    }
    passed.iter().all(|p| *p)
}

/// Refuses, before anything boots, a planned QMP run that would plug more
/// CPUs than its QEMU can create.
pub fn check_plug_events(runs: &[Run], accel: Accel, seed: Option<u64>) -> Result<()> {
    for run in runs {
        if let Kind::Hotplug(s) = run.kind {
            s.check_plug_events(accel, seed)?;
        }
    }
    Ok(())
}

/// The header lines of the report: which QEMU boots the QEMU runs, the
/// cpuhp scenario's seed if it is planned, the seeded images' seeds, and
/// how many runs there are.
pub fn header(runs: &[Run], jobs: usize, qemu: Option<&Qemu>, seed: u64) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(q) = qemu {
        lines.push(format!("test: {} ({})", q.describe(), shown(&q.tree.binary)));
    }
    if runs.iter().any(|r| matches!(r.kind, Kind::Hotplug(s) if s.script == Script::Cpuhp)) {
        lines.push(format!("test: cpuhp-qmp seed {seed} (`--seed {seed}` plays the same operations)"));
    }
    let mut seeded: Vec<(&str, u64)> = Vec::new();
    for r in runs {
        if let Kind::Seeded(s) = r.kind {
            if !seeded.contains(&(r.name(), s)) {
                seeded.push((r.name(), s));
            }
        }
    }
    for (name, s) in seeded {
        lines.push(format!("test: {name} seed {s} (`--filter {name} --seed {s}` replays it)"));
    }
    lines.push(format!("test: {} runs, {} at a time", runs.len(), jobs.min(runs.len())));
    lines
}

/// `runner test`: build what is stale, boot every planned run, report.
pub fn test_command(filter: Option<&str>, jobs: usize, seed: Option<u64>) -> Result<ExitCode> {
    let seeds = match seed {
        Some(s) => vec![s],
        None => fresh_seeds().to_vec(),
    };
    let runs = plan(filter, &seeds);
    if runs.is_empty() {
        let f = filter.unwrap_or_default();
        return Err(Error::Usage(format!("runner test: --filter `{f}` matches no image name and no emulator")));
    }
    let accel = Accel::from_env()?;
    check_plug_events(&runs, accel, seed)?;
    // Only a plan with QEMU runs needs the QEMU tree (`--filter bochs`
    // does not).
    let qemu = match runs.iter().any(|r| r.target.emulator() == Emulator::Qemu) {
        true => Some(Qemu::locate()?),
        false => None,
    };
    builder::build_all()?;
    for line in header(&runs, jobs, qemu.as_ref(), seed.unwrap_or(cpuhp_qmp::DEFAULT_SEED)) {
        println!("{line}");
    }
    let setting = Setting { accel, qemu: qemu.as_ref(), seed };
    Ok(if run_all(&runs, jobs, setting) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::execute::{failure_details, replay_note};
    use super::*;
    use crate::build::recipes::find;
    use crate::machine::layout::{QEMU_LAYOUTS, SELF_CHECK_LAYOUT, SKYLAKE_X2, SKYLAKE_X4, TIGERLAKE_X2, TIGERLAKE_X4};
    use std::fs;

    fn run(name: &str, target: Target) -> Run {
        Run { recipe: find(name).unwrap(), target, kind: Kind::Boot }
    }

    const SKYLAKE: Target = Target::Bochs(SKYLAKE_X2);
    const TIGERLAKE: Target = Target::Bochs(TIGERLAKE_X2);

    fn banner(cpus: u32, hot: u32, mib: u32) -> String {
        format!("cpus: {cpus} enabled at boot, {hot} hot-pluggable\nmemory: {mib} MiB usable\n")
    }

    #[test]
    fn plan_covers_every_test_image_and_layout() {
        let all = plan(None, &[1, 2, 3]);
        // The interactive image boots only for scripted sessions.
        assert!(all.iter().all(|r| r.recipe.name != "default" || matches!(r.kind, Kind::Session(_))));
        let smp: Vec<&Run> = all.iter().filter(|r| r.recipe.name == "smp").collect();
        assert_eq!(smp.len(), QEMU_LAYOUTS.len() + 1);
        let on = |target| -> Vec<&str> { all.iter().filter(|r| r.target == target).map(|r| r.recipe.name).collect() };
        assert_eq!(
            on(SKYLAKE),
            [
                "boot",
                "smp",
                "plugins",
                "cpuhp",
                "vmx",
                "vmx-panic",
                "heap-vmx",
                "guests",
                "vm-api",
                "requests",
                "requests",
                "requests"
            ]
        );
        assert_eq!(on(TIGERLAKE), ["vmx", "guests"]);
        assert_eq!(on(Target::Bochs(SKYLAKE_X4)), ["guests", "requests", "requests", "requests"]);
        assert_eq!(on(Target::Bochs(TIGERLAKE_X4)), ["guests"]);
        for l in QEMU_LAYOUTS {
            let qemu = on(Target::Qemu(l));
            assert!(qemu.contains(&"vmx-absent") && !qemu.contains(&"vmx"), "{qemu:?}");
        }
        assert_eq!(all.iter().filter(|r| r.recipe.name == "fail-panic").count(), 1);
        // A seeded image: once per seed on each of its machines.
        let seeded: Vec<Kind> =
            all.iter().filter(|r| r.target == SKYLAKE && r.name() == "requests").map(|r| r.kind).collect();
        assert_eq!(seeded, [Kind::Seeded(1), Kind::Seeded(2), Kind::Seeded(3)]);
        assert_eq!(plan(Some("requests"), &[9]).len(), 2);
    }

    #[test]
    fn seeded_runs_name_their_seed() {
        let r = Run { recipe: find("requests").unwrap(), target: SKYLAKE, kind: Kind::Seeded(42) };
        assert_eq!(r.dir_name(), "requests.bochs-corei7-skylake-x-x2-seed42");
        assert_eq!(
            progress_line(1, 9, 8, &r, true, 60.0),
            "[1/9] requests bochs corei7_skylake_x x2 256M seed 42 ... ok (60.0 s)"
        );
        assert_eq!(summary(&[r], &[false])[1], "  requests 0/1 passed");
        assert_eq!(
            header(&[r, r], 2, None, 7),
            ["test: requests seed 42 (`--filter requests --seed 42` replays it)", "test: 2 runs, 2 at a time"]
        );
        let seeds = fresh_seeds();
        assert_eq!((seeds[1], seeds[2]), (seeds[0] + 1, seeds[0] + 2));
    }

    #[test]
    fn sessions_are_planned_and_expect_a_power_off() {
        let sessions: Vec<Run> =
            plan(None, &[1, 2, 3]).into_iter().filter(|r| matches!(r.kind, Kind::Session(_))).collect();
        assert_eq!(sessions.len(), SCENARIOS.len());
        let s = sessions[0];
        assert_eq!((s.name(), s.recipe.name), ("shell-session", "default"));
        assert_eq!(s.expect(), Outcome::Exited(Status::PowerOff));
        assert_eq!(s.dir_name(), "shell-session.qemu-q35-smp2of16-512M");
        // `--filter shell` takes the in-image suite and the session.
        let names: Vec<&str> = plan(Some("shell"), &[1, 2, 3]).iter().map(Run::name).collect();
        assert!(names.contains(&"shell") && names.contains(&"shell-session"), "{names:?}");
        assert_eq!(plan(Some("shell-session"), &[1, 2, 3]).len(), 1);
        // A session's serial log holds the whole transcript, banner included.
        let serial =
            format!("cpus: 2 enabled at boot, 14 hot-pluggable\nmemory: 511 MiB usable\n{}\n", Status::PowerOff);
        assert!(judge(&s, Ended::Code(0), &serial).passed());
        let v = judge(&s, Ended::TimedOut, &serial);
        assert_eq!(v.problems, ["expected poweroff, got timeout"]);
    }

    #[test]
    fn filter_by_image_or_emulator() {
        let f = plan(Some("fail-"), &[1, 2, 3]);
        assert!(!f.is_empty() && f.iter().all(|r| r.recipe.name.starts_with("fail-")));
        let b = plan(Some("bochs"), &[1, 2, 3]);
        // 13 boots and the seeded image's 3 seeds on 2 machines.
        assert_eq!(b.len(), 19);
        assert!(b.iter().all(|r| r.target.emulator() == Emulator::Bochs));
        assert!(plan(Some("nothing-like-this"), &[1, 2, 3]).is_empty());
    }

    #[test]
    fn passing_run() {
        let r = run("smp", Target::Qemu(QEMU_LAYOUTS[2]));
        let serial = format!("{}{}\n", banner(2, 2, 126), Status::Pass);
        let v = judge(&r, Ended::Code(33), &serial);
        assert!(v.passed(), "{v:?}");
    }

    #[test]
    fn self_check_passes_when_the_expected_failure_happens() {
        let t = Target::Qemu(SELF_CHECK_LAYOUT);
        let serial = format!("{}{}\n", banner(1, 0, 127), Status::Panic);
        assert!(judge(&run("fail-panic", t), Ended::Code(37), &serial).passed());
        let v = judge(&run("fail-test", t), Ended::Code(37), &serial);
        assert_eq!(v.problems, ["expected test-failure, got panic"]);
    }

    #[test]
    fn rejected_cmdline_needs_no_banner_but_others_do() {
        let t = Target::Qemu(SELF_CHECK_LAYOUT);
        let serial = format!("error: unknown command-line argument `bogus=1`\n{}\n", Status::BadCommandLine);
        assert!(judge(&run("fail-cmdline", t), Ended::Code(43), &serial).passed());
        let serial = format!("{}\n", Status::Panic);
        let v = judge(&run("fail-panic", t), Ended::Code(37), &serial);
        assert_eq!(v.problems.len(), 2, "{v:?}");
    }

    #[test]
    fn host_timeout_is_its_own_outcome() {
        let t = Target::Qemu(SELF_CHECK_LAYOUT);
        let serial = banner(1, 0, 127);
        assert!(judge(&run("fail-timeout", t), Ended::TimedOut, &serial).passed());
        let v = judge(&run("fail-hang", t), Ended::TimedOut, &serial);
        assert_eq!(v.problems, ["expected watchdog, got timeout"]);
        let v = judge(&run("boot", t), Ended::TimedOut, &serial);
        assert_eq!(v.problems, ["expected pass, got timeout"]);
    }

    #[test]
    fn triple_fault_and_banner_mismatch_both_reported() {
        let r = run("boot", Target::Qemu(QEMU_LAYOUTS[1]));
        let v = judge(&r, Ended::Code(0), &banner(1, 0, 2040));
        assert_eq!(v.outcome, Outcome::Reset);
        assert_eq!(v.problems.len(), 2, "{v:?}");
        assert!(v.problems[0].starts_with("expected pass, got reset"));
        assert!(v.problems[1].contains("expected 4 enabled at boot"));
    }

    #[test]
    fn bochs_run_is_judged_by_marker_and_banner() {
        let r = run("boot", SKYLAKE);
        let serial = format!("{}{}\n", banner(2, 0, 250), Status::Pass);
        assert!(judge(&r, Ended::Code(1), &serial).passed());
        let v = judge(&r, Ended::Code(1), &banner(2, 0, 250));
        assert_eq!(v.outcome, Outcome::NoMarker);
    }

    #[test]
    fn each_bochs_machine_has_its_own_run_directory() {
        let (s, t) = (run("vmx", SKYLAKE), run("vmx", TIGERLAKE));
        assert_eq!(s.dir_name(), "vmx.bochs-corei7-skylake-x-x2");
        assert_eq!(t.dir_name(), "vmx.bochs-tigerlake-x2");
        assert_eq!(progress_line(1, 2, 3, &t, true, 30.0), "[1/2] vmx bochs tigerlake x2 256M ... ok (30.0 s)");
        let four = run("guests", Target::Bochs(SKYLAKE_X4));
        assert_eq!(four.dir_name(), "guests.bochs-corei7-skylake-x-x4");
        assert_eq!(four.target.to_string(), "bochs corei7_skylake_x x4 256M");
        // A four-CPU machine's banner must say four.
        let serial = format!("{}{}\n", banner(4, 0, 250), Status::Pass);
        assert!(judge(&four, Ended::Code(1), &serial).passed());
        let two = format!("{}{}\n", banner(2, 0, 250), Status::Pass);
        assert!(!judge(&four, Ended::Code(1), &two).passed());
    }

    #[test]
    fn progress_and_summary_format() {
        let r = run("smp", Target::Qemu(QEMU_LAYOUTS[1]));
        assert_eq!(progress_line(3, 40, 4, &r, true, 1.23), "[ 3/40] smp  qemu q35 -smp 4 -m 2G ... ok (1.2 s)");
        assert!(progress_line(10, 9, 4, &r, false, 0.0).ends_with("... FAILED (0.0 s)"));
        let runs = [r, run("smp", SKYLAKE), run("boot", SKYLAKE)];
        let lines = summary(&runs, &[true, false, true]);
        assert_eq!(summary(&runs[1..2], &[false])[1], "  smp 0/1 passed");
        assert_eq!(lines.last().unwrap(), "2 passed, 1 failed");
        assert!(lines.contains(&"  boot 1/1 passed".to_string()), "{lines:?}");
        assert!(
            lines.contains(&"  smp  1/2 passed; failed on: bochs corei7_skylake_x x2 256M".to_string()),
            "{lines:?}"
        );
    }

    #[test]
    fn the_header_names_the_qemu_and_the_seed() {
        use crate::machine::qemu::{QemuTree, QemuVersion};
        let qemu = Qemu {
            tree: QemuTree::under(&crate::machine::qemu::qemu_root()),
            version: QemuVersion { major: 10, text: "10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)".into() },
        };
        let runs = plan(Some("cpuhp-qmp"), &[1, 2, 3]);
        assert_eq!(
            header(&runs, 1, Some(&qemu), 42),
            [
                "test: QEMU 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1) \
                 (images/qemu/root/usr/bin/qemu-system-x86_64)",
                "test: cpuhp-qmp seed 42 (`--seed 42` plays the same operations)",
                "test: 2 runs, 1 at a time",
            ]
        );
        // Bochs alone: no QEMU, no cpuhp seed.
        let bochs = plan(Some("guests"), &[1, 2, 3]);
        assert!(!bochs.is_empty());
        assert_eq!(header(&bochs, 2, None, 42), [format!("test: {} runs, 2 at a time", bochs.len())]);
        assert!(replay_note("cpuhp-qmp-pc", 7).contains("--filter cpuhp-qmp-pc --seed 7"));
        assert!(check_plug_events(&plan(None, &[1, 2, 3]), Accel::Tcg, Some(3)).is_ok());
    }

    #[test]
    fn failure_details_show_the_tail_of_the_log() {
        let dir = std::env::temp_dir().join(format!("modvisor-details-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let output = dir.join("emulator.out");
        fs::write(&output, "qemu: could not load kernel\n").unwrap();
        let serial: String = (0..50).map(|i| format!("line {i}\n")).collect();
        let v = Verdict { outcome: Outcome::Reset, problems: vec!["expected pass, got reset".into()] };
        let d = failure_details(&v, &serial, &dir.join("serial.log"), &output);
        assert_eq!(d[0], "expected pass, got reset");
        assert!(d[1].contains("last 40 lines"));
        assert_eq!(d[2], "| line 10");
        assert_eq!(d[41], "| line 49");
        assert_eq!(d.last().unwrap(), "| qemu: could not load kernel");
        fs::remove_dir_all(&dir).unwrap();
    }
}
