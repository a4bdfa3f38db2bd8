//! Physical CPU hotplug from the host: `runner cpu-add` / `runner cpu-del`
//! against the image `runner run` is running, and the QMP-driven test runs
//! (`acpihp-q35`, `acpihp-pc`) that boot the `acpihp` image with COM1 on a
//! socket and QMP on another, and answer its handshake lines:
//!
//! | image prints                      | runner does                          |
//! |-----------------------------------|--------------------------------------|
//! | `acpihp: ready for device_add`    | device_add into a free slot          |
//! | `acpihp: ready for device_del`    | checks query-cpus-fast and _OST, device_del |
//! | (the image exits)                 | checks DEVICE_DELETED and _OST       |
//!
//! The in-image side is the loader's `acpihp` suite. The cpuhp plugin's
//! runs (`cpuhp-qmp-q35`, `cpuhp-qmp-pc`) play [`crate::cpuhp_qmp`]
//! instead: QMP operations and shell commands, checked against a model.

use std::ffi::OsString;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cpuhp_qmp;
use crate::emulator::Accel;
use crate::layout::{Machine, QemuLayout};
use crate::outcome::Ended;
use crate::outcome::Outcome;
use crate::qmp::{self, Qmp};
use crate::session::{self, Received};
use crate::{swap, Error, Result};
use loader_core::power::exit::Status;

/// One QMP-driven run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HotplugScenario {
    pub name: &'static str,
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
    /// ([`crate::cpuhp_qmp`], its plan for the accelerator); the runner
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
}

/// Both machines whose blocks differ (0x0cd8 vs 0xaf00), from two CPUs
/// of four.
pub const HOTPLUG_SCENARIOS: &[HotplugScenario] = &[
    HotplugScenario {
        name: "acpihp-q35",
        image: "acpihp",
        layout: QemuLayout::new(Machine::Q35, 2, 4, 128),
        script: Script::Handshake,
    },
    HotplugScenario {
        name: "acpihp-pc",
        image: "acpihp",
        layout: QemuLayout::new(Machine::Pc, 2, 4, 128),
        script: Script::Handshake,
    },
    HotplugScenario {
        name: "cpuhp-qmp-q35",
        image: "cpuhp-qmp",
        layout: QemuLayout::new(Machine::Q35, 2, cpuhp_qmp::MAX_CPUS, 128),
        script: Script::Cpuhp,
    },
    HotplugScenario {
        name: "cpuhp-qmp-pc",
        image: "cpuhp-qmp",
        layout: QemuLayout::new(Machine::Pc, 2, cpuhp_qmp::MAX_CPUS, 128),
        script: Script::Cpuhp,
    },
];

/// The device id the scenario gives its CPU.
const CPU_ID: &str = "acpihp-cpu";
const BOOT_TIMEOUT: Duration = Duration::from_secs(40);
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// _OST reports QEMU must have seen: insertion success (Device Check, 0)
/// and ejection success (Eject Processing 0x103, 0).
pub const OST_INSERTED: (u64, u64) = (0x01, 0);
pub const OST_EJECTED: (u64, u64) = (0x103, 0);
/// An eject request refused: device busy (Eject Request 0x03, 0x82).
pub const OST_EJECT_REFUSED: (u64, u64) = (0x03, 0x82);
/// Insertion failed (Device Check, driver load failure 0x81).
pub const OST_INSERT_FAILED: (u64, u64) = (0x01, 0x81);

/// The `-qmp` arguments for a server on `socket` that does not wait.
pub fn qmp_args(socket: &Path) -> Vec<OsString> {
    vec!["-qmp".into(), format!("unix:{},server=on,wait=off", socket.display()).into()]
}

/// What a driven run leaves for the judge.
pub struct Driven {
    pub ended: Ended,
    pub took: Duration,
    pub transcript: String,
    pub problems: Vec<String>,
}

/// Waits for `line` on COM1; records a problem when it does not come.
fn expect_line(received: &Received, line: &str, timeout: Duration, problems: &mut Vec<String>) -> bool {
    let found = session::wait_for(received, timeout, |t| t.find(line)).is_some();
    if !found {
        problems.push(format!("no `{line}` within {} s", timeout.as_secs()));
    }
    found
}

