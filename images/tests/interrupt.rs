//! Ctrl-C to the runner leaves no emulator running.
//!
//! The test binary runs itself a second time as a stand-in runner (the
//! `probe` test, which does something only when `PROBE` is set): it starts
//! a stand-in emulator (`sleep 600`) through the runner's spawn path and
//! waits. The outer test interrupts it with SIGINT, as Ctrl-C would, and
//! checks that the stand-in emulator is gone with it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use images::machine::process::{Group, Guard};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const PROBE: &str = "MODVISOR_INTERRUPT_PROBE";

/// Whether `pid` is a live process: in /proc and not a zombie (the killed
/// emulator's parent is gone, and whoever adopted it may reap it late).
fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))
}

fn wait_while(deadline: Duration, mut busy: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while busy() && Instant::now() < end {
        thread::sleep(Duration::from_millis(20));
    }
}

/// The stand-in runner; a no-op unless the outer test started it.
#[test]
fn probe() {
    if std::env::var_os(PROBE).is_none() {
        return;
    }
    let emulator = Guard::spawn(Command::new("sleep").arg("600"), Group::Own).unwrap();
    println!("emulator pid {}", emulator.id());
    thread::sleep(Duration::from_secs(600));
}

#[test]
fn ctrl_c_to_the_runner_kills_its_emulators() {
    let mut runner = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "probe", "--nocapture", "--test-threads=1"])
        .env(PROBE, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(runner.stdout.take().unwrap()).lines();
    let emulator: i32 = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.split_once("emulator pid ").and_then(|(_, pid)| pid.trim().parse().ok()))
        .expect("the probe printed its emulator's pid");
    assert!(alive(emulator));
    kill(Pid::from_raw(runner.id() as i32), Signal::SIGINT).unwrap();
    wait_while(Duration::from_secs(10), || runner.try_wait().unwrap().is_none());
    let status = runner.try_wait().unwrap();
    if status.is_none() {
        runner.kill().unwrap();
    }
    // The handler killed the group before exiting; the kill may take a
    // moment to land.
    wait_while(Duration::from_secs(5), || alive(emulator));
    let survived = alive(emulator);
    if survived {
        let _ = kill(Pid::from_raw(emulator), Signal::SIGKILL);
    }
    assert!(!survived, "the emulator (pid {emulator}) outlived the interrupted runner");
    assert_eq!(status.and_then(|s| s.code()), Some(130), "the runner exits 130 on SIGINT");
}
