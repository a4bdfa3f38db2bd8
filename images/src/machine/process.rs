//! Emulator processes that cannot outlive the runner.
//!
//! Every emulator is started through [`Guard::spawn`], which registers it
//! in one process-wide table. A guard kills and reaps its process when it
//! is dropped, so an early `?` after the spawn stops the emulator too; and
//! the runner's SIGINT/SIGTERM/SIGHUP handler kills everything in the table
//! before the runner exits, so Ctrl-C stops them as well.
//!
//! A registered pid is only ever signalled while the table's lock is held,
//! and a guard reaps its process only under that lock and takes it out of
//! the table in the same breath; so the handler never signals a pid that
//! was reaped and could have been reused.

use std::fs::File;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, Once, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::outcome::Ended;

/// Which process group an emulator runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// A group of its own: Ctrl-C on the terminal reaches only the runner,
    /// whose handler then kills the whole group (with anything the
    /// emulator started), instead of racing the emulator's own handling.
    Own,
    /// The runner's, which is the terminal's foreground group: an emulator
    /// that reads the terminal (`runner run`, `runner bochs`) must be in it,
    /// or its reads stop it with SIGTTIN.
    Terminal,
}

/// A running emulator, as the signal handler needs it.
#[derive(Clone, Copy, Debug)]
struct Entry {
    pid: u32,
    group: Group,
}

/// Every emulator that was spawned and not yet reaped.
static RUNNING: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
static HANDLER: Once = Once::new();

/// How often waits look at the process again: far below any deadline.
const POLL: Duration = Duration::from_millis(20);

fn running() -> MutexGuard<'static, Vec<Entry>> {
    // A thread that panicked while holding the lock left the table as it
    // was; the pids in it are still the ones to kill.
    RUNNING.lock().unwrap_or_else(|e| e.into_inner())
}

/// SIGKILL to the emulator (its whole group if it has one). Errors mean it
/// is gone already, which the reaping wait settles either way.
fn signal(entry: Entry) {
    let Ok(raw) = i32::try_from(entry.pid) else { return };
    let pid = Pid::from_raw(raw);
    // Should the group be missing (it lives as long as its leader, even
    // as a zombie), the emulator itself must still go: a wait would hang.
    if entry.group == Group::Terminal || killpg(pid, Signal::SIGKILL).is_err() {
        let _ = kill(pid, Signal::SIGKILL);
    }
}

/// Installs the runner's SIGINT, SIGTERM and SIGHUP handler (once): it
/// kills every registered emulator and exits with status 130. `spawn` calls
/// it; `main` calls it first so that an interrupt during a build behaves
/// the same. Where a panic aborts (the workspace's profiles), no guard is
/// dropped, so a panic hook kills the emulators too.
pub fn install_handler() {
    HANDLER.call_once(|| {
        if let Err(e) = ctrlc::set_handler(on_signal) {
            eprintln!("runner: cannot handle Ctrl-C ({e}); an interrupted run may leave emulators running");
        }
        if cfg!(panic = "abort") {
            let report = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                report(info);
                kill_on_abort();
            }));
        }
    });
}

fn on_signal() {
    // The lock is kept to the end: no guard reaps, and no spawn registers,
    // while the runner is on its way out.
    let table = running();
    table.iter().copied().for_each(signal);
    eprintln!("runner: interrupted; killed {} emulator process(es)", table.len());
    std::process::exit(130);
}

/// Kills every registered emulator before a panic aborts the runner. The
/// panicking thread may hold the lock itself (a panic inside a guard), so
/// the lock is only tried, for a moment.
fn kill_on_abort() {
    for _ in 0..100 {
        match RUNNING.try_lock() {
            Ok(table) => return table.iter().copied().for_each(signal),
            Err(TryLockError::Poisoned(e)) => return e.into_inner().iter().copied().for_each(signal),
            Err(TryLockError::WouldBlock) => thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// An emulator that is killed and reaped when the guard goes away.
#[derive(Debug)]
pub struct Guard {
    child: Child,
    entry: Entry,
    reaped: bool,
}

impl Guard {
    /// Spawns `command` in `group` and registers it for the signal handler.
    pub fn spawn(command: &mut Command, group: Group) -> io::Result<Guard> {
        install_handler();
        if group == Group::Own {
            command.process_group(0);
        }
        // Registered under the lock it was spawned under: the handler sees
        // either no process or a registered one.
        let mut table = running();
        let child = command.spawn()?;
        let entry = Entry { pid: child.id(), group };
        table.push(entry);
        Ok(Guard { child, entry, reaped: false })
    }

    pub fn id(&self) -> u32 {
        self.entry.pid
    }

    /// Takes the reaped process out of the table (the caller holds the lock).
    fn forget(&mut self, table: &mut Vec<Entry>) {
        table.retain(|e| e.pid != self.entry.pid);
        self.reaped = true;
    }

    /// The exit status if the process has ended (and is now reaped).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        let mut table = running();
        let status = self.child.try_wait()?;
        if status.is_some() {
            self.forget(&mut table);
        }
        Ok(status)
    }

    /// Waits for the process to end by itself. Polls rather than blocks,
    /// since a blocking wait would reap outside the lock.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            thread::sleep(POLL);
        }
    }

    /// Kills the process and reaps it.
    pub fn kill(&mut self) -> io::Result<()> {
        if self.reaped {
            return Ok(());
        }
        let mut table = running();
        signal(self.entry);
        self.child.wait()?;
        self.forget(&mut table);
        Ok(())
    }

    /// Waits until the process ends or `deadline` passes; then it is killed
    /// and the run counts as timed out.
    pub fn wait_until(&mut self, deadline: Instant) -> io::Result<Ended> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(ended(status));
            }
            if Instant::now() >= deadline {
                self.kill()?;
                return Ok(Ended::TimedOut);
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Nothing to tell anyone here: a failed kill means the process
        // is gone already.
        let _ = self.kill();
    }
}

