//! The shell's line editor: a state machine fed one received byte at a
//! time. It writes what the terminal must show (echo, redraws) to a
//! `fmt::Write` and reports each finished line; it never touches hardware,
//! so the kernel side is a loop that moves bytes in and out.
//!
//! Keys: printable ASCII inserts at the cursor; Backspace (0x08) and DEL
//! (0x7f) delete before it; Ctrl-U kills the line; Ctrl-C abandons it; Enter
//! (CR or LF, CR LF counts once) finishes it; Up/Down walk the history and
//! Left/Right/Home/End move the cursor (`ESC [ x` and `ESC O x`). Every other
//! control character, byte above 0x7e and escape sequence is ignored.

use super::Error;
use alloc::collections::VecDeque;
use alloc::string::String;
use core::fmt::Write;

/// Longest line the editor accepts.
pub const MAX_LINE: usize = 256;
/// Lines kept for Up/Down.
pub const HISTORY: usize = 32;

const CTRL_C: u8 = 0x03;
const BACKSPACE: u8 = 0x08;
const CTRL_U: u8 = 0x15;
const ESC: u8 = 0x1b;
const DEL: u8 = 0x7f;

/// What a finished line turned into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entered {
    /// Enter on an acceptable line (maybe empty).
    Line(String),
    /// Ctrl-C: the line was abandoned.
    Cancelled,
    /// Enter on a line that cannot be run (too long, or input was lost).
    Refused(Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Start,
    /// After `ESC [`, with this many parameter/intermediate bytes so far
    /// (saturating: only "none" matters).
    Csi(u8),
    /// After `ESC O` (the "application cursor" form some terminals send).
    Ss3,
}

pub struct Editor {
    prompt: &'static str,
    line: [u8; MAX_LINE],
    len: usize,
    cursor: usize,
    /// Printable bytes typed beyond `MAX_LINE` (not stored, not echoed).
    excess: usize,
    /// Bytes were dropped before they reached the editor: the line as
    /// typed is unknown, so it must not run.
    lost: bool,
    escape: Escape,
    /// The previous byte was CR, so an LF right after it is the same Enter.
    after_cr: bool,
    history: VecDeque<String>,
    /// Index into `history` while browsing it (0 = newest).
    browsing: Option<usize>,
    /// The unfinished line put aside when browsing started.
    draft: String,
}

impl Editor {
    pub fn new(prompt: &'static str) -> Self {
        Editor {
            prompt,
            line: [0; MAX_LINE],
            len: 0,
            cursor: 0,
            excess: 0,
            lost: false,
            escape: Escape::None,
            after_cr: false,
            history: VecDeque::new(),
            browsing: None,
            draft: String::new(),
        }
    }

    /// Writes the prompt; call at start and after handling each `Entered`.
    pub fn prompt(&self, out: &mut impl Write) {
        let _ = out.write_str(self.prompt);
    }

    /// Marks the line being typed as damaged: the receive path dropped
    /// bytes. Enter will refuse it instead of running what survived.
    pub fn input_lost(&mut self) {
        self.lost = true;
    }

    /// Takes one received byte; returns what Enter or Ctrl-C finished.
    pub fn feed(&mut self, b: u8, out: &mut impl Write) -> Option<Entered> {
        let after_cr = core::mem::replace(&mut self.after_cr, b == b'\r');
        if self.escape != Escape::None {
            // A control byte inside a sequence cancels it and counts as
            // itself (as ECMA-48 has terminals execute it), so a cut-off
            // sequence never swallows the Enter that follows.
            if b >= 0x20 {
                self.escape_byte(b, out);
                return None;
            }
            self.escape = Escape::None;
        }
        match b {
            b'\n' if after_cr => None,
            b'\r' | b'\n' => Some(self.enter(out)),
            CTRL_C => {
                let _ = out.write_str("^C\r\n");
                self.reset();
                Some(Entered::Cancelled)
            }
            CTRL_U => {
                let from = self.cursor;
                self.len = 0;
                self.cursor = 0;
                self.excess = 0;
                self.lost = false;
                self.redraw(from, out);
                None
            }
            BACKSPACE | DEL => {
                if self.excess > 0 {
                    self.excess -= 1;
                } else if self.cursor > 0 {
                    let old = self.cursor;
                    self.line.copy_within(self.cursor..self.len, self.cursor - 1);
                    self.len -= 1;
                    self.cursor -= 1;
                    if self.cursor == self.len {
                        let _ = out.write_str("\x08 \x08");
                    } else {
                        self.redraw(old, out);
                    }
                }
                None
            }
            ESC => {
                self.escape = Escape::Start;
                None
            }
            0x20..=0x7e => {
                self.insert(b, out);
                None
            }
            _ => None,
        }
    }

