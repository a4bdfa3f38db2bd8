//! The QMP-driven test runs (`acpihp-q35`, `acpihp-pc`) that boot the
//! `acpihp` image with COM1 on a socket and QMP on another, and answer its
//! handshake lines:
//!
//! | image prints                      | runner does                          |
//! |-----------------------------------|--------------------------------------|
//! | `acpihp: ready for device_add`    | device_add into a free slot          |
//! | `acpihp: ready for device_del`    | checks query-cpus-fast and _OST, device_del |
//! | (the image exits)                 | checks DEVICE_DELETED and _OST       |
//!
//! The in-image side is the loader's `acpihp` suite. The cpuhp plugin's
//! runs (`cpuhp-qmp-q35`, `cpuhp-qmp-pc`) play [`super::cpuhp_qmp`]
//! instead: QMP operations and shell commands, checked against a model.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use loader_core::power::exit::Status;
use serde_json::json;

use super::{cpuhp_qmp, Error, Result};
use crate::link::console::{self, Received};
use crate::link::qmp::{self, Qmp, OST_EJECTED, OST_INSERTED};
use crate::machine::layout::{Machine, QemuLayout};
use crate::machine::outcome::{Ended, Outcome};
use crate::machine::process::{self, Guard};
use crate::machine::qemu::{self, Accel};

/// One QMP-driven run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HotplugScenario {
    pub name: &'static str,
    /// One line for `runner test --help`.
    pub about: &'static str,
    pub image: &'static str,
    pub layout: QemuLayout,
    pub script: Script,
}

/// What the runner plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// The loader's `acpihp` suite's handshake; the image passes.
    Handshake,
    /// cpuhp's physical hotplug through QMP and the shell
    /// ([`super::cpuhp_qmp`], its plan for the accelerator); the runner
    /// powers the image off.
    Cpuhp,
}

impl HotplugScenario {
    pub fn expect(&self) -> Outcome {
        match self.script {
            Script::Handshake => Outcome::Exited(Status::Pass),
            Script::Cpuhp => Outcome::Exited(Status::PowerOff),
        }
    }

    /// The CPU hot-adds the run makes with `accel` and `seed` (the cpuhp
    /// scenario's; the handshake adds one CPU).
    pub fn hot_adds(&self, accel: Accel, seed: Option<u64>) -> usize {
        match self.script {
            Script::Handshake => 1,
            Script::Cpuhp => {
                let ops = cpuhp_qmp::model::operations(&cpuhp_qmp::plan_for(accel, seed));
                cpuhp_qmp::model::plug_events(0, &ops)
            }
        }
    }

    /// Refuses the run before QEMU starts if it plugs more CPUs than the
    /// layout's QEMU can create ([`qemu::check_plug_events`]).
    pub fn check_plug_events(&self, accel: Accel, seed: Option<u64>) -> Result<()> {
        Ok(qemu::check_plug_events(self.name, accel, &self.layout, self.hot_adds(accel, seed))?)
    }
}

/// Both machines whose blocks differ (0x0cd8 vs 0xaf00), from two CPUs:
/// of four for the handshake, of [`cpuhp_qmp::MAX_CPUS`] for cpuhp's
/// scenario, whose hot-adds after ejects need room under TCG.
pub const HOTPLUG_SCENARIOS: &[HotplugScenario] = &[
    HotplugScenario {
        name: "acpihp-q35",
        about: "the `acpihp` suite's CPU hot-add and eject over QMP, q35 (block at 0x0cd8)",
        image: "acpihp",
        layout: QemuLayout::new(Machine::Q35, 2, 4, 128),
        script: Script::Handshake,
    },
    HotplugScenario {
        name: "acpihp-pc",
        about: "the `acpihp` suite's CPU hot-add and eject over QMP, pc (block at 0xaf00)",
        image: "acpihp",
        layout: QemuLayout::new(Machine::Pc, 2, 4, 128),
        script: Script::Handshake,
    },
    HotplugScenario {
        name: "cpuhp-qmp-q35",
        about: "cpuhp through QMP and the shell, checked against a model, q35",
        image: "cpuhp-qmp",
        layout: QemuLayout::new(Machine::Q35, 2, cpuhp_qmp::MAX_CPUS, 128),
        script: Script::Cpuhp,
    },
    HotplugScenario {
        name: "cpuhp-qmp-pc",
        about: "cpuhp through QMP and the shell, checked against a model, pc",
        image: "cpuhp-qmp",
        layout: QemuLayout::new(Machine::Pc, 2, cpuhp_qmp::MAX_CPUS, 128),
        script: Script::Cpuhp,
    },
];

/// The device id the scenario gives its CPU.
const CPU_ID: &str = "acpihp-cpu";
const BOOT_TIMEOUT: Duration = Duration::from_secs(40);
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// What a driven run leaves for the judge.
pub struct Driven {
    pub ended: Ended,
    pub took: Duration,
    pub transcript: String,
    pub problems: Vec<String>,
}

/// Waits for `line` on COM1; records a problem when it does not come.
fn expect_line(received: &Received, line: &str, timeout: Duration, problems: &mut Vec<String>) -> bool {
    let found = console::wait_for(received, timeout, |t| t.find(line)).is_some();
    if !found {
        problems.push(format!("no `{line}` within {} s", timeout.as_secs()));
    }
    found
}

