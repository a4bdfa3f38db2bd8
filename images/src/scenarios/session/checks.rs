//! The checks of a finished session: pure functions over the COM1
//! transcript and the COM2 replies.

use loader_core::shell::{GREETING, PROMPT};

use super::data::{Expect, Input, Piece, Scenario, Spoil, Step};
use crate::link::console::prompt_end;
use Expect::*;

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
            LineWith(p, e) => !lines.iter().any(|l| l.starts_with(p) && l.ends_with(e)),
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
pub fn step_name(i: usize, step: &Step) -> String {
    match step.input {
        Input::Keys(k) | Input::Until(k, _) => format!("step {} ({})", i + 1, shown(k)),
        Input::Upload(u) => format!("step {} (upload {})", i + 1, u.describe()),
        Input::Write(pieces) => format!("step {} (burst of {} pieces)", i + 1, pieces.len()),
        Input::Answers => format!("step {} (answers to the burst)", i + 1),
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
    /// Pushed on COM2: every reply, its lines joined with `\r\n`; more
    /// than one when the loader asked for the frame again. The last is final.
    Uploaded(Vec<String>),
    /// A burst's writing began.
    Written,
    /// The answers to a burst, in order.
    Burst(Vec<String>),
}

impl Sent {
    /// The COM2 replies of this step, in order.
    fn replies(&self) -> &[String] {
        match self {
            Sent::Typed(_) | Sent::Written => &[],
            Sent::Uploaded(r) | Sent::Burst(r) => r,
        }
    }
}

/// What a burst's replies lack: one per answering piece, in order.
fn check_burst(what: &str, pieces: &[Piece], replies: &[String]) -> Vec<String> {
    let due: Vec<&Piece> = pieces.iter().filter(|p| p.expect().is_some()).collect();
    let mut problems = Vec::new();
    for (k, piece) in due.iter().enumerate() {
        let name = format!("{what}, answer {} (to {})", k + 1, piece.describe());
        match replies.get(k) {
            Some(r) => problems.extend(check_expect(&name, r, piece.expect().unwrap_or_default())),
            None => problems.push(format!("{name}: never answered")),
        }
    }
    if replies.len() > due.len() {
        problems.push(format!("{what}: {} answers to {} pieces that ask for one", replies.len(), due.len()));
    }
    problems
}

/// What an upload step's replies lack: the last one answers it; a frame
/// damaged once must have been refused with a request to send it again.
fn check_upload(what: &str, spoil: Spoil, expect: &[Expect], replies: &[String]) -> Vec<String> {
    let Some(last) = replies.last() else { return vec![format!("{what}: never answered")] };
    let mut problems = check_expect(what, last, expect);
    if spoil == Spoil::DamagedOnce && !(replies.len() >= 2 && replies[0].starts_with("error: resend: ")) {
        problems.push(format!("{what}: the damaged first frame was not refused with `error: resend:` ({replies:?})"));
    }
    problems
}

/// The loader numbers the frames it answers from 1, COM1 and COM2 alike:
/// the `n`-th reply of the session is frame `n`. Every refusal on COM2
/// must be logged on COM1 with the same reason, and every file taken
/// must be logged as received.
fn check_com1_log(text: &str, sent: &[Sent]) -> Vec<String> {
    let replies = sent.iter().flat_map(Sent::replies);
    let mut problems = Vec::new();
    for (n, reply) in (1..).zip(replies) {
        let first = reply.split("\r\n").next().unwrap_or_default();
        let want = match first.strip_prefix("error: ") {
            Some(reason) => format!("upload: refused frame {n}: {reason}\r\n"),
            None => format!("upload: frame {n}: received "),
        };
        if !text.contains(&want) {
            problems.push(format!("COM1 lacks `{}` for COM2's `{first}`", want.trim_end()));
        }
    }
    problems
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
            (Input::Keys(_) | Input::Until(..), Some(Sent::Typed(from))) => match reply(text, *from, step.prompts) {
                Some(r) => problems.extend(check_expect(&what, r, step.expect)),
                None => problems.push(format!("{what}: no answer ending in a prompt")),
            },
            (Input::Upload(u), Some(Sent::Uploaded(r))) => {
                problems.extend(check_upload(&what, u.spoil, step.expect, r))
            }
            (Input::Write(_), Some(Sent::Written)) => {}
            (Input::Answers, Some(Sent::Burst(r))) => {
                let pieces = scenario.steps[..i].iter().rev().find_map(|s| match s.input {
                    Input::Write(p) => Some(p),
                    _ => None,
                });
                problems.extend(check_burst(&what, pieces.unwrap_or_default(), r))
            }
            (_, None) => problems.push(format!("{what}: never answered")),
            (_, Some(s)) => unreachable!("{what} was sent as {s:?}"),
        }
    }
    problems.extend(check_com1_log(text, sent));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::session::data::{OVERLONG, SCENARIOS};

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
            "vm list\r\nerror: unknown command `vm`; type `help`\r\n  (not loaded at boot: vmx-plugin needs vmx, which \
             this CPU does not have: VMs and guests need VMX; boot this image in Bochs (`make bochs`))\r\n",
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
    fn a_good_session_passes() {
        let (text, sent_at) = session(&good_answers());
        assert_eq!(check(S, &text, &sent_at), Vec::<String>::new());
    }

    #[test]
    fn wrong_answers_are_reported_with_their_step() {
        // The overlong line ran as a command instead of being refused.
        let a = "a".repeat(256);
        let (text, sent_at) = with_answer(6, &format!("{a}\r\nerror: unknown command `{a}`; type `help`\r\n"));
        let p = check(S, &text, &sent_at);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().all(|l| l.starts_with("step 7 (\"aaaa")), "{p:?}");
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
            "[    0.3 0 INFO  loader::upload] received counter-plugin 2.0.0 on COM2\r\n\
             consumer\r\nconsumer: counter generation 2 says 3\r\n",
            "counter\r\ncounter 3 (generation 2)\r\n",
            "error: resend: upload damaged in transit: CRC-32 0x1 of the payload, frame says 0x2",
            still,
            "error: upload refused: the plugin file has no modvisor signature trailer: it is unsigned",
            still,
            "error: upload refused: the plugin's signature does not verify with this loader's key: ...",
            still,
            "error: counter-plugin 3.0.0 is stored but: the swap would break consumers: \
             consumer-plugin needs `counter >=1.0.0, <3.0.0` but the new version provides 3.0.0",
            still,
            "counter\r\ncounter 3 (generation 2)\r\n",
            "ok stored guest file uploads/hello.elf (12648 bytes)\r\nend",
            "store\r\ncounter-plugin 1.0.0 (9000 bytes, initrd)\r\n\
             guest file uploads/hello.elf (12648 bytes, uploaded, not signed)\r\n",
        ];
        let mut text = "loaded counter-plugin 1.0.0\r\nloaded consumer-plugin 1.0.0\r\n\
                        type `help` for commands\r\nmodvisor> "
            .to_string();
        let mut sent = Vec::new();
        for (step, answer) in UP.steps.iter().zip(answers) {
            match step.input {
                Input::Keys(_) | Input::Until(..) => {
                    sent.push(Sent::Typed(text.len()));
                    text.push_str(answer);
                    text.push_str(PROMPT);
                }
                Input::Upload(_) | Input::Write(_) | Input::Answers => {
                    let n = sent.iter().flat_map(Sent::replies).count() + 1;
                    text.push_str(&com1_log(n, answer));
                    sent.push(Sent::Uploaded(vec![answer.to_string()]));
                }
            }
        }
        assert_eq!(sent.len(), UP.steps.len());
        (text, sent)
    }

    /// The COM1 log line of the loader's `n`-th answer.
    fn com1_log(n: usize, answer: &str) -> String {
        match answer.strip_prefix("error: ") {
            Some(reason) => format!("[    0.3 0 WARN  loader::plugin::upload] upload: refused frame {n}: {reason}\r\n"),
            None => {
                format!("[    0.3 0 INFO  loader::plugin::upload] upload: frame {n}: received x 1.0.0 (9 bytes)\r\n")
            }
        }
    }

    /// A reply that shows exactly what `expect` asks for.
    fn answer_to(expect: &[Expect]) -> String {
        let lines: Vec<String> = expect
            .iter()
            .filter_map(|e| match *e {
                Line(l) => Some(l.to_string()),
                LineStarting(p) => Some(format!("{p}...")),
                LineWith(p, e) => Some(format!("{p}1{e}")),
                Contains(t) => Some(t.to_string()),
                Absent(_) => None,
            })
            .collect();
        lines.join("\r\n")
    }

    /// `upload-burst` as it should go: every step answered as it expects,
    /// every COM2 answer logged on COM1.
    fn good_burst_session() -> (&'static Scenario, String, Vec<Sent>) {
        let scenario = SCENARIOS.iter().find(|s| s.name == "upload-burst").unwrap();
        let mut text = "loaded counter-plugin 1.0.0\r\nloaded consumer-plugin 1.0.0\r\n\
                        type `help` for commands\r\nmodvisor> "
            .to_string();
        let mut sent = Vec::new();
        let mut written = None;
        for step in scenario.steps {
            let n = sent.iter().flat_map(Sent::replies).count();
            match step.input {
                Input::Keys(keys) | Input::Until(keys, _) => {
                    sent.push(Sent::Typed(text.len()));
                    text.push_str(&format!(
                        "{}\r\n{}\r\n",
                        String::from_utf8_lossy(keys).trim_end(),
                        answer_to(step.expect)
                    ));
                    text.push_str(PROMPT);
                }
                Input::Upload(u) => {
                    let mut replies = Vec::new();
                    if u.spoil == Spoil::DamagedOnce {
                        replies.push("error: resend: upload damaged in transit: CRC-32 0x1".to_string());
                    }
                    replies.push(answer_to(step.expect));
                    for (k, r) in replies.iter().enumerate() {
                        text.push_str(&com1_log(n + k + 1, r));
                    }
                    sent.push(Sent::Uploaded(replies));
                }
                Input::Write(_) => sent.push(Sent::Written),
                Input::Answers => {
                    let Some(Input::Write(pieces)) = written else { panic!("answers to no write") };
                    let replies: Vec<String> = pieces.iter().filter_map(|p| p.expect()).map(answer_to).collect();
                    for (k, r) in replies.iter().enumerate() {
                        text.push_str(&com1_log(n + k + 1, r));
                    }
                    sent.push(Sent::Burst(replies));
                }
            }
            if let Input::Write(_) = step.input {
                written = Some(step.input);
            }
        }
        (scenario, text, sent)
    }

    #[test]
    fn a_good_burst_session_passes_and_every_lapse_is_named() {
        let (scenario, text, sent) = good_burst_session();
        assert_eq!(check(scenario, &text, &sent), Vec::<String>::new());
        let first = sent.iter().position(|s| matches!(s, Sent::Burst(_))).unwrap();
        let name = format!("step {} (answers to the burst)", first + 1);
        // The ten-frame burst lost its last answer.
        let mut short = sent.clone();
        let Sent::Burst(r) = &mut short[first] else { unreachable!() };
        r.pop();
        let p = check(scenario, &text, &short);
        assert!(
            p.iter().any(|l| l.starts_with(&format!("{name}, answer 10 (to Store plugins/consumer-plugin-2.0.0.mvp"))
                && l.ends_with("never answered")),
            "{p:?}"
        );
        // Two answers came in the wrong order.
        let mut swapped = sent.clone();
        let Sent::Burst(r) = &mut swapped[first] else { unreachable!() };
        r.swap(0, 1);
        let p = check(scenario, &text, &swapped);
        assert!(p.iter().any(|l| l.starts_with(&format!("{name}, answer 1 "))), "{p:?}");
        // A refusal answered on COM2 but never logged on COM1 (the same
        // length, so that the typed steps stay where they were).
        let text_without = text.replace("upload: refused frame 2: ", "upload: REFUSED frame 2: ");
        let p = check(scenario, &text_without, &sent);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("COM1 lacks `upload: refused frame 2: resend: upload damaged in transit"), "{p:?}");
        // The client never sent the damaged frame again.
        let mut once = sent.clone();
        let at = scenario.steps.iter().position(|s| matches!(s.input, Input::Upload(_))).unwrap();
        let Sent::Uploaded(r) = &mut once[at] else { panic!("an upload step") };
        r.remove(0);
        let p = check(scenario, &text, &once);
        assert!(p.iter().any(|l| l.contains("the damaged first frame was not refused")), "{p:?}");
    }

    #[test]
    fn log_lines_inside_a_reply_are_not_its_answer() {
        let (mut text, mut sent) = good_upload_session();
        // Step 12 typed while the 3.0.0 upload's log line was half printed.
        let Sent::Typed(at) = sent[11] else { panic!("step 12 is typed") };
        let log = "[    1.5 0 INFO  loader::plugin::image] plugin counter-plugin 3.0.0 loaded at 0x1\r\n";
        text.insert_str(at, log);
        let shift = log.len();
        for s in &mut sent[11..] {
            if let Sent::Typed(from) = s {
                *from += if *from == at { 10 } else { shift };
            }
        }
        assert_eq!(check(UP, &text, &sent), Vec::<String>::new());
        assert!(is_log_line("[    0.3 0 INFO  loader::upload] received"));
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
        sent[8] = Sent::Uploaded(vec!["ok swapped counter-plugin to 2.0.0\r\nend".into()]);
        let p = check(UP, &text, &sent);
        assert!(
            p.len() == 2
                && p[0].starts_with(
                    "step 9 (upload StoreAndSwap plugins/counter-plugin-2.0.0.mvp (ForeignKey)): expected"
                )
                && p[0].contains("does not verify"),
            "{p:?}"
        );
        // ... and COM1 said it was refused, not received.
        assert_eq!(p[1], "COM1 lacks `upload: frame 4: received` for COM2's `ok swapped counter-plugin to 2.0.0`");
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

    #[test]
    fn typed_bytes_are_shown_readably() {
        assert_eq!(shown(b"mem\r"), "\"mem\\r\"");
        assert_eq!(shown(OVERLONG), format!("{:?}... (301 bytes)", "a".repeat(40)));
    }
}