    /// One byte (0x20 or above) of an escape sequence.
    fn escape_byte(&mut self, b: u8, out: &mut impl Write) {
        self.escape = match (self.escape, b) {
            (Escape::Start, b'[') => Escape::Csi(0),
            (Escape::Start, b'O') => Escape::Ss3,
            // ESC then a key is Alt-key on most terminals: ignored.
            (Escape::Start, _) => Escape::None,
            (Escape::Csi(n), 0x20..=0x3f) => Escape::Csi(n.saturating_add(1)),
            (Escape::Csi(n), 0x40..=0x7e) => {
                // Only parameterless sequences are keys we know;
                // `ESC [ 1 ; 5 A` (Ctrl-Up) and the like are ignored.
                if n == 0 {
                    self.key(b, out);
                }
                Escape::None
            }
            (Escape::Ss3, _) => {
                self.key(b, out);
                Escape::None
            }
            // DEL or a byte above ASCII: not a sequence after all.
            (Escape::Csi(_) | Escape::None, _) => Escape::None,
        };
    }

    fn insert(&mut self, b: u8, out: &mut impl Write) {
        if self.excess > 0 || self.len == MAX_LINE {
            self.excess += 1;
            return;
        }
        self.line.copy_within(self.cursor..self.len, self.cursor + 1);
        self.line[self.cursor] = b;
        self.len += 1;
        self.cursor += 1;
        if self.cursor == self.len {
            let _ = out.write_char(b as char);
        } else {
            self.redraw(self.cursor - 1, out);
        }
    }

    /// A key from an escape sequence (its final byte).
    fn key(&mut self, k: u8, out: &mut impl Write) {
        // A line past the limit is not on screen as typed; moving around in
        // it would only confuse. Enter, Ctrl-C or Ctrl-U end that state.
        if self.excess > 0 {
            return;
        }
        match k {
            b'A' => self.recall_older(out),
            b'B' => self.recall_newer(out),
            b'C' if self.cursor < self.len => {
                self.cursor += 1;
                let _ = out.write_str("\x1b[C");
            }
            b'D' if self.cursor > 0 => {
                self.cursor -= 1;
                let _ = out.write_str("\x1b[D");
            }
            b'H' => self.move_to(0, out),
            b'F' => self.move_to(self.len, out),
            _ => {}
        }
    }

    fn move_to(&mut self, to: usize, out: &mut impl Write) {
        let from = self.cursor;
        self.cursor = to;
        self.redraw(from, out);
    }

    fn recall_older(&mut self, out: &mut impl Write) {
        let next = self.browsing.map_or(0, |i| i + 1);
        if next >= self.history.len() {
            return;
        }
        if self.browsing.is_none() {
            self.draft = String::from(self.text());
        }
        self.browsing = Some(next);
        let entry = self.history[next].clone();
        self.replace(&entry, out);
    }

    fn recall_newer(&mut self, out: &mut impl Write) {
        match self.browsing {
            None => {}
            Some(0) => {
                self.browsing = None;
                let draft = core::mem::take(&mut self.draft);
                self.replace(&draft, out);
            }
            Some(i) => {
                self.browsing = Some(i - 1);
                let entry = self.history[i - 1].clone();
                self.replace(&entry, out);
            }
        }
    }

    /// Puts `text` (at most `MAX_LINE` bytes: it came from this editor)
    /// on the line, cursor at its end.
    fn replace(&mut self, text: &str, out: &mut impl Write) {
        let from = self.cursor;
        self.len = text.len().min(MAX_LINE);
        self.line[..self.len].copy_from_slice(&text.as_bytes()[..self.len]);
        self.cursor = self.len;
        self.redraw(from, out);
    }

