//! Scripted shell sessions: `runner test` boots an image with COM1 on a
//! unix socket, waits for the prompt, types each step and checks what the
//! shell answered. A step may instead push a plugin file over COM2 (a
//! second socket) with `runner swap`'s client and check the loader's reply
//! there. The scenario is data and the checks are pure functions over the
//! transcript and the replies; `drive` (at the end) is the thin process
//! plumbing.
//!
//! Offsets are byte offsets into the transcript as text (the loader writes
//! ASCII only). A step is sent only after the previous one was answered,
//! and a typed step's reply is everything from its first typed byte to the
//! `prompts`-th prompt that starts a line after it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ed25519_compact::KeyPair;
use loader_core::shell::{GREETING, PROMPT};
use plugins::upload::{Command as UploadCommand, HEADER_LEN};

use crate::layout::{QemuLayout, RUN_LAYOUT};
use crate::outcome::Ended;
use crate::{signing, swap};

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

/// What a step sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// Bytes typed on COM1 at once, after the prompt.
    Keys(&'static [u8]),
    /// A plugin file pushed on COM2 in one frame; the loader's reply there
    /// (`ok ...`/`plugin ...`/`end`, or `error: ...`) answers it.
    Upload(Upload),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub input: Input,
    /// Prompts that answer typed keys (one per Enter or Ctrl-C); 0 for an
    /// upload, which the shell does not answer.
    pub prompts: usize,
    /// Checked against the typed step's reply, or the upload's reply lines.
    pub expect: &'static [Expect],
}

/// A store file pushed over COM2, spoiled first as the test asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upload {
    pub plugin: &'static str,
    pub version: &'static str,
    pub command: UploadCommand,
    pub spoil: Spoil,
}

/// How an upload is damaged on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spoil {
    /// The signed file as built.
    Intact,
    /// One payload byte flipped after the CRC was computed: damaged in transit.
    FlipPayloadByte,
    /// The signature trailer cut off, the frame itself sound.
    StripSignature,
    /// Signed again with a key the loader does not know.
    ForeignKey,
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
    Step { input: Input::Keys(send), prompts: 1, expect }
}

