//! Playing a session on a running QEMU: the thin process plumbing.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::checks::{step_name, Sent};
use super::data::{Input, Scenario, Step, Upload};
use crate::link::com2;
use crate::link::console::{connect, prompt_end, ready, receive, transcript, transcript_len, wait_for, Received};
use crate::machine::outcome::Ended;
use crate::machine::process;

/// What a session leaves behind for the judge.
pub struct Driven {
    pub ended: Ended,
    pub took: Duration,
    pub transcript: String,
    pub sent: Vec<Sent>,
    /// Waits that timed out or uploads that got no reply; the checks then
    /// fail too, this says where.
    pub problems: Vec<String>,
}

/// The COM2 side of a session that uploads.
pub struct Com2<'a> {
    /// QEMU's listening socket for the guest's COM2.
    pub socket: &'a Path,
    /// One frame per upload step, in order ([`super::upload::frames`]).
    pub frames: &'a [Vec<u8>],
    /// What was pushed and what came back, for post-mortems.
    pub log: &'a Path,
}

/// How long the shell may take to answer one step (a whole boot for the
/// first prompt); TCG answers in milliseconds, but runs share the host.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
const BOOT_TIMEOUT: Duration = Duration::from_secs(40);
/// From `finish` to QEMU's exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs QEMU (`command`, whose COM1 is the server socket `socket`, and
/// COM2 `com2`'s when the scenario uploads), plays the scenario, copies
/// everything received on COM1 to `serial_log`.
pub fn drive(
    scenario: &Scenario,
    command: &mut Command,
    socket: &Path,
    com2: Option<&Com2>,
    output: &Path,
    serial_log: &Path,
) -> io::Result<Driven> {
    let start = Instant::now();
    // Killed by the guard if anything below returns early.
    let mut child = process::spawn_logged(command, output)?;
    let stream = connect(socket, &mut child)?;
    let (received, reader) = receive(&stream, serial_log)?;
    let mut writer = stream;
    let mut play = Play { received: &received, problems: Vec::new(), sent: Vec::new(), uplink: None };
    let mut alive = wait_for(&received, BOOT_TIMEOUT, ready).is_some();
    if !alive {
        play.problems.push(format!("no prompt within {} s of starting", BOOT_TIMEOUT.as_secs()));
    }
    let mut frames = com2.iter().flat_map(|c| c.frames.iter());
    for (i, step) in scenario.steps.iter().enumerate() {
        if !alive {
            break;
        }
        alive = match step.input {
            Input::Keys(keys) => play.typed(&mut writer, i, step, keys)?,
            Input::Upload(u) => match (com2, frames.next()) {
                (Some(com2), Some(frame)) => play.uploaded(com2, i, step, &u, frame)?,
                _ => {
                    play.problems.push(format!("{}: no COM2 frame prepared", step_name(i, step)));
                    false
                }
            },
        };
    }
    if alive {
        writer.write_all(scenario.finish)?;
    }
    let ended = child.wait_until(Instant::now() + if alive { EXIT_TIMEOUT } else { Duration::ZERO })?;
    // The socket closed with QEMU, so the reader has seen everything.
    let _ = reader.join();
    let Play { problems, sent, .. } = play;
    Ok(Driven { ended, took: start.elapsed(), transcript: transcript(&received), sent, problems })
}

/// A session being played: what was sent and what went wrong so far.
struct Play<'a> {
    received: &'a Received,
    problems: Vec<String>,
    sent: Vec<Sent>,
    /// COM2, connected at the first upload: QEMU listens from its start,
    /// and by then the guest has long set up COM2. The log beside it.
    uplink: Option<(UnixStream, File)>,
}

impl Play<'_> {
    /// Types step `i`'s keys; whether the shell answered in time.
    fn typed(&mut self, writer: &mut UnixStream, i: usize, step: &Step, keys: &[u8]) -> io::Result<bool> {
        let from = transcript_len(self.received);
        self.sent.push(Sent::Typed(from));
        writer.write_all(keys)?;
        if wait_for(self.received, STEP_TIMEOUT, |t| prompt_end(t, from, step.prompts)).is_none() {
            self.problems.push(format!("{}: no prompt within {} s", step_name(i, step), STEP_TIMEOUT.as_secs()));
            return Ok(false);
        }
        Ok(true)
    }

    /// Pushes step `i`'s frame on COM2; whether the loader replied.
    fn uploaded(&mut self, com2: &Com2, i: usize, step: &Step, upload: &Upload, frame: &[u8]) -> io::Result<bool> {
        if self.uplink.is_none() {
            match UnixStream::connect(com2.socket) {
                Ok(s) => self.uplink = Some((s, File::create(com2.log)?)),
                Err(e) => {
                    self.problems.push(format!("{}: cannot connect to COM2: {e}", step_name(i, step)));
                    return Ok(false);
                }
            }
        }
        let (stream, log) = self.uplink.as_mut().expect("connected above");
        writeln!(log, "> {} ({} bytes)", upload.describe(), frame.len())?;
        match com2::push(stream, frame) {
            Ok(lines) => {
                for l in &lines {
                    writeln!(log, "< {l}")?;
                }
                self.sent.push(Sent::Uploaded(lines.join("\r\n")));
                Ok(true)
            }
            Err(e) => {
                writeln!(log, "! {e}")?;
                self.problems.push(format!("{}: {e}", step_name(i, step)));
                Ok(false)
            }
        }
    }
}
