//! `runner test`: boots every (image, emulator, layout) combination and
//! plays every scripted shell session, judges each run, and reports.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;

use loader_core::power::exit::Status;

use super::{Error, Result};
use crate::build::builder::{self, Image};
use crate::build::recipes::{self, Recipe, RECIPES};
use crate::machine::bochs::{prepare_bochs, BOCHS};
use crate::machine::layout::{QemuLayout, Target};
use crate::machine::outcome::{classify, Ended, Outcome};
use crate::machine::qemu::{com2_serial_arg, qemu_args, qmp_args, Accel, QemuBoot, QEMU};
use crate::machine::{banner, fresh_run_dir, process, Serial};
use crate::scenarios;
use crate::scenarios::hotplug::{self, HotplugScenario, HOTPLUG_SCENARIOS};
use crate::scenarios::session::data::{Scenario, SCENARIOS};
use crate::scenarios::session::{checks, drive, upload};
use crate::{last_lines, out_dir, read_lossy, shown};

/// How many serial lines a failure report shows.
const TAIL_LINES: usize = 40;

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
}

impl Run {
    /// The run's name in the report: the image, or the session.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Boot => self.recipe.name,
            Kind::Session(s) => s.name,
            Kind::Hotplug(s) => s.name,
        }
    }

    /// The run's line in `runner test --help`.
    pub fn about(&self) -> &'static str {
        match self.kind {
            Kind::Boot => self.recipe.about,
            Kind::Session(s) => s.about,
            Kind::Hotplug(s) => s.about,
        }
    }

    pub fn expect(&self) -> Outcome {
        match self.kind {
            Kind::Boot => self.recipe.expect().expect("only recipes with an expected outcome are planned"),
            Kind::Session(_) => Outcome::Exited(Status::PowerOff),
            Kind::Hotplug(s) => s.expect(),
        }
    }

    fn dir_name(&self) -> String {
        format!("{}.{}", self.name(), self.target.slug())
    }
}