const fn upload(version: &'static str, spoil: Spoil, expect: &'static [Expect]) -> Step {
    Step {
        input: Input::Upload(Upload { plugin: "counter-plugin", version, command: UploadCommand::StoreAndSwap, spoil }),
        prompts: 0,
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

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
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
            step(b"xyzzy\r", &[Line("error: unknown command `xyzzy`; type `help`")]),
            step(OVERLONG, &[Line("error: line too long (max 256 characters)"), Absent("unknown command")]),
            // Ctrl-C abandons a line that would have powered off.
            step(b"poweroff\x03", &[Contains("poweroff^C"), Absent("modvisor-exit")]),
            // Ctrl-U kills it; what follows runs alone.
            step(b"poweroff\x15echo killed the line\r", &[Line("killed the line"), Absent("modvisor-exit")]),
            step(b"ecgo\x08\x08ho back\x7fk\r", &[Line("back")]),
            step(b"echo wrld\x1b[D\x1b[D\x1b[Do\r", &[Line("world")]),
            // Control characters and unknown escape sequences are ignored.
            step(b"\x01\x02\x06\t\x1b[5~echo \x1b[1;5Aclean\x1bx\x1b[99Z\x07\r", &[Line("clean")]),
            // `ESC O A` is Up too: two back is `echo world`.
            step(b"\x1bOA\x1bOA\r", &[Line("world")]),
            // Three lines in one burst: none may lose a byte.
            Step {
                input: Input::Keys(b"echo one\recho two\recho three, a longer line than the FIFO\r"),
                prompts: 3,
                expect: &[Line("one"), Line("two"), Line("three, a longer line than the FIFO")],
            },
            // The default image loads cpuhp, which describes the CPUs (it
            // brought CPU 1 online); a version swapped in does too; unloading
            // it gives `cpus` back to the loader, which says so; loading it
            // again brings the parked CPU back.
            step(
                b"cpus\r",
                &[Line("cpu 1 apic 1 online boot"), Line("cpu 3 apic 3 absent -"), Absent("loader's view")],
            ),
            // Swapped with CPU 1 offline: the new version must keep it parked
            // (the loader's view below says so).
            step(b"cpu offline 1\r", &[Absent("error")]),
            step(b"swap cpuhp 1.2.0\r", &[LineStarting("swapped (world stopped for ")]),
            step(
                b"cpus\r",
                &[Line("cpu 1 apic 1 offline boot"), Line("cpu 2 apic 2 absent -"), Absent("loader's view")],
            ),
            step(b"unload cpuhp\r", &[Line("unloaded cpuhp-plugin")]),
            step(
                b"cpus\r",
                &[
                    Line("cpu 0 apic 0 online boot"),
                    Line("cpu 1 apic 1 parked boot"),
                    Line("cpu 3 apic 3 offline hot-pluggable"),
                    LineStarting("(the loader's view: "),
                ],
            ),
            step(b"load cpuhp 1.2.0\r", &[Line("loaded cpuhp-plugin 1.2.0")]),
            step(b"cpus\r", &[Line("cpu 1 apic 1 online boot"), Absent("loader's view")]),
            step(b"log chatty\r", &[LineStarting("error: log: `chatty` is not valid here")]),
            step(b"mem extra\r", &[Line("error: usage: mem (see `help mem`)")]),
        ],
        finish: b"poweroff\r",
    },
    Scenario {
        name: "upload-session",
        image: "default",
        layout: RUN_LAYOUT,
        boot_commands: "",
        at_boot: &[Line("loaded counter-plugin 1.0.0"), Line("loaded consumer-plugin 1.0.0")],
        steps: &[
            step(b"consumer\r", &[Line("consumer: counter generation 1 says 1")]),
            upload(
                "2.0.0",
                Spoil::Intact,
                &[
                    Line("ok swapped counter-plugin to 2.0.0"),
                    LineStarting("plugin consumer-plugin 1.0.0 0x"),
                    LineStarting("plugin counter-plugin 2.0.0 0x"),
                    Contains(" plugins/counter-plugin-2.0.0.mvp"),
                    Line("end"),
                ],
            ),
            // Generation 2 steps by 2 from the 1 that generation 1 handed over;
            // without the state it would say 2.
            step(b"consumer\r", &[Line("consumer: counter generation 2 says 3")]),
            step(b"counter\r", &[Line("counter 3 (generation 2)")]),
            upload("2.0.0", Spoil::FlipPayloadByte, &[LineStarting("error: upload damaged in transit: CRC-32 ")]),
            step(b"plugins\r", STILL_2),
            upload(
                "2.0.0",
                Spoil::StripSignature,
                &[LineStarting("error: upload refused: the plugin file has no modvisor signature trailer")],
            ),
            step(b"plugins\r", STILL_2),
            upload(
                "2.0.0",
                Spoil::ForeignKey,
                &[LineStarting("error: upload refused: the plugin's signature does not verify with this loader's key")],
            ),
            step(b"plugins\r", STILL_2),
            // 3.0.0 is signed and sound, so it is stored; the consumer's range
            // keeps it from running.
            upload(
                "3.0.0",
                Spoil::Intact,
                &[LineStarting(
                    "error: counter-plugin 3.0.0 is stored but: the swap would break consumers: \
                 consumer-plugin needs `counter >=1.0.0, <3.0.0`",
                )],
            ),
            step(b"plugins\r", STILL_2),
            step(b"counter\r", &[Line("counter 3 (generation 2)")]),
        ],
        finish: b"poweroff\r",
    },
];

/// `plugins` after a refused upload: 2.0.0 still runs, nothing replaced it.
const STILL_2: &[Expect] = &[
    LineStarting("counter-plugin 2.0.0 [active] "),
    LineStarting("consumer-plugin 1.0.0 [active] "),
    Absent("counter-plugin 1.0.0"),
    Absent("counter-plugin 3.0.0"),
];

impl Scenario {
    /// The image's command line with the boot commands added.
    pub fn cmdline(&self, image_cmdline: &str) -> String {
        if self.boot_commands.is_empty() {
            image_cmdline.to_string()
        } else {
            format!("{image_cmdline} sh=\"{}\"", self.boot_commands)
        }
    }