/// Runs QEMU (`command`: COM1 on `serial_socket`, QMP on `qmp_socket`)
/// and plays the hot-add / eject handshake.
/// `plan` is what the cpuhp script plays (the handshake has no plan).
pub fn drive(
    script: Script,
    plan: &cpuhp_qmp::Plan,
    command: &mut Command,
    serial_socket: &Path,
    qmp_socket: &Path,
    output: &Path,
    serial_log: &Path,
) -> Result<Driven> {
    let start = Instant::now();
    // Killed by the guard if anything below returns early.
    let mut child = process::spawn_logged(command, output).map_err(|e| Error::io("starting QEMU", e))?;
    let mut problems = Vec::new();
    let r = match script {
        Script::Handshake => play(&mut child, serial_socket, qmp_socket, serial_log, &mut problems),
        Script::Cpuhp => play_cpuhp(&mut child, serial_socket, qmp_socket, serial_log, plan, &mut problems),
    };
    // QEMU ends by itself when the image exits; a run that went wrong
    // before that is stopped here.
    let deadline = Instant::now() + if r.is_ok() && problems.is_empty() { STEP_TIMEOUT } else { Duration::ZERO };
    let ended = child.wait_until(deadline).map_err(|e| Error::io("waiting for QEMU", e))?;
    let transcript = match r {
        Ok((received, reader)) => {
            let _ = reader.join();
            console::transcript(&received)
        }
        Err(e) => {
            problems.push(e.to_string());
            crate::read_lossy(serial_log)
        }
    };
    Ok(Driven { ended, took: start.elapsed(), transcript, problems })
}

type Playing = (Received, JoinHandle<()>);

fn play_cpuhp(
    child: &mut Guard,
    serial_socket: &Path,
    qmp_socket: &Path,
    serial_log: &Path,
    plan: &cpuhp_qmp::Plan,
    problems: &mut Vec<String>,
) -> Result<Playing> {
    let stream: UnixStream = console::connect(serial_socket, child).map_err(|e| Error::io("connecting to COM1", e))?;
    let (received, reader) = console::receive(&stream, serial_log).map_err(|e| Error::io("reading COM1", e))?;
    let mut q = Qmp::connect(qmp_socket, STEP_TIMEOUT)?;
    problems.extend(cpuhp_qmp::play::play(&stream, &received, &mut q, plan)?);
    Ok((received, reader))
}

fn play(
    child: &mut Guard,
    serial_socket: &Path,
    qmp_socket: &Path,
    serial_log: &Path,
    problems: &mut Vec<String>,
) -> Result<Playing> {
    let stream: UnixStream = console::connect(serial_socket, child).map_err(|e| Error::io("connecting to COM1", e))?;
    let (received, reader) = console::receive(&stream, serial_log).map_err(|e| Error::io("reading COM1", e))?;
    let mut q = Qmp::connect(qmp_socket, STEP_TIMEOUT)?;
    if !expect_line(&received, "acpihp: ready for device_add", BOOT_TIMEOUT, problems) {
        return Ok((received, reader));
    }
    let (driver, props) = qmp::free_slot(&q.execute("query-hotpluggable-cpus", json!({}))?)
        .ok_or_else(|| Error::Script("no free CPU slot".into()))?;
    q.execute("device_add", qmp::device_add_args(&driver, &props, CPU_ID, "")?)?;
    if !expect_line(&received, "acpihp: ready for device_del", STEP_TIMEOUT, problems) {
        return Ok((received, reader));
    }
    let n = qmp::cpus(&q.execute("query-cpus-fast", json!({}))?).len();
    if n != 3 {
        problems.push(format!("query-cpus-fast lists {n} CPUs after the hot-add, not 3"));
    }
    if !q.wait_event(STEP_TIMEOUT, |e| qmp::ost_reports(std::slice::from_ref(e)) == [OST_INSERTED])? {
        problems.push(format!("no _OST {OST_INSERTED:x?} (insertion success) from the guest"));
    }
    q.execute("device_del", json!({ "id": CPU_ID }))?;
    if !q.wait_event(STEP_TIMEOUT, |e| qmp::is_deleted(e, CPU_ID))? {
        problems.push(format!("QEMU never reported DEVICE_DELETED for `{CPU_ID}`: the guest did not eject it"));
    }
    if !q.wait_event(STEP_TIMEOUT, |e| qmp::ost_reports(std::slice::from_ref(e)) == [OST_EJECTED])? {
        problems.push(format!("no _OST {OST_EJECTED:x?} (ejection success) from the guest"));
    }
    Ok((received, reader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine;

    #[test]
    fn every_planned_run_fits_its_plug_budget() {
        for s in HOTPLUG_SCENARIOS {
            for accel in [Accel::Tcg, Accel::Kvm] {
                s.check_plug_events(accel, None).unwrap();
            }
        }
        let cpuhp = HOTPLUG_SCENARIOS.iter().find(|s| s.name == "cpuhp-qmp-q35").unwrap();
        let adds = cpuhp.hot_adds(Accel::Tcg, None);
        assert!(adds > 6, "the scenario hot-adds again after ejects: {adds}");
        assert_eq!(HOTPLUG_SCENARIOS[0].hot_adds(Accel::Tcg, None), 1);
    }

    #[test]
    fn a_scenario_on_too_few_slots_is_refused_before_qemu_starts() {
        // The cpuhp scenario on the handshake's `-smp 2,maxcpus=4`.
        let small = HotplugScenario { layout: HOTPLUG_SCENARIOS[0].layout, ..HOTPLUG_SCENARIOS[2] };
        let adds = small.hot_adds(Accel::Tcg, Some(5));
        let e = small.check_plug_events(Accel::Tcg, Some(5)).unwrap_err();
        assert!(matches!(e, Error::Machine(machine::Error::PlugBudget(_))), "{e:?}");
        let e = e.to_string();
        let sum = format!("cpuhp-qmp-q35: plans 2 boot CPUs + {adds} hot-adds = {} CPU plug events", adds + 2);
        assert!(e.starts_with(&sum) && e.contains("maxcpus = 4"), "{e}");
        assert!(small.check_plug_events(Accel::Kvm, Some(5)).is_ok());
    }
}