    /// Rewrites the line after the prompt: back from column `from` to the
    /// line's start, the text, erase to the end of the screen line, then
    /// back to the cursor. Never reprints the prompt, so a host reading the
    /// output sees one prompt per line.
    fn redraw(&self, from: usize, out: &mut impl Write) {
        if from > 0 {
            let _ = write!(out, "\x1b[{from}D");
        }
        let _ = out.write_str(self.text());
        let _ = out.write_str("\x1b[K");
        let back = self.len - self.cursor;
        if back > 0 {
            let _ = write!(out, "\x1b[{back}D");
        }
    }

    fn text(&self) -> &str {
        // Only bytes 0x20..=0x7e are ever stored.
        core::str::from_utf8(&self.line[..self.len]).unwrap_or_default()
    }

    fn enter(&mut self, out: &mut impl Write) -> Entered {
        let _ = out.write_str("\r\n");
        let entered = if self.lost {
            Entered::Refused(Error::InputLost)
        } else if self.excess > 0 {
            Entered::Refused(Error::LineTooLong { max: MAX_LINE })
        } else {
            let line = String::from(self.text());
            self.remember(&line);
            Entered::Line(line)
        };
        self.reset();
        entered
    }

    /// Adds a line to the history, skipping blank lines and repeats.
    fn remember(&mut self, line: &str) {
        if line.trim().is_empty() || self.history.front().is_some_and(|h| h == line) {
            return;
        }
        if self.history.len() == HISTORY {
            self.history.pop_back();
        }
        self.history.push_front(String::from(line));
    }