    /// Whether a step pushes over COM2 (so the boot needs it on a socket).
    pub fn uploads(&self) -> bool {
        self.steps.iter().any(|s| matches!(s.input, Input::Upload(_)))
    }
}

impl Upload {
    /// The file in the build's store (`images/out/`), as the initrd names it.
    pub fn store_path(&self) -> String {
        format!("{}/{}-{}.mvp", crate::plugin_build::STORE_DIR, self.plugin, self.version)
    }

    /// The frame that carries `file` (signed with the tree's key), spoiled;
    /// `foreign` signs for [`Spoil::ForeignKey`].
    pub fn frame(&self, file: &[u8], foreign: &KeyPair) -> crate::Result<Vec<u8>> {
        let unsigned = || {
            plugins::sig::split(file)
                .map(|(body, _)| body)
                .map_err(|e| crate::Error::Recipe(format!("{}: {e}", self.store_path())))
        };
        Ok(match self.spoil {
            Spoil::Intact => swap::frame(self.command, file)?,
            Spoil::StripSignature => swap::frame(self.command, unsigned()?)?,
            Spoil::ForeignKey => swap::frame(self.command, &signing::sign(unsigned()?, foreign))?,
            Spoil::FlipPayloadByte => {
                let mut f = swap::frame(self.command, file)?;
                // Inside the payload, so the header still parses and only
                // the CRC can tell.
                f[HEADER_LEN + file.len() / 2] ^= 0x01;
                f
            }
        })
    }

    /// How the COM2 log names this push.
    pub fn describe(&self) -> String {
        format!("{:?} {} ({:?})", self.command, self.store_path(), self.spoil)
    }
}

/// The frames of `scenario`'s uploads, in step order: `read` gives a store
/// file's bytes, and one throwaway key signs every foreign upload.
pub fn frames(
    scenario: &Scenario,
    read: impl Fn(&str) -> crate::Result<Vec<u8>>,
    foreign: &KeyPair,
) -> crate::Result<Vec<Vec<u8>>> {
    scenario
        .steps
        .iter()
        .filter_map(|s| match s.input {
            Input::Upload(u) => Some(u),
            Input::Keys(_) => None,
        })
        .map(|u| u.frame(&read(&u.store_path())?, foreign))
        .collect()
}

/// A key that no tree signs with: a fresh random one per run.
pub fn throwaway_key() -> crate::Result<KeyPair> {
    Ok(KeyPair::from_seed(ed25519_compact::Seed::new(signing::random_seed()?)))
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

/// Whether `line` is one of the loader's log lines (`[time cpu LEVEL
/// target] message`). They are printed whenever something happens (an
/// upload finishing on COM2, a CPU event), so they are no part of a
/// command's answer and may land inside one.
fn is_log_line(line: &str) -> bool {
    let mut words = line.strip_prefix('[').unwrap_or(line).split_whitespace();
    let time = words.next().is_some_and(|t| t.parse::<f64>().is_ok());
    let cpu = words.next().is_some_and(|c| c.parse::<u32>().is_ok());
    let level = words.next().is_some_and(|l| ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&l));
    time && cpu && level && line.contains("] ")
}

fn check_expect(what: &str, reply: &str, expect: &[Expect]) -> Vec<String> {
    let lines: Vec<&str> = reply.split("\r\n").filter(|l| !is_log_line(l)).collect();
    let answer = lines.join("\r\n");
    expect
        .iter()
        .filter(|e| match e {
            Line(l) => !lines.contains(l),
            LineStarting(p) => !lines.iter().any(|l| l.starts_with(p)),
            Contains(t) => !answer.contains(t),
            Absent(t) => answer.contains(t),
        })
        .map(|e| format!("{what}: expected {e:?} in {reply:?}"))
        .collect()
}