/// Runs QEMU (`command`: COM1 on `serial_socket`, QMP on `qmp_socket`)
/// and plays the hot-add / eject handshake.
pub fn drive(
    script: Script,
    accel: Accel,
    command: &mut Command,
    serial_socket: &Path,
    qmp_socket: &Path,
    output: &Path,
    serial_log: &Path,
) -> Result<Driven> {
    let out = std::fs::File::create(output).map_err(|e| Error::io("creating the emulator output", e))?;
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| Error::io("emulator output", e))?)
        .stderr(out)
        .spawn()
        .map_err(|e| Error::io("starting QEMU", e))?;
    let mut problems = Vec::new();
    let r = match script {
        Script::Handshake => play(&mut child, serial_socket, qmp_socket, serial_log, &mut problems),
        Script::Cpuhp => {
            play_cpuhp(&mut child, serial_socket, qmp_socket, serial_log, &cpuhp_qmp::plan_for(accel), &mut problems)
        }
    };
    // QEMU ends by itself when the image exits; a run that went wrong
    // before that is stopped here.
    let deadline = Instant::now() + if r.is_ok() && problems.is_empty() { STEP_TIMEOUT } else { Duration::ZERO };
    let ended = loop {
        if let Some(status) = child.try_wait().map_err(|e| Error::io("waiting for QEMU", e))? {
            break crate::emulator::ended(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break Ended::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let transcript = match r {
        Ok((received, reader)) => {
            let _ = reader.join();
            let t = String::from_utf8_lossy(&received.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
            t
        }
        Err(e) => {
            problems.push(e.to_string());
            crate::read_lossy(serial_log)
        }
    };
    Ok(Driven { ended, took: start.elapsed(), transcript, problems })
}

type Playing = (Received, std::thread::JoinHandle<()>);

fn play_cpuhp(
    child: &mut Child,
    serial_socket: &Path,
    qmp_socket: &Path,
    serial_log: &Path,
    plan: &cpuhp_qmp::Plan,
    problems: &mut Vec<String>,
) -> Result<Playing> {
    let stream: UnixStream = session::connect(serial_socket, child).map_err(|e| Error::io("connecting to COM1", e))?;
    let (received, reader) = session::receive(&stream, serial_log).map_err(|e| Error::io("reading COM1", e))?;
    let mut q = Qmp::connect(qmp_socket, STEP_TIMEOUT)?;
    problems.extend(cpuhp_qmp::play(&stream, &received, &mut q, plan)?);
    Ok((received, reader))
}

fn play(
    child: &mut Child,
    serial_socket: &Path,
    qmp_socket: &Path,
    serial_log: &Path,
    problems: &mut Vec<String>,
) -> Result<Playing> {
    let stream: UnixStream = session::connect(serial_socket, child).map_err(|e| Error::io("connecting to COM1", e))?;
    let (received, reader) = session::receive(&stream, serial_log).map_err(|e| Error::io("reading COM1", e))?;
    let mut q = Qmp::connect(qmp_socket, STEP_TIMEOUT)?;
    if !expect_line(&received, "acpihp: ready for device_add", BOOT_TIMEOUT, problems) {
        return Ok((received, reader));
    }
    let (driver, props) = qmp::free_slot(&q.execute("query-hotpluggable-cpus", json!({}))?)
        .ok_or_else(|| Error::Qmp("no free CPU slot".into()))?;
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

/// The QMP socket of `runner run`.
pub fn qmp_socket() -> PathBuf {
    swap::run_dir().join("qmp.sock")
}

fn connect_run() -> Result<Qmp> {
    let socket = qmp_socket();
    Qmp::connect(&socket, Duration::ZERO)
        .map_err(|e| Error::Environment(format!("{e}; start the image with `make run` first")))
}

/// `runner cpu-add`: hot-adds a CPU of the boot CPUs' model into the
/// lowest free slot, with `features` (`"sse4.2": false, ...`) on top.
pub fn cpu_add_command(features: &str) -> Result<ExitCode> {
    let mut q = connect_run()?;
    let (driver, props) = qmp::free_slot(&q.execute("query-hotpluggable-cpus", json!({}))?)
        .ok_or_else(|| Error::Qmp("no free CPU slot (all of maxcpus are in)".into()))?;
    let socket_id = props.get("socket-id").and_then(|v| v.as_u64()).unwrap_or(0);
    let id = format!("cpu{socket_id}");
    let args = qmp::device_add_args(&driver, &props, &id, features)?;
    println!("cpu-add: device_add {args}");
    q.execute("device_add", args)?;
    let ost = q.wait_event(Duration::from_secs(5), |e| !qmp::ost_reports(std::slice::from_ref(e)).is_empty())?;
    report_ost(&q, ost, &id);
    Ok(ExitCode::SUCCESS)
}

/// `runner cpu-del --cpu N`: asks the guest to give back the CPU whose
/// QEMU cpu-index is N (its socket, and with the default topology its
/// APIC id and modvisor's cpu number).
pub fn cpu_del_command(cpu: u64) -> Result<ExitCode> {
    let mut q = connect_run()?;
    let cpus = qmp::cpus(&q.execute("query-cpus-fast", json!({}))?);
    let (_, path) = cpus.iter().find(|(i, _)| *i == cpu).ok_or_else(|| {
        Error::Usage(format!(
            "cpu-del: QEMU has no cpu {cpu}; it has {:?}",
            cpus.iter().map(|c| c.0).collect::<Vec<_>>()
        ))
    })?;
    println!("cpu-del: device_del {path}");
    q.execute("device_del", json!({ "id": path }))?;
    let done = q.wait_event(Duration::from_secs(5), |e| {
        e["event"] == "DEVICE_DELETED" || !qmp::ost_reports(std::slice::from_ref(e)).is_empty()
    })?;
    report_ost(&q, done, path);
    Ok(ExitCode::SUCCESS)
}

fn report_ost(q: &Qmp, seen: bool, what: &str) {
    if !seen {
        println!("cpu: the guest has not answered for {what} within 5 s (no CPU hotplug handler loaded?)");
    }
    for e in &q.events {
        println!("qemu event: {e}");
    }
}