pub fn ended(status: ExitStatus) -> Ended {
    match status.code() {
        Some(c) => Ended::Code(c),
        None => Ended::Signal(status.signal().unwrap_or(0)),
    }
}

/// Spawns `command` in its own group with stdin closed and stdout and
/// stderr going to `output`.
pub fn spawn_logged(command: &mut Command, output: &Path) -> io::Result<Guard> {
    let out = File::create(output)?;
    Guard::spawn(command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out), Group::Own)
}

/// Runs `command` (stdin closed, output to `output`) and kills it once
/// `deadline` has passed.
pub fn run_with_deadline(command: &mut Command, output: &Path, deadline: Duration) -> io::Result<(Ended, Duration)> {
    let start = Instant::now();
    let mut child = spawn_logged(command, output)?;
    let ended = child.wait_until(start + deadline)?;
    Ok((ended, start.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Whether `pid` is a live process: in /proc and not a zombie (a
    /// killed grandchild stays one until whoever adopted it reaps it).
    fn exists(pid: u32) -> bool {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The state follows the parenthesised command name.
        stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("modvisor-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn registered(pid: u32) -> bool {
        running().iter().any(|e| e.pid == pid)
    }

    #[test]
    fn deadline_kills_a_hanging_process() {
        let dir = temp_dir("runner-test");
        let out = dir.join("out");
        let (e, took) = run_with_deadline(Command::new("sleep").arg("10"), &out, Duration::from_millis(200)).unwrap();
        assert_eq!(e, Ended::TimedOut);
        assert!(took < Duration::from_secs(5));
        let (e, _) =
            run_with_deadline(Command::new("sh").args(["-c", "echo hi; exit 33"]), &out, Duration::from_secs(10))
                .unwrap();
        assert_eq!(e, Ended::Code(33));
        assert_eq!(fs::read_to_string(&out).unwrap(), "hi\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// What a runner function does between spawning and waiting: anything
    /// that can fail and return early, like connecting to the emulator.
    fn spawn_then_fail(pid: &mut u32) -> io::Result<()> {
        let connect = || Err(io::Error::other("the socket never appeared"));
        let guard = Guard::spawn(Command::new("sleep").arg("600"), Group::Own)?;
        *pid = guard.id();
        assert!(exists(*pid) && registered(*pid));
        connect()?;
        drop(guard);
        Ok(())
    }

    #[test]
    fn an_early_return_after_the_spawn_kills_and_reaps_the_child() {
        let mut pid = 0;
        assert!(spawn_then_fail(&mut pid).is_err());
        assert_ne!(pid, 0);
        assert!(!exists(pid), "sleep 600 (pid {pid}) outlived its guard");
        assert!(!registered(pid));
    }

    #[test]
    fn an_emulators_own_group_is_killed_whole() {
        // The shell is the group leader; its sleep is what an emulator's
        // helper process would be.
        let dir = temp_dir("group-test");
        let pid_file = dir.join("pid");
        let script = format!("sleep 600 & echo $! > {}; wait", pid_file.display());
        let guard = Guard::spawn(Command::new("sh").args(["-c", &script]), Group::Own).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let helper = loop {
            match fs::read_to_string(&pid_file).ok().and_then(|s| s.trim().parse::<u32>().ok()) {
                Some(p) => break p,
                None if Instant::now() < deadline => thread::sleep(POLL),
                None => panic!("the shell never started its sleep"),
            }
        };
        drop(guard);
        // The helper's parent was the shell; once killed, init reaps it.
        let gone = Instant::now() + Duration::from_secs(10);
        while exists(helper) && Instant::now() < gone {
            thread::sleep(POLL);
        }
        let survived = exists(helper);
        if survived {
            let _ = kill(Pid::from_raw(helper as i32), Signal::SIGKILL);
        }
        assert!(!survived, "the emulator's helper (pid {helper}) outlived the group kill");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_process_that_ended_is_reaped_and_forgotten() {
        let mut guard = Guard::spawn(Command::new("true").stdout(Stdio::null()), Group::Terminal).unwrap();
        let pid = guard.id();
        assert_eq!(ended(guard.wait().unwrap()), Ended::Code(0));
        assert!(!registered(pid));
        // Killing what was reaped signals nothing.
        guard.kill().unwrap();
    }
}
