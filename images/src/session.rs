//! Scripted shell sessions: `runner test` boots an image with COM1 on a
//! unix socket, waits for the prompt, types each step and checks what the
//! shell answered. The scenario is data and the checks are pure functions
//! over the transcript; `drive` (at the end) is the thin process plumbing.
//!
//! Offsets are byte offsets into the transcript as text (the loader writes
//! ASCII only). A step is typed only after the previous prompt arrived,
//! and a step's reply is everything from its first typed byte to the
//! `prompts`-th prompt that starts a line after it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use loader::shell::{GREETING, PROMPT};

use crate::layout::{QemuLayout, RUN_LAYOUT};
use crate::outcome::Ended;

/// One thing a reply must (or must not) show. Lines are split at `\r\n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Some line is exactly this.
    Line(&'static str),
    /// Some line starts with this.
    LineStarting(&'static str),
    /// The text occurs anywhere (echo and escape sequences included).
    Contains(&'static str),
    /// The text occurs nowhere.
    Absent(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Bytes typed at once, after the prompt.
    pub send: &'static [u8],
    /// Prompts that answer them (one per Enter or Ctrl-C).
    pub prompts: usize,
    pub expect: &'static [Expect],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// The run's name in `runner test`'s report and `--filter`.
    pub name: &'static str,
    pub image: &'static str,
    pub layout: QemuLayout,
    /// Appended to the image's command line as `sh="..."`.
    pub boot_commands: &'static str,
    /// What the output before the first interactive prompt must show.
    pub at_boot: &'static [Expect],
    pub steps: &'static [Step],
    /// Typed last; must end the machine (the run then expects `poweroff`).
    pub finish: &'static [u8],
}

const fn step(send: &'static [u8], expect: &'static [Expect]) -> Step {
    Step {
        send,
        prompts: 1,
        expect,
    }
}

/// 300 characters and Enter: past the shell's 256, typed in one burst
/// (far more than the UART's 16-byte receive FIFO).
const OVERLONG: &[u8] = &{
    let mut line = [b'a'; 301];
    line[300] = b'\r';
    line
};

use Expect::*;

pub const SCENARIOS: &[Scenario] = &[Scenario {
    name: "shell-session",
    image: "default",
    layout: RUN_LAYOUT,
    boot_commands: "echo hello from the command line; bogus-boot-command; mem",
    at_boot: &[
        Line("modvisor> echo hello from the command line"),
        Line("hello from the command line"),
        Line("modvisor> bogus-boot-command"),
        Line("error: unknown command `bogus-boot-command`; type `help`"),
        Line("modvisor> mem"),
        LineStarting("frames: "),
    ],
    steps: &[
        step(
            b"help\r",
            &[
                LineStarting("  help [command] "),
                LineStarting("  log [level] "),
                LineStarting("  mem "),
                LineStarting("  cpus "),
                LineStarting("  echo [text] "),
                LineStarting("  reboot "),
                LineStarting("  poweroff "),
            ],
        ),
        step(b"help log\r", &[Line("usage: log [level]")]),
        step(b"mem\r", &[LineStarting("frames: ")]),
        // Up recalls `mem`: its output comes a second time.
        step(b"\x1b[A\r", &[Contains("mem"), LineStarting("frames: ")]),
        step(
            b"xyzzy\r",
            &[Line("error: unknown command `xyzzy`; type `help`")],
        ),
        step(
            OVERLONG,
            &[
                Line("error: line too long (max 256 characters)"),
                Absent("unknown command"),
            ],
        ),
        // Ctrl-C abandons a line that would have powered off.
        step(
            b"poweroff\x03",
            &[Contains("poweroff^C"), Absent("modvisor-exit")],
        ),
        // Ctrl-U kills it; what follows runs alone.
        step(
            b"poweroff\x15echo killed the line\r",
            &[Line("killed the line"), Absent("modvisor-exit")],
        ),
        step(b"ecgo\x08\x08ho back\x7fk\r", &[Line("back")]),
        step(b"echo wrld\x1b[D\x1b[D\x1b[Do\r", &[Line("world")]),
        // Control characters and unknown escape sequences are ignored.
        step(
            b"\x01\x02\x06\t\x1b[5~echo \x1b[1;5Aclean\x1bx\x1b[99Z\x07\r",
            &[Line("clean")],
        ),
        // `ESC O A` is Up too: two back is `echo world`.
        step(b"\x1bOA\x1bOA\r", &[Line("world")]),
        // Three lines in one burst: none may lose a byte.
        Step {
            send: b"echo one\recho two\recho three, a longer line than the FIFO\r",
            prompts: 3,
            expect: &[
                Line("one"),
                Line("two"),
                Line("three, a longer line than the FIFO"),
            ],
        },
        step(
            b"cpus\r",
            &[
                LineStarting("cpu 0: APIC id 0, boot, online"),
                LineStarting("cpu 3: "),
            ],
        ),
        step(
            b"log chatty\r",
            &[LineStarting("error: log: `chatty` is not valid here")],
        ),
        step(
            b"mem extra\r",
            &[Line("error: usage: mem (see `help mem`)")],
        ),
    ],
    finish: b"poweroff\r",
}];

impl Scenario {
    /// The image's command line with the boot commands added.
    pub fn cmdline(&self, image_cmdline: &str) -> String {
        format!("{image_cmdline} sh=\"{}\"", self.boot_commands)
    }
}

/// The end of the `n`-th prompt that starts a line at or after `from`.
pub fn prompt_end(text: &str, from: usize, n: usize) -> Option<usize> {
    let (mut at, mut found) = (from, 0);
    while found < n {
        let i = text.get(at..)?.find(PROMPT)? + at;
        at = i + PROMPT.len();
        // Elsewhere the prompt's text is typed or printed, not a prompt.
        if i == 0 || text[..i].ends_with('\n') {
            found += 1;
        }
    }
    Some(at)
}

/// Where the interactive shell is ready: the end of the first prompt after
/// the greeting (boot commands' echoed prompts come before it).
pub fn ready(text: &str) -> Option<usize> {
    let g = text.find(GREETING)?;
    prompt_end(text, g, 1)
}

fn check_expect(what: &str, reply: &str, expect: &[Expect]) -> Vec<String> {
    let lines: Vec<&str> = reply.split("\r\n").collect();
    expect
        .iter()
        .filter(|e| match e {
            Line(l) => !lines.contains(l),
            LineStarting(p) => !lines.iter().any(|l| l.starts_with(p)),
            Contains(t) => !reply.contains(t),
            Absent(t) => reply.contains(t),
        })
        .map(|e| format!("{what}: expected {e:?} in {reply:?}"))
        .collect()
}

/// How `text[from..]` reads as one step's reply (without the last prompt).
fn reply(text: &str, from: usize, prompts: usize) -> Option<&str> {
    let end = prompt_end(text, from, prompts)?;
    Some(&text[from..end - PROMPT.len()])
}

/// Shows typed bytes readably in problem reports.
pub fn shown(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.len() > 40 {
        format!("{:?}... ({} bytes)", &s[..40], s.len())
    } else {
        format!("{s:?}")
    }
}

/// Everything wrong with a finished session: `sent_at[i]` is where the
/// transcript ended when step `i` was typed (steps never typed are absent).
pub fn check(scenario: &Scenario, text: &str, sent_at: &[usize]) -> Vec<String> {
    let mut problems = Vec::new();
    match text.find(GREETING) {
        None => problems.push(format!("the shell never printed `{GREETING}`")),
        Some(g) => problems.extend(check_expect("boot commands", &text[..g], scenario.at_boot)),
    }
    for (i, step) in scenario.steps.iter().enumerate() {
        let what = format!("step {} ({})", i + 1, shown(step.send));
        match sent_at
            .get(i)
            .and_then(|&from| reply(text, from, step.prompts))
        {
            Some(r) => problems.extend(check_expect(&what, r, step.expect)),
            None => problems.push(format!("{what}: no answer ending in a prompt")),
        }
    }
    // Every prompt starts a line: command output always ends with one.
    for (i, _) in text.match_indices(PROMPT) {
        if i > 0 && !text[..i].ends_with('\n') && !is_typed_text(text, i) {
            problems.push(format!(
                "a prompt does not start a line: {:?}",
                &text[i.saturating_sub(30)..i]
            ));
        }
    }
    // What the loader prints when it fails: `panic on cpu N`, a plugin's
    // `... panicked in ...`, an exception report. Help texts may mention
    // panics harmlessly.
    for bad in ["input was lost", "panic on cpu", "panicked in", "unexpected exception"] {
        if text.contains(bad) {
            problems.push(format!("the transcript shows `{bad}`"));
        }
    }
    problems
}

/// Whether the prompt text at `i` is on a line that itself begins with a
/// prompt (i.e. someone typed it), rather than output.
fn is_typed_text(text: &str, i: usize) -> bool {
    let line_start = text[..i].rfind('\n').map_or(0, |n| n + 1);
    text[line_start..].starts_with(PROMPT)
}

/// What a session leaves behind for the judge.
pub struct Driven {
    pub ended: Ended,
    pub took: Duration,
    pub transcript: String,
    pub sent_at: Vec<usize>,
    /// Waits that timed out; the checks then fail too, this says where.
    pub problems: Vec<String>,
}

/// How long the shell may take to answer one step (a whole boot for the
/// first prompt); TCG answers in milliseconds, but runs share the host.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
const BOOT_TIMEOUT: Duration = Duration::from_secs(40);
/// From `finish` to QEMU's exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

/// The received bytes, shared with the reader thread.
pub type Received = Arc<(Mutex<Vec<u8>>, Condvar)>;

/// Waits until `ready` finds what it wants in the transcript; `None` after
/// `timeout`.
pub fn wait_for(
    received: &Received,
    timeout: Duration,
    ready: impl Fn(&str) -> Option<usize>,
) -> Option<usize> {
    let (lock, cond) = &**received;
    let deadline = Instant::now() + timeout;
    let mut bytes = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(at) = ready(&String::from_utf8_lossy(&bytes)) {
            return Some(at);
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        bytes = cond
            .wait_timeout(bytes, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

fn transcript_len(received: &Received) -> usize {
    String::from_utf8_lossy(&received.0.lock().unwrap_or_else(|e| e.into_inner())).len()
}

/// Connects to QEMU's serial socket, which appears once QEMU is up; QEMU
/// (`server=on,wait=on`) starts the guest only after this connection, so
/// nothing the guest prints is missed.
pub fn connect(socket: &Path, child: &mut Child) -> std::io::Result<UnixStream> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        match UnixStream::connect(socket) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline || child.try_wait()?.is_some() => return Err(e),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Collects what arrives on `stream` (COM1) into the returned buffer and
/// `serial_log`, on a thread that ends when QEMU closes the socket.
pub fn receive(stream: &UnixStream, serial_log: &Path) -> std::io::Result<(Received, thread::JoinHandle<()>)> {
    let received: Received = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
    let shared = Arc::clone(&received);
    let mut stream = stream.try_clone()?;
    let mut log = std::fs::File::create(serial_log)?;
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            let _ = log.write_all(&buf[..n]);
            shared.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&buf[..n]);
            shared.1.notify_all();
        }
    });
    Ok((received, reader))
}

/// Runs QEMU (`command`, whose COM1 is the server socket `socket`), plays
/// the scenario, copies everything received to `serial_log`.
pub fn drive(
    scenario: &Scenario,
    command: &mut Command,
    socket: &Path,
    output: &Path,
    serial_log: &Path,
) -> std::io::Result<Driven> {
    let out = std::fs::File::create(output)?;
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()?;
    let stream = match connect(socket, &mut child) {
        Ok(s) => s,
        Err(e) => {
            let _ = child.kill();
            child.wait()?;
            return Err(e);
        }
    };
    let (received, reader) = receive(&stream, serial_log)?;
    let mut writer = stream;
    let mut problems = Vec::new();
    let mut sent_at = Vec::new();
    let mut alive = wait_for(&received, BOOT_TIMEOUT, ready).is_some();
    if !alive {
        problems.push(format!(
            "no prompt within {} s of starting",
            BOOT_TIMEOUT.as_secs()
        ));
    }
    for (i, step) in scenario.steps.iter().enumerate() {
        if !alive {
            break;
        }
        let from = transcript_len(&received);
        sent_at.push(from);
        writer.write_all(step.send)?;
        if wait_for(&received, STEP_TIMEOUT, |t| {
            prompt_end(t, from, step.prompts)
        })
        .is_none()
        {
            problems.push(format!(
                "step {} ({}): no prompt within {} s",
                i + 1,
                shown(step.send),
                STEP_TIMEOUT.as_secs()
            ));
            alive = false;
        }
    }
    if alive {
        writer.write_all(scenario.finish)?;
    }
    let deadline = Instant::now() + if alive { EXIT_TIMEOUT } else { Duration::ZERO };
    let ended = loop {
        if let Some(status) = child.try_wait()? {
            break crate::emulator::ended(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            child.wait()?;
            break Ended::TimedOut;
        }
        thread::sleep(Duration::from_millis(20));
    };
    // The socket closed with QEMU, so the reader has seen everything.
    let _ = reader.join();
    let transcript =
        String::from_utf8_lossy(&received.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    Ok(Driven {
        ended,
        took: start.elapsed(),
        transcript,
        sent_at,
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &Scenario = &SCENARIOS[0];

    /// What the loader prints up to the interactive prompt.
    fn boot() -> String {
        "cpus: 2 enabled at boot, 2 hot-pluggable\r\n\
         modvisor> echo hello from the command line\r\nhello from the command line\r\n\
         modvisor> bogus-boot-command\r\nerror: unknown command `bogus-boot-command`; type `help`\r\n\
         modvisor> mem\r\nframes: 1 of 2 free\r\n\
         type `help` for commands\r\nmodvisor> "
            .to_string()
    }

    /// How the shell answers each step when all is well.
    fn good_answers() -> Vec<String> {
        [
            "help\r\ncommands:\r\n  help [command]  x\r\n  log [level]     x\r\n  mem             x\r\n  cpus            x\r\n  echo [text]     x\r\n  reboot          x\r\n  poweroff        x\r\n",
            "help log\r\nusage: log [level]\r\n",
            "mem\r\nframes: 1\r\n",
            "mem\x1b[K\r\nframes: 1\r\n",
            "xyzzy\r\nerror: unknown command `xyzzy`; type `help`\r\n",
            &format!("{}\r\nerror: line too long (max 256 characters)\r\n", "a".repeat(256)),
            "poweroff^C\r\n",
            "poweroff\x1b[8D\x1b[Kecho killed the line\r\nkilled the line\r\n",
            "ecgo\x08 \x08\x08 \x08ho bac\x08 \x08k\r\nback\r\n",
            "echo wrld\x1b[D\x1b[D\x1b[D\x1b[6Decho world\x1b[K\x1b[3D\r\nworld\r\n",
            "echo clean\r\nclean\r\n",
            "\x1b[10Decho world\x1b[K\r\nworld\r\n",
            "echo one\r\none\r\nmodvisor> echo two\r\ntwo\r\nmodvisor> echo three, a longer line than the FIFO\r\nthree, a longer line than the FIFO\r\n",
            "cpus\r\ncpu 0: APIC id 0, boot, online\r\ncpu 3: APIC id 3, hot-pluggable, offline\r\n",
            "log chatty\r\nerror: log: `chatty` is not valid here; expected off\r\n",
            "mem extra\r\nerror: usage: mem (see `help mem`)\r\n",
        ]
        .map(String::from)
        .to_vec()
    }

    /// The transcript of a session with these answers, and where each
    /// step was typed.
    fn session(answers: &[String]) -> (String, Vec<usize>) {
        let mut text = boot();
        let mut sent_at = Vec::new();
        for a in answers {
            sent_at.push(text.len());
            text.push_str(a);
            text.push_str(PROMPT);
        }
        text.push_str("poweroff\r\nmodvisor-exit: 0x16 poweroff\r\n");
        (text, sent_at)
    }

    fn with_answer(i: usize, answer: &str) -> (String, Vec<usize>) {
        let mut answers = good_answers();
        answers[i] = answer.to_string();
        session(&answers)
    }

    #[test]
    fn the_scenario_is_complete() {
        let s = &SCENARIOS[0];
        assert_eq!(s.image, "default");
        assert!(crate::recipes::find(s.image).is_ok());
        // Each step ends with the key that brings the prompt back.
        for st in s.steps {
            assert!(
                matches!(st.send.last(), Some(b'\r' | 0x03)),
                "{}",
                shown(st.send)
            );
            let enters = st.send.iter().filter(|b| matches!(b, b'\r' | 0x03)).count();
            assert_eq!(enters, st.prompts, "{}", shown(st.send));
        }
        assert_eq!(s.finish, b"poweroff\r");
        let cl = s.cmdline("image=default");
        let parsed = loader::cmdline::CommandLine::parse(&cl).unwrap();
        assert_eq!(parsed.boot_commands().count(), 3);
    }

    #[test]
    fn prompts_are_found_only_at_line_starts() {
        let t = "modvisor> echo modvisor> x\r\nmodvisor> x\r\nmodvisor> ";
        assert_eq!(prompt_end(t, 0, 1), Some(PROMPT.len()));
        let second = t.find("\nmodvisor> x").unwrap() + 1 + PROMPT.len();
        assert_eq!(prompt_end(t, 1, 1), Some(second));
        assert_eq!(prompt_end(t, 1, 2), Some(t.len()));
        assert_eq!(prompt_end(t, 1, 3), None);
        assert_eq!(ready(&boot()), Some(boot().len()));
        assert_eq!(ready("modvisor> echo\r\n"), None);
    }

    #[test]
    fn a_good_session_passes() {
        let (text, sent_at) = session(&good_answers());
        assert_eq!(check(S, &text, &sent_at), Vec::<String>::new());
    }

    #[test]
    fn wrong_answers_are_reported_with_their_step() {
        // The overlong line ran as a command instead of being refused.
        let a = "a".repeat(256);
        let (text, sent_at) = with_answer(
            5,
            &format!("{a}\r\nerror: unknown command `{a}`; type `help`\r\n"),
        );
        let p = check(S, &text, &sent_at);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().all(|l| l.starts_with("step 6 (\"aaaa")), "{p:?}");
        assert!(
            p[0].contains("line too long") && p[1].contains("Absent"),
            "{p:?}"
        );
        // History recall that brought nothing back.
        let (text, sent_at) = with_answer(3, "\r\n");
        let p = check(S, &text, &sent_at);
        assert!(
            p.len() == 2 && p.iter().all(|l| l.starts_with("step 4 ")),
            "{p:?}"
        );
    }

    #[test]
    fn missing_prompts_lost_input_and_glued_prompts_are_caught() {
        let (text, sent_at) = session(&good_answers());
        // The session stopped after step 3.
        let cut = &text[..sent_at[3] + 3];
        let p = check(S, cut, &sent_at[..4]);
        assert!(
            p[0].starts_with("step 4 ") && p[0].ends_with("no answer ending in a prompt"),
            "{p:?}"
        );
        assert_eq!(p.len(), S.steps.len() - 3, "{p:?}");
        let (text, sent_at) = with_answer(2, "mem\r\nerror: input was lost\r\n");
        let p = check(S, &text, &sent_at);
        assert!(p.iter().any(|l| l.contains("`input was lost`")), "{p:?}");
        // Output without a final newline glued to the next prompt.
        let (text, sent_at) = with_answer(8, "ecgo\x08 \x08\x08 \x08ho bac\x08 \x08k\r\nback");
        let p = check(S, &text, &sent_at);
        assert!(
            p.iter().any(|l| l.contains("does not start a line")),
            "{p:?}"
        );
        let p = check(S, "nothing at all", &[]);
        assert!(p[0].contains("never printed"), "{p:?}");
    }

    #[test]
    fn typed_bytes_are_shown_readably() {
        assert_eq!(shown(b"mem\r"), "\"mem\\r\"");
        assert_eq!(
            shown(OVERLONG),
            format!("{:?}... (301 bytes)", "a".repeat(40))
        );
    }
}