    fn reset(&mut self) {
        self.len = 0;
        self.cursor = 0;
        self.excess = 0;
        self.lost = false;
        self.escape = Escape::None;
        self.browsing = None;
        self.draft.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// Feeds `input`; returns the terminal output and everything entered.
    fn run(ed: &mut Editor, input: &[u8]) -> (String, Vec<Entered>) {
        let mut out = String::new();
        let entered = input.iter().filter_map(|b| ed.feed(*b, &mut out)).collect();
        (out, entered)
    }

    fn lines(input: &[u8]) -> Vec<Entered> {
        run(&mut Editor::new("> "), input).1
    }

    fn line(s: &str) -> Entered {
        Entered::Line(s.into())
    }

    #[test]
    fn typing_echoes_and_enter_finishes() {
        let mut ed = Editor::new("> ");
        let (out, e) = run(&mut ed, b"mem\r");
        assert_eq!(out, "mem\r\n");
        assert_eq!(e, [line("mem")]);
        assert_eq!(lines(b"a\nb\r\nc\r\r"), [line("a"), line("b"), line("c"), line("")]);
    }

    #[test]
    fn backspace_and_del_delete_before_the_cursor() {
        let mut ed = Editor::new("> ");
        let (out, e) = run(&mut ed, b"ecgo\x08\x08ho back\x7fk\r");
        assert_eq!(e, [line("echo back")]);
        assert!(out.starts_with("ecgo\x08 \x08\x08 \x08ho"), "{out:?}");
        // Backspace on an empty line does nothing at all.
        let (out, e) = run(&mut ed, b"\x7f\x08\r");
        assert_eq!((out.as_str(), e), ("\r\n", vec![line("")]));
    }

    #[test]
    fn ctrl_u_kills_and_ctrl_c_abandons() {
        assert_eq!(lines(b"poweroff\x15echo ok\r"), [line("echo ok")]);
        let mut ed = Editor::new("> ");
        let (out, e) = run(&mut ed, b"power\x03mem\r");
        assert_eq!(e, [Entered::Cancelled, line("mem")]);
        assert!(out.starts_with("power^C\r\nmem"), "{out:?}");
    }

    #[test]
    fn overlong_lines_are_refused_not_truncated() {
        let mut input = [b'a'; MAX_LINE + 10].to_vec();
        input.push(b'\r');
        let (out, e) = run(&mut Editor::new("> "), &input);
        assert_eq!(e, [Entered::Refused(Error::LineTooLong { max: MAX_LINE })]);
        assert_eq!(out.len(), MAX_LINE + 2, "the excess is not echoed");
        assert_eq!(e[0].clone(), Entered::Refused(Error::LineTooLong { max: 256 }));
        // Deleting back under the limit makes the line acceptable again.
        let mut input = [b'b'; MAX_LINE + 2].to_vec();
        input.extend_from_slice(b"\x7f\x7f\x7f\r");
        let e = lines(&input);
        assert_eq!(e, [Entered::Line("b".repeat(MAX_LINE - 1))]);
        // A full line, then Ctrl-U, starts afresh.
        let mut input = [b'c'; MAX_LINE + 1].to_vec();
        input.extend_from_slice(b"\x15ok\r");
        assert_eq!(lines(&input), [line("ok")]);
        // Exactly MAX_LINE is fine.
        let mut input = [b'd'; MAX_LINE].to_vec();
        input.push(b'\r');
        assert_eq!(lines(&input), [Entered::Line("d".repeat(MAX_LINE))]);
    }

    #[test]
    fn lost_input_refuses_the_line_once() {
        let mut ed = Editor::new("> ");
        run(&mut ed, b"pow");
        ed.input_lost();
        let (_, e) = run(&mut ed, b"eroff\rmem\r");
        assert_eq!(e, [Entered::Refused(Error::InputLost), line("mem")]);
    }

    #[test]
    fn history_walks_both_ways_and_keeps_the_draft() {
        let mut ed = Editor::new("> ");
        run(&mut ed, b"mem\rcpus\rcpus\r\r");
        let (_, e) = run(&mut ed, b"\x1b[A\r\x1b[A\x1b[A\r");
        assert_eq!(e, [line("cpus"), line("mem")]);
        // Past the oldest entry Up stays put; Down past the newest returns
        // the draft.
        let (_, e) = run(&mut ed, b"ec\x1b[A\x1b[A\x1b[A\x1b[A\x1b[B\x1b[B\x1b[B\x1b[Bho\r");
        assert_eq!(e, [line("echo")]);
        // SS3 arrows (`ESC O A`) work the same.
        let (out, e) = run(&mut ed, b"\x1bOA\x1bOA\r");
        assert_eq!(e, [line("mem")]);
        assert!(out.contains("echo") && out.contains("mem"), "{out:?}");
    }

    #[test]
    fn history_is_bounded() {
        let mut ed = Editor::new("> ");
        for i in 0..HISTORY + 5 {
            run(&mut ed, alloc::format!("echo {i}\r").as_bytes());
        }
        let ups: Vec<u8> = b"\x1b[A".repeat(HISTORY + 10);
        let (_, e) = run(&mut ed, &[ups, b"\r".to_vec()].concat());
        assert_eq!(e, [line("echo 5")]);
    }

    #[test]
    fn cursor_movement_inserts_and_deletes_in_the_middle() {
        let mut ed = Editor::new("> ");
        let (out, e) = run(&mut ed, b"echo wrld\x1b[D\x1b[D\x1b[Do\r");
        assert_eq!(e, [line("echo world")]);
        // Inserting mid-line rewrites the tail and puts the cursor back.
        assert!(out.ends_with("\x1b[D\x1b[6Decho world\x1b[K\x1b[3D\r\n"), "{out:?}");
        assert_eq!(lines(b"echo ab\x1b[D\x7fX\r"), [line("echo Xb")]);
        assert_eq!(lines(b"cho\x1b[Hea\x1b[Fz\r"), [line("eachoz")]);
        assert_eq!(lines(b"x\x1b[C\x1b[C\x1b[D\x1b[D\x1b[Dy\r"), [line("yx")]);
    }

    #[test]
    fn unknown_keys_and_control_characters_are_ignored() {
        let input = b"\x01\x02\tec\x1b[5~h\x1b[1;5Ao\x1bx \x1b[99Zcl\x07ean\xc3\xa9\x1b[\x01\r";
        assert_eq!(lines(input), [line("echo clean")]);
        // A sequence cut off by a control byte ends there; the byte counts.
        let mut input = b"\x1b[".to_vec();
        input.extend_from_slice(&[b'1'; 400]);
        input.extend_from_slice(b"\rok\x1b\r\x1bO\x7f\r");
        assert_eq!(lines(&input), [line(""), line("ok"), line("")]);
    }

    #[test]
    fn ctrl_c_ends_an_escape_and_a_browse() {
        let mut ed = Editor::new("> ");
        run(&mut ed, b"mem\r");
        let (_, e) = run(&mut ed, b"\x1b[A\x03\x1b[B\r");
        assert_eq!(e, [Entered::Cancelled, line("")]);
    }
}
