//! One run: boot the image (or play its session or QMP scenario) in its
//! emulator and layout, judge what it printed, and gather the details a
//! failure report shows.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::builder::{make_iso, Image};
use crate::commands::{Error, Result};
use crate::machine::bochs::{prepare_bochs, BOCHS};
use crate::machine::layout::{QemuLayout, Target};
use crate::machine::qemu::{com2_serial_arg, qemu_args, qmp_args, Accel, Qemu, QemuBoot};
use crate::machine::{fresh_run_dir, process, Serial};
use crate::scenarios;
use crate::scenarios::cpuhp_qmp;
use crate::scenarios::hotplug::{self, HotplugScenario, Script};
use crate::scenarios::session::data::Scenario;
use crate::scenarios::session::{checks, drive, upload};
use crate::{last_lines, out_dir, read_lossy, shown};

use super::{judge, Kind, Run, Verdict};

/// How many serial lines a failure report shows.
const TAIL_LINES: usize = 40;

/// What one finished run reports.
pub(super) struct Finished {
    pub(super) passed: bool,
    pub(super) seconds: f64,
    /// Why it failed: problems, serial tail, emulator output.
    pub(super) details: Vec<String>,
}

/// What every run of one `runner test` shares.
#[derive(Clone, Copy, Debug)]
pub struct Setting<'a> {
    pub accel: Accel,
    /// The QEMU of every QEMU run; `None` when the plan has none (only
    /// Bochs), so that such a plan needs no QEMU.
    pub qemu: Option<&'a Qemu>,
    /// Replaces the cpuhp QMP scenario's seed (`--seed`).
    pub seed: Option<u64>,
}

impl Setting<'_> {
    fn qemu(&self) -> Result<&Qemu> {
        self.qemu.ok_or_else(|| Error::Environment("a QEMU run was planned without a QEMU".into()))
    }
}

/// Boots one run and judges it. Failing to even start the emulator is a
/// failed run, not an error that stops the others.
pub(super) fn execute(run: &Run, setting: Setting) -> Finished {
    boot(run, setting).unwrap_or_else(|e| Finished { passed: false, seconds: 0.0, details: vec![e.to_string()] })
}

fn boot(run: &Run, setting: Setting) -> Result<Finished> {
    let image = Image::of(run.recipe.name);
    let dir = fresh_run_dir(&run.dir_name())?;
    let serial_path = dir.join("serial.log");
    let output = dir.join("emulator.out");
    if let (Kind::Session(scenario), Target::Qemu(layout)) = (run.kind, run.target) {
        return play(run, scenario, &image, layout, setting, &serial_path, &output);
    }
    if let (Kind::Hotplug(scenario), Target::Qemu(layout)) = (run.kind, run.target) {
        return play_hotplug(run, scenario, &image, layout, setting, &serial_path, &output);
    }
    let accel = setting.accel;
    let mut command = match run.target {
        Target::Qemu(layout) => {
            let cmdline = image.cmdline()?;
            let mut c = setting.qemu()?.command();
            c.args(qemu_args(&QemuBoot {
                reboots: run.recipe.reboots(),
                ..image.qemu_boot(&cmdline, layout, accel, Serial::File(&serial_path))
            }));
            c
        }
        Target::Bochs(machine) => {
            let iso = match run.kind {
                Kind::Seeded(seed) => {
                    let iso = dir.join("boot.iso");
                    make_iso(&image, &format!("{} seed={seed}", image.cmdline()?), &iso)?;
                    iso
                }
                _ => image.iso.clone(),
            };
            let mut c = Command::new(BOCHS);
            c.args(prepare_bochs(&dir, &iso, machine, Serial::File(&serial_path))?);
            c
        }
    };
    let program = command.get_program().to_string_lossy().into_owned();
    let (ended, took) = process::run_with_deadline(&mut command, &output, run.recipe.timeout(&run.target))
        .map_err(|e| Error::io(format!("running {program}"), e))?;
    let serial = read_lossy(&serial_path);
    let mut verdict = judge(run, ended, &serial);
    if let (Kind::Seeded(seed), false) = (run.kind, verdict.passed()) {
        verdict.problems.insert(0, replay_note(run.name(), seed));
    }
    Ok(finished(verdict, took.as_secs_f64(), &serial, &serial_path, &output))
}

fn finished(verdict: Verdict, seconds: f64, serial: &str, serial_path: &Path, output: &Path) -> Finished {
    let details = if verdict.passed() { Vec::new() } else { failure_details(&verdict, serial, serial_path, output) };
    Finished { passed: verdict.passed(), seconds, details }
}

/// A unix socket for `port` of the run of `scenario`. Socket paths are
/// limited to about 100 bytes, which a deep workspace could exceed; the
/// temporary directory is short.
fn run_socket(scenario: &str, port: &str) -> PathBuf {
    std::env::temp_dir().join(format!("modvisor-{}-{scenario}-{port}.sock", std::process::id()))
}

/// Boots `image` with COM1 on a socket and plays `scenario` on it.
fn play(
    run: &Run,
    scenario: &Scenario,
    image: &Image,
    layout: QemuLayout,
    setting: Setting,
    serial_path: &Path,
    output: &Path,
) -> Result<Finished> {
    let (socket, com2_socket) = (run_socket(scenario.name, "com1"), run_socket(scenario.name, "com2"));
    let frames = if scenario.uploads() {
        let read = |path: &str| {
            let file = out_dir().join(path);
            std::fs::read(&file).map_err(|e| scenarios::Error::io(format!("reading {}", file.display()), e))
        };
        upload::prepare(scenario, read, &upload::throwaway_key()?)?
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
    let mut command = setting.qemu()?.command();
    command.args(qemu_args(&QemuBoot {
        com2: com2.as_ref().map(|_| com2_arg.as_str()),
        ..image.qemu_boot(&cmdline, layout, setting.accel, Serial::Socket(&socket))
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
    setting: Setting,
    serial_path: &Path,
    output: &Path,
) -> Result<Finished> {
    let (serial, qmp) = (run_socket(scenario.name, "com1"), run_socket(scenario.name, "qmp"));
    let _ = std::fs::remove_file(&serial);
    let _ = std::fs::remove_file(&qmp);
    let cmdline = image.cmdline()?;
    let mut command = setting.qemu()?.command();
    command.args(qemu_args(&image.qemu_boot(&cmdline, layout, setting.accel, Serial::Socket(&serial))));
    command.args(qmp_args(&qmp));
    let plan = cpuhp_qmp::plan_for(setting.accel, setting.seed);
    let driven = hotplug::drive(scenario.script, &plan, &mut command, &serial, &qmp, output, serial_path);
    let _ = std::fs::remove_file(&serial);
    let _ = std::fs::remove_file(&qmp);
    let driven = driven?;
    let mut verdict = judge(run, driven.ended, &driven.transcript);
    verdict.problems.extend(driven.problems);
    if scenario.script == Script::Cpuhp && !verdict.passed() {
        verdict.problems.insert(0, replay_note(scenario.name, plan.seed));
    }
    Ok(finished(verdict, driven.took.as_secs_f64(), &driven.transcript, serial_path, output))
}

/// How to play the cpuhp scenario's operations again.
pub(super) fn replay_note(name: &str, seed: u64) -> String {
    format!("seed {seed}: `runner test --filter {name} --seed {seed}` plays the same operations")
}

pub(super) fn failure_details(verdict: &Verdict, serial: &str, serial_path: &Path, output: &Path) -> Vec<String> {
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
