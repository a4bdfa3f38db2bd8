//! Playing a session on a running QEMU: the thin process plumbing.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::checks::{step_name, Sent};
use super::data::{Input, Piece, Scenario, Step, ANSWER_DEADLINE, UNTIL_EVERY};
use super::upload::Prepared;
use crate::link::com2::{BurstReplies, Reply, Uplink, Writing};
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
    /// What each upload or write step sends, in order
    /// ([`super::upload::prepare`]).
    pub frames: &'a [Prepared],
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
    let mut play = Play { received: &received, problems: Vec::new(), sent: Vec::new(), uplink: None, writing: None };
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
            Input::Until(keys, until) => play.typed_until(&mut writer, i, step, keys, until)?,
            Input::Upload(_) | Input::Write(_) => match (com2, frames.next()) {
                (Some(com2), Some(prepared)) => play.uploaded(com2, i, step, prepared)?,
                _ => {
                    play.problems.push(format!("{}: no COM2 frame prepared", step_name(i, step)));
                    false
                }
            },
            Input::Answers => play.answers(i, step)?,
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
    uplink: Option<(Uplink, File)>,
    /// The burst being written: its pieces and how many answers it asks for.
    writing: Option<(Writing, &'static [Piece], usize)>,
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

    /// Types step `i`'s keys until the answer contains `until`; whether
    /// the shell answered each time and `until` came in time. The last
    /// typing is the one checked.
    fn typed_until(
        &mut self,
        writer: &mut UnixStream,
        i: usize,
        step: &Step,
        keys: &[u8],
        until: &str,
    ) -> io::Result<bool> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let from = transcript_len(self.received);
            if !self.typed(writer, i, step, keys)? {
                return Ok(false);
            }
            let shown = wait_for(self.received, Duration::ZERO, |t| t[from..].contains(until).then_some(0)).is_some();
            if shown {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                self.problems.push(format!("{}: no `{until}` within {} s", step_name(i, step), STEP_TIMEOUT.as_secs()));
                return Ok(false);
            }
            self.sent.pop();
            std::thread::sleep(UNTIL_EVERY);
        }
    }

    /// Connects COM2 and opens its log at the first use; whether it is.
    fn connect(&mut self, com2: &Com2, i: usize, step: &Step) -> io::Result<bool> {
        if self.uplink.is_none() {
            let connected = UnixStream::connect(com2.socket)
                .map_err(|e| e.to_string())
                .and_then(|s| Uplink::new(s).map_err(|e| e.to_string()));
            match connected {
                Ok(up) => self.uplink = Some((up, File::create(com2.log)?)),
                Err(e) => {
                    self.problems.push(format!("{}: cannot connect to COM2: {e}", step_name(i, step)));
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Sends step `i`'s frame on COM2 and waits for its answer, or starts
    /// writing its burst; whether that went well.
    fn uploaded(&mut self, com2: &Com2, i: usize, step: &Step, prepared: &Prepared) -> io::Result<bool> {
        if !self.connect(com2, i, step)? {
            return Ok(false);
        }
        let (uplink, log) = self.uplink.as_mut().expect("connected above");
        match (prepared, step.input) {
            (Prepared::Upload { first, again }, Input::Upload(u)) => {
                writeln!(log, "> {} ({} bytes)", u.describe(), first.len())?;
                let (replies, problem) = match uplink.push(first, again.as_deref()) {
                    Ok(replies) => (replies, None),
                    Err(e) => (Vec::new(), Some(e.to_string())),
                };
                log_replies(log, &replies)?;
                self.sent.push(Sent::Uploaded(replies.iter().map(joined).collect()));
                Ok(self.problem(i, step, problem))
            }
            (Prepared::Burst { bytes, answers }, Input::Write(pieces)) => {
                writeln!(log, "> burst of {} bytes, {answers} answers due:", bytes.len())?;
                for p in pieces {
                    writeln!(log, ">   {}", p.describe())?;
                }
                self.sent.push(Sent::Written);
                match uplink.write_burst(bytes.clone()) {
                    Ok(w) => {
                        self.writing = Some((w, pieces, *answers));
                        Ok(true)
                    }
                    Err(e) => Ok(self.problem(i, step, Some(e.to_string()))),
                }
            }
            _ => unreachable!("steps and prepared frames are made from the same list"),
        }
    }

    /// Reads the answers to the burst being written (step `i`); whether
    /// every one came in time.
    fn answers(&mut self, i: usize, step: &Step) -> io::Result<bool> {
        let (Some((uplink, log)), Some((writing, pieces, due))) = (self.uplink.as_mut(), self.writing.take()) else {
            self.problems.push(format!("{}: no burst was written", step_name(i, step)));
            return Ok(false);
        };
        writeln!(
            log,
            "> answers: {due} due, each within {} s of the one before; {} bytes written when they began",
            ANSWER_DEADLINE.as_secs(),
            writing.sent()
        )?;
        let BurstReplies { replies, problem } = uplink.answers(writing, due, ANSWER_DEADLINE);
        log_replies(log, &replies)?;
        self.sent.push(Sent::Burst(replies.iter().map(joined).collect()));
        let problem = problem.map(|e| match pieces.iter().filter(|p| p.expect().is_some()).nth(replies.len()) {
            Some(p) => format!("the answer to {}: {e}", p.describe()),
            None => e.to_string(),
        });
        Ok(self.problem(i, step, problem))
    }

    /// Notes `problem` against step `i`; whether there was none.
    fn problem(&mut self, i: usize, step: &Step, problem: Option<String>) -> bool {
        match problem {
            None => true,
            Some(e) => {
                if let Some((_, log)) = self.uplink.as_mut() {
                    let _ = writeln!(log, "! {e}");
                }
                self.problems.push(format!("{}: {e}", step_name(i, step)));
                false
            }
        }
    }
}

/// A reply's lines as one string, as the checks read it.
fn joined(r: &Reply) -> String {
    r.lines.join("\r\n")
}

/// Each reply with when it came (from the start of its push or burst)
/// and how long after the one before.
fn log_replies(log: &mut File, replies: &[Reply]) -> io::Result<()> {
    let mut before = Duration::ZERO;
    for r in replies {
        let gap = r.after.saturating_sub(before);
        writeln!(log, "< [{:.3} s, +{:.3} s] {}", r.after.as_secs_f64(), gap.as_secs_f64(), r.lines.join(" / "))?;
        before = r.after;
    }
    Ok(())
}