/// Every run `runner test` performs, in report order. `filter` keeps the
/// runs whose image name contains it, or whose emulator it names.
pub fn plan(filter: Option<&str>) -> Vec<Run> {
    let boots = RECIPES
        .iter()
        .flat_map(|recipe| recipe.targets().into_iter().map(move |target| Run { recipe, target, kind: Kind::Boot }));
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

/// What one finished run reports.
struct Finished {
    passed: bool,
    seconds: f64,
    /// Why it failed: problems, serial tail, emulator output.
    details: Vec<String>,
}

/// Boots one run and judges it. Failing to even start the emulator is a
/// failed run, not an error that stops the others.
fn execute(run: &Run, accel: Accel) -> Finished {
    boot(run, accel).unwrap_or_else(|e| Finished { passed: false, seconds: 0.0, details: vec![e.to_string()] })
}

fn boot(run: &Run, accel: Accel) -> Result<Finished> {
    let image = Image::of(run.recipe.name);
    let dir = fresh_run_dir(&run.dir_name())?;
    let serial_path = dir.join("serial.log");
    let output = dir.join("emulator.out");
    if let (Kind::Session(scenario), Target::Qemu(layout)) = (run.kind, run.target) {
        return play(run, scenario, &image, layout, accel, &serial_path, &output);
    }
    if let (Kind::Hotplug(scenario), Target::Qemu(layout)) = (run.kind, run.target) {
        return play_hotplug(run, scenario, &image, layout, accel, &serial_path, &output);
    }
    let mut command = match run.target {
        Target::Qemu(layout) => {
            let cmdline = image.cmdline()?;
            let mut c = Command::new(QEMU);
            c.args(qemu_args(&QemuBoot {
                kernel: &image.loader(),
                initrd: &image.initrd(),
                cmdline: &cmdline,
                layout,
                accel,
                serial: Serial::File(&serial_path),
                reboots: run.recipe.reboots(),
                icount: false,
                com2: None,
            }));
            c
        }
        Target::Bochs(model) => {
            let mut c = Command::new(BOCHS);
            c.args(prepare_bochs(&dir, &image.iso, model, Serial::File(&serial_path))?);
            c
        }
    };
    let program = command.get_program().to_string_lossy().into_owned();
    let (ended, took) = process::run_with_deadline(&mut command, &output, run.recipe.timeout(&run.target))
        .map_err(|e| Error::io(format!("running {program}"), e))?;
    let serial = read_lossy(&serial_path);
    let verdict = judge(run, ended, &serial);
    Ok(finished(verdict, took.as_secs_f64(), &serial, &serial_path, &output))
}

fn finished(verdict: Verdict, seconds: f64, serial: &str, serial_path: &Path, output: &Path) -> Finished {
    let details = if verdict.passed() { Vec::new() } else { failure_details(&verdict, serial, serial_path, output) };
    Finished { passed: verdict.passed(), seconds, details }
}

/// Boots `image` with COM1 on a socket and plays `scenario` on it.
fn play(
    run: &Run,
    scenario: &Scenario,
    image: &Image,
    layout: QemuLayout,
    accel: Accel,
    serial_path: &Path,
    output: &Path,
) -> Result<Finished> {
    // Unix socket paths are limited to about 100 bytes, which a deep
    // workspace could exceed; the temporary directory is short.
    let socket_path = |port: &str| {
        std::env::temp_dir().join(format!("modvisor-{}-{}-{port}.sock", std::process::id(), scenario.name))
    };
    let (socket, com2_socket) = (socket_path("com1"), socket_path("com2"));
    let frames = if scenario.uploads() {
        let read = |path: &str| {
            let file = out_dir().join(path);
            std::fs::read(&file).map_err(|e| scenarios::Error::io(format!("reading {}", file.display()), e))
        };
        upload::frames(scenario, read, &upload::throwaway_key()?)?
    } else {
        Vec::new()
    };
    let com2_arg = com2_serial_arg(&com2_socket)?;
    let com2_log = output.with_file_name("com2.log");
    let com2 = scenario.uploads().then_some(drive::Com2 { socket: &com2_socket, frames: &frames, log: &com2_log });
    for s in [&socket, &com2_socket] {
        let _ = std::fs::remove_file(s);
    }
    let cmdline = scenario.cmdline(&image.cmdline()?);
    let mut command = Command::new(QEMU);
    command.args(qemu_args(&QemuBoot {
        kernel: &image.loader(),
        initrd: &image.initrd(),
        cmdline: &cmdline,
        layout,
        accel,
        serial: Serial::Socket(&socket),
        com2: com2.as_ref().map(|_| com2_arg.as_str()),
        reboots: false,
        icount: false,
    }));
    let driven = drive::drive(scenario, &mut command, &socket, com2.as_ref(), output, serial_path);
    for s in [&socket, &com2_socket] {
        let _ = std::fs::remove_file(s);
    }
    let driven = driven.map_err(|e| Error::io(format!("playing the `{}` session", scenario.name), e))?;
    let mut verdict = judge(run, driven.ended, &driven.transcript);
    verdict.problems.extend(driven.problems);
    verdict.problems.extend(checks::check(scenario, &driven.transcript, &driven.sent));
    Ok(finished(verdict, driven.took.as_secs_f64(), &driven.transcript, serial_path, output))
}

/// Boots `image` with COM1 and QMP on sockets and drives its hotplug
/// handshake.
fn play_hotplug(
    run: &Run,
    scenario: &HotplugScenario,
    image: &Image,
    layout: QemuLayout,
    accel: Accel,
    serial_path: &Path,
    output: &Path,
) -> Result<Finished> {
    // Short paths: unix socket names hold about 100 bytes.
    let socket = |what: &str| {
        std::env::temp_dir().join(format!("modvisor-{}-{}.{what}.sock", std::process::id(), scenario.name))
    };
    let (serial, qmp) = (socket("com1"), socket("qmp"));
    let _ = std::fs::remove_file(&serial);
    let _ = std::fs::remove_file(&qmp);
    let cmdline = image.cmdline()?;
    let mut command = Command::new(QEMU);
    command.args(qemu_args(&QemuBoot {
        kernel: &image.loader(),
        initrd: &image.initrd(),
        cmdline: &cmdline,
        layout,
        accel,
        serial: Serial::Socket(&serial),
        com2: None,
        reboots: false,
        icount: false,
    }));
    command.args(qmp_args(&qmp));
    let driven = hotplug::drive(scenario.script, accel, &mut command, &serial, &qmp, output, serial_path);
    let _ = std::fs::remove_file(&serial);
    let _ = std::fs::remove_file(&qmp);
    let driven = driven?;
    let mut verdict = judge(run, driven.ended, &driven.transcript);
    verdict.problems.extend(driven.problems);
    Ok(finished(verdict, driven.took.as_secs_f64(), &driven.transcript, serial_path, output))
}

fn failure_details(verdict: &Verdict, serial: &str, serial_path: &Path, output: &Path) -> Vec<String> {
    let mut lines = verdict.problems.clone();
    let tail = last_lines(serial, TAIL_LINES);
    if tail.is_empty() {
        lines.push(format!("serial log {} is empty", shown(serial_path)));
    } else {
        lines.push(format!("serial log {}, last {} lines:", shown(serial_path), tail.len()));
        lines.extend(tail.iter().map(|l| format!("| {l}")));
    }
    let emulator_output = read_lossy(output);
    let tail = last_lines(&emulator_output, 10);
    if !tail.is_empty() {
        lines.push(format!("emulator output {}:", shown(output)));
        lines.extend(tail.iter().map(|l| format!("| {l}")));
    }
    lines
}

/// The progress line of a finished run.
pub fn progress_line(done: usize, total: usize, name_width: usize, run: &Run, passed: bool, seconds: f64) -> String {
    let width = total.to_string().len();
    let result = if passed { "ok" } else { "FAILED" };
    format!("[{done:>width$}/{total}] {:<name_width$} {} ... {result} ({seconds:.1} s)", run.name(), run.target)
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
        let failed: Vec<String> = mine.iter().filter(|(_, p)| !*p).map(|(r, _)| r.target.to_string()).collect();
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
pub fn run_all(runs: &[Run], jobs: usize, accel: Accel) -> bool {
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
                    let finished = execute(&runs[i], accel);
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

/// `runner test`: build what is stale, boot every planned run, report.
pub fn test_command(filter: Option<&str>, jobs: usize) -> Result<ExitCode> {
    let runs = plan(filter);
    if runs.is_empty() {
        let f = filter.unwrap_or_default();
        return Err(Error::Usage(format!("runner test: --filter `{f}` matches no image name and no emulator")));
    }
    let accel = Accel::from_env()?;
    builder::build_all()?;
    println!("test: {} runs, {} at a time", runs.len(), jobs.min(runs.len()));
    Ok(if run_all(&runs, jobs, accel) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::recipes::find;
    use crate::machine::layout::{BochsModel, Emulator, QEMU_LAYOUTS, SELF_CHECK_LAYOUT};
    use std::fs;

    fn run(name: &str, target: Target) -> Run {
        Run { recipe: find(name).unwrap(), target, kind: Kind::Boot }
    }

    const SKYLAKE: Target = Target::Bochs(BochsModel::SkylakeX);
    const TIGERLAKE: Target = Target::Bochs(BochsModel::TigerLake);

    fn banner(cpus: u32, hot: u32, mib: u32) -> String {
        format!("cpus: {cpus} enabled at boot, {hot} hot-pluggable\nmemory: {mib} MiB usable\n")
    }

    #[test]
    fn plan_covers_every_test_image_and_layout() {
        let all = plan(None);
        // The interactive image boots only for scripted sessions.
        assert!(all.iter().all(|r| r.recipe.name != "default" || matches!(r.kind, Kind::Session(_))));
        let smp: Vec<&Run> = all.iter().filter(|r| r.recipe.name == "smp").collect();
        assert_eq!(smp.len(), QEMU_LAYOUTS.len() + 1);
        let on = |target| -> Vec<&str> { all.iter().filter(|r| r.target == target).map(|r| r.recipe.name).collect() };
        assert_eq!(on(SKYLAKE), ["boot", "smp", "plugins", "cpuhp", "vmx", "vmx-panic", "heap-vmx"]);
        assert_eq!(on(TIGERLAKE), ["vmx"]);
        for l in QEMU_LAYOUTS {
            let qemu = on(Target::Qemu(l));
            assert!(qemu.contains(&"vmx-absent") && !qemu.contains(&"vmx"), "{qemu:?}");
        }
        assert_eq!(all.iter().filter(|r| r.recipe.name == "fail-panic").count(), 1);
    }

    #[test]
    fn sessions_are_planned_and_expect_a_power_off() {
        let sessions: Vec<Run> = plan(None).into_iter().filter(|r| matches!(r.kind, Kind::Session(_))).collect();
        assert_eq!(sessions.len(), SCENARIOS.len());
        let s = sessions[0];
        assert_eq!((s.name(), s.recipe.name), ("shell-session", "default"));
        assert_eq!(s.expect(), Outcome::Exited(Status::PowerOff));
        assert_eq!(s.dir_name(), "shell-session.qemu-q35-smp2of4-512M");
        // `--filter shell` takes the in-image suite and the session.
        let names: Vec<&str> = plan(Some("shell")).iter().map(Run::name).collect();
        assert!(names.contains(&"shell") && names.contains(&"shell-session"), "{names:?}");
        assert_eq!(plan(Some("shell-session")).len(), 1);
        // A session's serial log holds the whole transcript, banner included.
        let serial =
            format!("cpus: 2 enabled at boot, 2 hot-pluggable\nmemory: 511 MiB usable\n{}\n", Status::PowerOff);
        assert!(judge(&s, Ended::Code(0), &serial).passed());
        let v = judge(&s, Ended::TimedOut, &serial);
        assert_eq!(v.problems, ["expected poweroff, got timeout"]);
    }

    #[test]
    fn filter_by_image_or_emulator() {
        let f = plan(Some("fail-"));
        assert!(!f.is_empty() && f.iter().all(|r| r.recipe.name.starts_with("fail-")));
        let b = plan(Some("bochs"));
        assert_eq!(b.len(), 8);
        assert!(b.iter().all(|r| r.target.emulator() == Emulator::Bochs));
        assert!(plan(Some("nothing-like-this")).is_empty());
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
    fn each_bochs_model_has_its_own_run_directory() {
        let (s, t) = (run("vmx", SKYLAKE), run("vmx", TIGERLAKE));
        assert_eq!(s.dir_name(), "vmx.bochs-corei7-skylake-x");
        assert_eq!(t.dir_name(), "vmx.bochs-tigerlake");
        assert_eq!(progress_line(1, 2, 3, &t, true, 30.0), "[1/2] vmx bochs tigerlake x2 256M ... ok (30.0 s)");
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