/// How `text[from..]` reads as one step's reply (without the last prompt).
/// Keys typed while a log line was being printed are echoed after it, so
/// the rest of that line is no part of the reply.
fn reply(text: &str, from: usize, prompts: usize) -> Option<&str> {
    let end = prompt_end(text, from, prompts)?;
    let before = &text[..from];
    let start = if before.is_empty() || before.ends_with('\n') || before.ends_with(PROMPT) {
        from
    } else {
        text[from..end].find("\r\n").map_or(from, |n| from + n + 2)
    };
    Some(&text[start..end - PROMPT.len()])
}

/// A step as problem reports name it.
fn step_name(i: usize, step: &Step) -> String {
    match step.input {
        Input::Keys(k) => format!("step {} ({})", i + 1, shown(k)),
        Input::Upload(u) => format!("step {} (upload {})", i + 1, u.describe()),
    }
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

/// What became of one step that was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Typed when the transcript was this long.
    Typed(usize),
    /// Pushed on COM2; the reply's lines joined with `\r\n`.
    Uploaded(String),
}

/// Everything wrong with a finished session: `sent[i]` is what became of
/// step `i` (steps never sent are absent).
pub fn check(scenario: &Scenario, text: &str, sent: &[Sent]) -> Vec<String> {
    let mut problems = Vec::new();
    match text.find(GREETING) {
        None => problems.push(format!("the shell never printed `{GREETING}`")),
        Some(g) => problems.extend(check_expect("boot commands", &text[..g], scenario.at_boot)),
    }
    for (i, step) in scenario.steps.iter().enumerate() {
        let what = step_name(i, step);
        match (step.input, sent.get(i)) {
            (Input::Keys(_), Some(Sent::Typed(from))) => match reply(text, *from, step.prompts) {
                Some(r) => problems.extend(check_expect(&what, r, step.expect)),
                None => problems.push(format!("{what}: no answer ending in a prompt")),
            },
            (Input::Upload(_), Some(Sent::Uploaded(r))) => problems.extend(check_expect(&what, r, step.expect)),
            (_, None) => problems.push(format!("{what}: never answered")),
            (_, Some(s)) => unreachable!("{what} was sent as {s:?}"),
        }
    }
    // Every prompt starts a line: command output always ends with one.
    for (i, _) in text.match_indices(PROMPT) {
        if i > 0 && !text[..i].ends_with('\n') && !is_typed_text(text, i) {
            problems.push(format!("a prompt does not start a line: {:?}", &text[i.saturating_sub(30)..i]));
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
    pub sent: Vec<Sent>,
    /// Waits that timed out or uploads that got no reply; the checks then
    /// fail too, this says where.
    pub problems: Vec<String>,
}

/// The COM2 side of a session that uploads.
pub struct Com2<'a> {
    /// QEMU's listening socket for the guest's COM2.
    pub socket: &'a Path,
    /// One frame per upload step, in order ([`frames`]).
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

/// The received bytes, shared with the reader thread.
pub type Received = Arc<(Mutex<Vec<u8>>, Condvar)>;

/// Waits until `ready` finds what it wants in the transcript; `None` after
/// `timeout`.
pub fn wait_for(received: &Received, timeout: Duration, ready: impl Fn(&str) -> Option<usize>) -> Option<usize> {
    let (lock, cond) = &**received;
    let deadline = Instant::now() + timeout;
    let mut bytes = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(at) = ready(&String::from_utf8_lossy(&bytes)) {
            return Some(at);
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        bytes = cond.wait_timeout(bytes, left).unwrap_or_else(|e| e.into_inner()).0;
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
) -> std::io::Result<Driven> {
    let out = std::fs::File::create(output)?;
    let start = Instant::now();
    let mut child = command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out).spawn()?;
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
    let mut sent = Vec::new();
    let mut alive = wait_for(&received, BOOT_TIMEOUT, ready).is_some();
    if !alive {
        problems.push(format!("no prompt within {} s of starting", BOOT_TIMEOUT.as_secs()));
    }
    // Connected at the first upload: QEMU listens from its start, and by
    // then the guest has long set up COM2.
    let mut uplink: Option<(UnixStream, std::fs::File)> = None;
    let mut frames = com2.iter().flat_map(|c| c.frames.iter());
    for (i, step) in scenario.steps.iter().enumerate() {
        if !alive {
            break;
        }
        match step.input {
            Input::Keys(keys) => {
                let from = transcript_len(&received);
                sent.push(Sent::Typed(from));
                writer.write_all(keys)?;
                if wait_for(&received, STEP_TIMEOUT, |t| prompt_end(t, from, step.prompts)).is_none() {
                    problems.push(format!("{}: no prompt within {} s", step_name(i, step), STEP_TIMEOUT.as_secs()));
                    alive = false;
                }
            }
            Input::Upload(u) => {
                let (Some(com2), Some(frame)) = (com2, frames.next()) else {
                    problems.push(format!("{}: no COM2 frame prepared", step_name(i, step)));
                    alive = false;
                    continue;
                };
                if uplink.is_none() {
                    match UnixStream::connect(com2.socket) {
                        Ok(s) => uplink = Some((s, std::fs::File::create(com2.log)?)),
                        Err(e) => {
                            problems.push(format!("{}: cannot connect to COM2: {e}", step_name(i, step)));
                            alive = false;
                            continue;
                        }
                    }
                }
                let (stream, log) = uplink.as_mut().expect("connected above");
                writeln!(log, "> {} ({} bytes)", u.describe(), frame.len())?;
                match swap::push(stream, frame) {
                    Ok(lines) => {
                        for l in &lines {
                            writeln!(log, "< {l}")?;
                        }
                        sent.push(Sent::Uploaded(lines.join("\r\n")));
                    }
                    Err(e) => {
                        writeln!(log, "! {e}")?;
                        problems.push(format!("{}: {e}", step_name(i, step)));
                        alive = false;
                    }
                }
            }
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
    let transcript = String::from_utf8_lossy(&received.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    Ok(Driven { ended, took: start.elapsed(), transcript, sent, problems })
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
            "cpus\r\ncpu 0 apic 0 online boot\r\ncpu 1 apic 1 online boot\r\ncpu 2 apic 2 absent -\r\ncpu 3 apic 3 absent -\r\n",
            "cpu offline 1\r\n",
            "swap cpuhp 1.2.0\r\nswapped (world stopped for 3 us)\r\n",
            "cpus\r\ncpu 0 apic 0 online boot\r\ncpu 1 apic 1 offline boot\r\ncpu 2 apic 2 absent -\r\ncpu 3 apic 3 absent -\r\n",
            "unload cpuhp\r\nunloaded cpuhp-plugin\r\n",
            "cpus\r\ncpu 0 apic 0 online boot\r\ncpu 1 apic 1 parked boot\r\ncpu 2 apic 2 offline hot-pluggable\r\n\
             cpu 3 apic 3 offline hot-pluggable\r\n(the loader's view: ...)\r\n",
            "load cpuhp 1.2.0\r\n[    0.5 0 INFO  cpuhp-plugin] cpuhp generation 1: 2 of 4 CPUs online\r\nloaded cpuhp-plugin 1.2.0\r\n",
            "cpus\r\ncpu 0 apic 0 online boot\r\ncpu 1 apic 1 online boot\r\ncpu 2 apic 2 absent -\r\ncpu 3 apic 3 absent -\r\n",
            "log chatty\r\nerror: log: `chatty` is not valid here; expected off\r\n",
            "mem extra\r\nerror: usage: mem (see `help mem`)\r\n",
        ]
        .map(String::from)
        .to_vec()
    }

    /// The transcript of a session with these answers, and where each
    /// step was typed.
    fn session(answers: &[String]) -> (String, Vec<Sent>) {
        let mut text = boot();
        let mut sent = Vec::new();
        for a in answers {
            sent.push(Sent::Typed(text.len()));
            text.push_str(a);
            text.push_str(PROMPT);
        }
        text.push_str("poweroff\r\nmodvisor-exit: 0x16 poweroff\r\n");
        (text, sent)
    }

    fn with_answer(i: usize, answer: &str) -> (String, Vec<Sent>) {
        let mut answers = good_answers();
        answers[i] = answer.to_string();
        session(&answers)
    }

    #[test]
    fn the_scenarios_are_complete() {
        for s in SCENARIOS {
            assert!(crate::recipes::find(s.image).is_ok(), "{}", s.name);
            for st in s.steps {
                match st.input {
                    // Each typed step ends with the key that brings the
                    // prompt back.
                    Input::Keys(keys) => {
                        assert!(matches!(keys.last(), Some(b'\r' | 0x03)), "{}", shown(keys));
                        let enters = keys.iter().filter(|b| matches!(b, b'\r' | 0x03)).count();
                        assert_eq!(enters, st.prompts, "{}", shown(keys));
                    }
                    Input::Upload(u) => assert_eq!(st.prompts, 0, "{}", u.describe()),
                }
            }
            assert_eq!(s.finish, b"poweroff\r");
            let cl = s.cmdline("image=default");
            let parsed = loader_core::boot::cmdline::CommandLine::parse(&cl).unwrap();
            assert_eq!(
                parsed.boot_commands().count(),
                s.boot_commands.split(';').filter(|c| !c.trim().is_empty()).count()
            );
        }
        assert_eq!(SCENARIOS[0].cmdline("image=x"), format!("image=x sh=\"{}\"", SCENARIOS[0].boot_commands));
        assert!(!SCENARIOS[0].uploads());
        assert_eq!(UP.cmdline("image=default"), "image=default", "no empty sh=");
        assert!(UP.uploads());
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
        let (text, sent_at) = with_answer(5, &format!("{a}\r\nerror: unknown command `{a}`; type `help`\r\n"));
        let p = check(S, &text, &sent_at);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().all(|l| l.starts_with("step 6 (\"aaaa")), "{p:?}");
        assert!(p[0].contains("line too long") && p[1].contains("Absent"), "{p:?}");
        // History recall that brought nothing back.
        let (text, sent_at) = with_answer(3, "\r\n");
        let p = check(S, &text, &sent_at);
        assert!(p.len() == 2 && p.iter().all(|l| l.starts_with("step 4 ")), "{p:?}");
    }

    #[test]
    fn missing_prompts_lost_input_and_glued_prompts_are_caught() {
        let (text, sent_at) = session(&good_answers());
        // The session stopped after step 3.
        let Sent::Typed(at) = sent_at[3] else { unreachable!("all typed") };
        let cut = &text[..at + 3];
        let p = check(S, cut, &sent_at[..4]);
        assert!(p[0].starts_with("step 4 ") && p[0].ends_with("no answer ending in a prompt"), "{p:?}");
        assert_eq!(p.len(), S.steps.len() - 3, "{p:?}");
        assert!(p[1].starts_with("step 5 ") && p[1].ends_with("never answered"), "{p:?}");
        let (text, sent_at) = with_answer(2, "mem\r\nerror: input was lost\r\n");
        let p = check(S, &text, &sent_at);
        assert!(p.iter().any(|l| l.contains("`input was lost`")), "{p:?}");
        // Output without a final newline glued to the next prompt.
        let (text, sent_at) = with_answer(8, "ecgo\x08 \x08\x08 \x08ho bac\x08 \x08k\r\nback");
        let p = check(S, &text, &sent_at);
        assert!(p.iter().any(|l| l.contains("does not start a line")), "{p:?}");
        let p = check(S, "nothing at all", &[]);
        assert!(p[0].contains("never printed"), "{p:?}");
    }

    const UP: &Scenario = &SCENARIOS[1];

    /// The upload session when all is well: COM1 text and COM2 replies.
    fn good_upload_session() -> (String, Vec<Sent>) {
        let still = "plugins\r\nconsumer-plugin 1.0.0 [active] at 0x2223000, ...\r\n\
                     counter-plugin 2.0.0 [active] at 0x2228000, ...\r\n";
        let answers = [
            "consumer\r\nconsumer: counter generation 1 says 1\r\n",
            "ok swapped counter-plugin to 2.0.0\r\n\
             plugin consumer-plugin 1.0.0 0x2223000 plugins/consumer-plugin-1.0.0.mvp\r\n\
             plugin counter-plugin 2.0.0 0x2228000 plugins/counter-plugin-2.0.0.mvp\r\nend",
            // Log lines of the swap land after the idle prompt.
            "[    0.3 0 INFO  loader_core::upload] received counter-plugin 2.0.0 on COM2\r\n\
             consumer\r\nconsumer: counter generation 2 says 3\r\n",
            "counter\r\ncounter 3 (generation 2)\r\n",
            "error: upload damaged in transit: CRC-32 0x1 of the payload, frame says 0x2; send it again",
            still,
            "error: upload refused: the plugin file has no modvisor signature trailer: it is unsigned",
            still,
            "error: upload refused: the plugin's signature does not verify with this loader's key: ...",
            still,
            "error: counter-plugin 3.0.0 is stored but: the swap would break consumers: \
             consumer-plugin needs `counter >=1.0.0, <3.0.0` but the new version provides 3.0.0",
            still,
            "counter\r\ncounter 3 (generation 2)\r\n",
        ];
        let mut text = "loaded counter-plugin 1.0.0\r\nloaded consumer-plugin 1.0.0\r\n\
                        type `help` for commands\r\nmodvisor> "
            .to_string();
        let mut sent = Vec::new();
        for (step, answer) in UP.steps.iter().zip(answers) {
            match step.input {
                Input::Keys(_) => {
                    sent.push(Sent::Typed(text.len()));
                    text.push_str(answer);
                    text.push_str(PROMPT);
                }
                Input::Upload(_) => sent.push(Sent::Uploaded(answer.to_string())),
            }
        }
        assert_eq!(sent.len(), UP.steps.len());
        (text, sent)
    }

    #[test]
    fn log_lines_inside_a_reply_are_not_its_answer() {
        let (mut text, mut sent) = good_upload_session();
        // Step 12 typed while the 3.0.0 upload's log line was half printed.
        let Sent::Typed(at) = sent[11] else { panic!("step 12 is typed") };
        let log = "[    1.5 0 INFO  loader_core::plugin::image] plugin counter-plugin 3.0.0 loaded at 0x1\r\n";
        text.insert_str(at, log);
        let shift = log.len();
        for s in &mut sent[11..] {
            if let Sent::Typed(from) = s {
                *from += if *from == at { 10 } else { shift };
            }
        }
        assert_eq!(check(UP, &text, &sent), Vec::<String>::new());
        assert!(is_log_line("[    0.3 0 INFO  loader_core::upload] received"));
        assert!(is_log_line("    0.3 0 WARN  cpuhp-plugin] cpu 3 refused"));
        assert!(!is_log_line("counter-plugin 3.0.0 [active] at 0x1"));
        assert!(!is_log_line("cpu 0 apic 0 online boot"));
    }

    #[test]
    fn a_good_upload_session_passes() {
        let (text, sent) = good_upload_session();
        assert_eq!(check(UP, &text, &sent), Vec::<String>::new());
    }

    #[test]
    fn upload_sessions_catch_lost_state_and_accepted_bad_files() {
        // The swap worked but the value started again from 0.
        let (text, sent) = good_upload_session();
        let text = text.replace("generation 2 says 3", "generation 2 says 2");
        let p = check(UP, &text, &sent);
        assert!(p.len() == 1 && p[0].starts_with("step 3 (\"consumer\\r\")"), "{p:?}");
        // The foreign-signed file was taken and swapped in.
        let (text, mut sent) = good_upload_session();
        sent[8] = Sent::Uploaded("ok swapped counter-plugin to 2.0.0\r\nend".into());
        let p = check(UP, &text, &sent);
        assert!(
            p.len() == 1
                && p[0].starts_with(
                    "step 9 (upload StoreAndSwap plugins/counter-plugin-2.0.0.mvp (ForeignKey)): expected"
                )
                && p[0].contains("does not verify"),
            "{p:?}"
        );
        // 3.0.0 went in after all.
        let (text, sent) = good_upload_session();
        let text = text.replacen("counter-plugin 2.0.0 [active]", "counter-plugin 3.0.0 [active]", 4);
        let p = check(UP, &text, &sent);
        assert!(p.iter().any(|l| l.starts_with("step 12 ") && l.contains("Absent(\"counter-plugin 3.0.0\")")), "{p:?}");
        // The session died at the first upload.
        let (text, sent) = good_upload_session();
        let p = check(UP, &text, &sent[..1]);
        assert!(p[0].starts_with("step 2 (upload ") && p[0].ends_with("never answered"), "{p:?}");
    }

    /// Decodes one frame as the loader does: the payload and the final event.
    fn decode(frame: &[u8]) -> (Vec<u8>, plugins::upload::Event) {
        use plugins::upload::{Decoder, Event};
        let mut d = Decoder::new(1 << 20);
        let mut payload = Vec::new();
        let mut last = Event::Pending;
        for &b in frame {
            match d.feed(b) {
                Event::Data(x) => payload.push(x),
                Event::Pending => {}
                e => last = e,
            }
        }
        (payload, last)
    }

    #[test]
    fn spoiled_uploads_fail_where_the_loader_checks() {
        use ed25519_compact::Seed;
        use loader_core::plugin::elf::{verify, Error as ElfError};
        use plugins::upload::{Error as FrameError, Event};
        let tree = KeyPair::from_seed(Seed::new([1; 32]));
        let foreign = KeyPair::from_seed(Seed::new([2; 32]));
        let file = signing::sign(b"\x7fELF plugin body", &tree);
        let up = |spoil| Upload { plugin: "p", version: "1.0.0", command: UploadCommand::StoreAndSwap, spoil };
        let done = Event::Done { command: UploadCommand::StoreAndSwap };

        let (payload, end) = decode(&up(Spoil::Intact).frame(&file, &foreign).unwrap());
        assert_eq!((payload.as_slice(), end), (file.as_slice(), done));
        assert_eq!(verify(&payload, &tree.pk), Ok(&b"\x7fELF plugin body"[..]));

        let (_, end) = decode(&up(Spoil::FlipPayloadByte).frame(&file, &foreign).unwrap());
        assert!(matches!(end, Event::Error(FrameError::BadCrc { .. })), "{end:?}");

        let (payload, end) = decode(&up(Spoil::StripSignature).frame(&file, &foreign).unwrap());
        assert_eq!((payload.as_slice(), end), (&b"\x7fELF plugin body"[..], done));
        assert_eq!(verify(&payload, &tree.pk), Err(ElfError::Unsigned));

        let (payload, end) = decode(&up(Spoil::ForeignKey).frame(&file, &foreign).unwrap());
        assert_eq!(end, done);
        assert_eq!(verify(&payload, &tree.pk), Err(ElfError::BadSignature));
        assert!(verify(&payload, &foreign.pk).is_ok());

        let e = up(Spoil::StripSignature).frame(b"never signed", &foreign).unwrap_err().to_string();
        assert!(e.contains("plugins/p-1.0.0.mvp"), "{e}");
    }

    #[test]
    fn frames_follow_the_upload_steps() {
        let tree = KeyPair::from_seed(ed25519_compact::Seed::new([1; 32]));
        let read = |path: &str| Ok(signing::sign(path.as_bytes(), &tree));
        let payloads: Vec<Vec<u8>> = frames(UP, read, &tree).unwrap().iter().map(|f| decode(f).0).collect();
        assert_eq!(payloads.len(), 5);
        assert_eq!(payloads[0], signing::sign(b"plugins/counter-plugin-2.0.0.mvp", &tree));
        assert_eq!(payloads[2], b"plugins/counter-plugin-2.0.0.mvp");
        assert_eq!(payloads[4], signing::sign(b"plugins/counter-plugin-3.0.0.mvp", &tree));
        let missing = |path: &str| Err(crate::Error::Usage(format!("no {path}")));
        assert_eq!(frames(UP, missing, &tree).unwrap_err().to_string(), "no plugins/counter-plugin-2.0.0.mvp");
        assert!(frames(S, missing, &tree).unwrap().is_empty());
    }

    #[test]
    fn typed_bytes_are_shown_readably() {
        assert_eq!(shown(b"mem\r"), "\"mem\\r\"");
        assert_eq!(shown(OVERLONG), format!("{:?}... (301 bytes)", "a".repeat(40)));
    }
}
