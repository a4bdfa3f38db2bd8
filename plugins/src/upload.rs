//! Uploading plugins to a running loader over its second serial port
//! (COM2, I/O port 0x2f8). The runner encodes, the loader decodes; both use
//! this module so the two sides cannot drift apart.
//!
//! A frame, all integers little endian:
//!
//! ```text
//! "MVUP"  u8 command  u32 length  payload (length bytes)  u32 CRC-32 of payload
//! ```
//!
//! The command is [`Command::Store`] (1: put the payload, a signed `.mvp`,
//! into the store), [`Command::StoreAndSwap`] (2: store it, then load it,
//! replacing the loaded version of the same plugin) or
//! [`Command::GuestFile`] (3: a guest program for VMs, its payload one
//! byte of name length, the name, then the file; see [`guest_file`]). CRC-32 is the common
//! IEEE one (zlib, PNG, Ethernet). Bytes before a magic are skipped, so a
//! receiver that started mid-frame finds the next one. A payload is at
//! most [`MAX_PAYLOAD`] bytes; the header says so before any of it comes.
//!
//! The loader answers every frame with text lines on COM2 (`\n`-terminated,
//! a `\r` before it is ignored): either one `error: <message>` line, or an
//! `ok <summary>` line followed by one [`Loaded`] line per loaded plugin
//! (`plugin <name> <version> 0x<load address> <path in store>`) and a
//! final `end` line. A frame that was hurt on the way (damaged, cut off,
//! timed out, bytes lost) is answered `error: resend: <message>`
//! ([`Refusal`]): the sender should send it again, unchanged.
//! [`ReplyParser`] reads a reply line by line.

use core::fmt;

pub const MAGIC: [u8; 4] = *b"MVUP";
/// Magic, command, length.
pub const HEADER_LEN: usize = 9;
pub const CRC_LEN: usize = 4;
/// The largest payload a receiver takes: far above any plugin file, and
/// small enough that the loader can hold a frame and the one after it.
pub const MAX_PAYLOAD: u32 = 4 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Command {
    Store = 1,
    StoreAndSwap = 2,
    GuestFile = 3,
}

impl Command {
    pub const fn from_u8(b: u8) -> Option<Command> {
        match b {
            1 => Some(Command::Store),
            2 => Some(Command::StoreAndSwap),
            3 => Some(Command::GuestFile),
            _ => None,
        }
    }
}

/// The longest guest file name.
pub const GUEST_NAME_MAX: usize = 32;

/// Whether `name` may name an uploaded guest file: 1 to
/// [`GUEST_NAME_MAX`] letters, digits, `.`, `-` or `_`, not starting with
/// `.` (it becomes part of the path `uploads/<name>`).
pub fn valid_guest_name(name: &str) -> bool {
    (1..=GUEST_NAME_MAX).contains(&name.len())
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// The bytes a [`Command::GuestFile`] payload starts with, before the
/// file: the name's length and the name; `None` for a name
/// [`valid_guest_name`] refuses.
pub fn guest_prefix(name: &str) -> Option<([u8; GUEST_NAME_MAX + 1], usize)> {
    if !valid_guest_name(name) {
        return None;
    }
    let mut prefix = [0; GUEST_NAME_MAX + 1];
    prefix[0] = name.len() as u8;
    prefix[1..=name.len()].copy_from_slice(name.as_bytes());
    Some((prefix, name.len() + 1))
}

/// A [`Command::GuestFile`] payload's name and file.
pub fn guest_file(payload: &[u8]) -> Result<(&str, &[u8]), GuestError> {
    let (&len, rest) = payload.split_first().ok_or(GuestError::Empty)?;
    let (name, file) = rest.split_at_checked(len.into()).ok_or(GuestError::ShortName)?;
    let name = core::str::from_utf8(name).ok().filter(|n| valid_guest_name(n)).ok_or(GuestError::BadName)?;
    if file.is_empty() {
        return Err(GuestError::NoFile);
    }
    Ok((name, file))
}

/// Why a [`Command::GuestFile`] payload is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestError {
    Empty,
    ShortName,
    BadName,
    NoFile,
}

impl fmt::Display for GuestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GuestError::Empty => "guest upload refused: the payload is empty",
            GuestError::ShortName => "guest upload refused: the payload ends inside the name",
            GuestError::BadName => {
                "guest upload refused: a guest file name is 1 to 32 letters, digits, `.`, `-` or `_`, not starting \
                 with `.`"
            }
            GuestError::NoFile => "guest upload refused: the file is empty",
        })
    }
}

/// The bytes that precede the payload.
pub fn header(command: Command, len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0; HEADER_LEN];
    h[..4].copy_from_slice(&MAGIC);
    h[4] = command as u8;
    h[5..].copy_from_slice(&len.to_le_bytes());
    h
}

/// The bytes that follow the payload.
pub fn trailer(payload: &[u8]) -> [u8; CRC_LEN] {
    crc32fast::hash(payload).to_le_bytes()
}

/// Why a frame is refused. The first three are the [`Decoder`]'s; the
/// others are found by a receiver that watches the clock and its UART.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The byte after the magic is no [`Command`].
    UnknownCommand(u8),
    /// The announced length exceeds what the receiver accepts.
    TooLong { len: u32, max: u32 },
    /// The payload arrived damaged.
    BadCrc { expected: u32, computed: u32 },
    /// Another frame's magic and header begin `at` bytes into this frame
    /// (counted from its magic), whose header announced `len` payload
    /// bytes: this one was cut off and the next one started.
    CutOff { at: u32, len: u32 },
    /// `got` bytes of a frame came (counted from its magic), then nothing
    /// for `idle_ms` milliseconds.
    TimedOut { got: u32, idle_ms: u32 },
    /// The receiving UART lost or garbled bytes of the frame (receive
    /// overrun, parity or framing error).
    Lost,
    /// The receiver has no memory for a payload of `len` bytes now.
    NoRoom { len: u32 },
}

impl Error {
    /// Whether the frame was hurt on the way, so that sending the same
    /// frame again can succeed (the host client does).
    pub const fn resend(&self) -> bool {
        matches!(self, Error::BadCrc { .. } | Error::CutOff { .. } | Error::TimedOut { .. } | Error::Lost)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownCommand(c) => {
                write!(f, "upload command {c} is unknown (1 = store, 2 = store and swap, 3 = guest file)")
            }
            Error::TooLong { len, max } => write!(f, "upload of {len} bytes exceeds the limit of {max} bytes"),
            Error::BadCrc { expected, computed } => write!(
                f,
                "upload damaged in transit: CRC-32 {computed:#010x} of the payload, frame says {expected:#010x}"
            ),
            Error::CutOff { at, len } => write!(
                f,
                "upload cut off: a new frame began {at} bytes into this one, whose header announced {len} payload bytes"
            ),
            Error::TimedOut { got, idle_ms } => {
                write!(f, "upload timed out: {got} bytes of a frame came, then nothing for {idle_ms} ms")
            }
            Error::Lost => write!(f, "upload lost bytes in the receiver (UART overrun, parity or framing error)"),
            Error::NoRoom { len } => write!(f, "no room in the loader's heap for an upload of {len} bytes"),
        }
    }
}

/// What follows `error: ` when a frame is refused: the reason, after
/// [`RESEND`] when sending the frame again can help.
#[derive(Clone, Copy, Debug)]
pub struct Refusal<'a>(pub &'a Error);

impl fmt::Display for Refusal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.resend() {
            f.write_str(RESEND)?;
        }
        write!(f, "{}", self.0)
    }
}

/// Whether `bytes` can be the start of a frame that a decoder refusing
/// payloads over `max_len` would take: the magic (or as much of it as
/// there is), a known command, a length within the limit. A receiver
/// that refused a frame looks for this inside the refused bytes, where
/// the next frame may already have begun.
pub fn could_start_frame(bytes: &[u8], max_len: u32) -> bool {
    let magic = bytes.len().min(MAGIC.len());
    let command = bytes.get(MAGIC.len()).is_none_or(|&c| Command::from_u8(c).is_some());
    let len =
        bytes.get(MAGIC.len() + 1..HEADER_LEN).is_none_or(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) <= max_len);
    !bytes.is_empty() && bytes[..magic] == MAGIC[..magic] && command && len
}

/// What one byte fed to the [`Decoder`] produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing to do yet (magic, header or CRC byte, or skipped noise).
    Pending,
    /// A header was accepted: `len` payload bytes follow. The receiver
    /// prepares a buffer of that size.
    Start { command: Command, len: u32 },
    /// The next payload byte.
    Data(u8),
    /// The frame is complete and its CRC matched.
    Done { command: Command },
    /// The frame is refused; the decoder is hunting for the next magic.
    Error(Error),
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// `matched` bytes of the magic seen.
    Magic {
        matched: u8,
    },
    Command,
    Length {
        command: Command,
        got: u8,
        len: u32,
    },
    Payload {
        command: Command,
        left: u32,
    },
    Crc {
        command: Command,
        got: u8,
        crc: u32,
    },
}

/// A byte-at-a-time frame decoder: no buffer and no allocation of its own,
/// so the loader can feed it from an interrupt-driven receive path.
pub struct Decoder {
    state: State,
    max_len: u32,
    hasher: crc32fast::Hasher,
}

impl Decoder {
    /// A decoder that refuses payloads longer than `max_len`.
    pub fn new(max_len: u32) -> Decoder {
        Decoder { state: State::Magic { matched: 0 }, max_len, hasher: crc32fast::Hasher::new() }
    }

    /// Whether a magic was seen and the frame it began has not ended:
    /// the bytes fed since belong to that frame.
    pub fn in_frame(&self) -> bool {
        !matches!(self.state, State::Magic { .. })
    }

    /// Forgets the frame (or the part of a magic) seen so far.
    pub fn reset(&mut self) {
        self.state = State::Magic { matched: 0 };
    }

    pub fn feed(&mut self, byte: u8) -> Event {
        let (next, event) = match self.state {
            State::Magic { matched } => {
                // No proper prefix of "MVUP" is also a suffix of it, so on a
                // mismatch the only possible restart is this byte being 'M'.
                let matched = if byte == MAGIC[matched as usize] { matched + 1 } else { (byte == MAGIC[0]) as u8 };
                if matched as usize == MAGIC.len() {
                    (State::Command, Event::Pending)
                } else {
                    (State::Magic { matched }, Event::Pending)
                }
            }
            State::Command => match Command::from_u8(byte) {
                Some(command) => (State::Length { command, got: 0, len: 0 }, Event::Pending),
                None => (State::Magic { matched: 0 }, Event::Error(Error::UnknownCommand(byte))),
            },
            State::Length { command, got, len } => {
                let len = len | (byte as u32) << (8 * got);
                if got < 3 {
                    (State::Length { command, got: got + 1, len }, Event::Pending)
                } else if len > self.max_len {
                    (State::Magic { matched: 0 }, Event::Error(Error::TooLong { len, max: self.max_len }))
                } else {
                    self.hasher = crc32fast::Hasher::new();
                    let next = if len == 0 {
                        State::Crc { command, got: 0, crc: 0 }
                    } else {
                        State::Payload { command, left: len }
                    };
                    (next, Event::Start { command, len })
                }
            }
            State::Payload { command, left } => {
                self.hasher.update(&[byte]);
                let next = if left == 1 {
                    State::Crc { command, got: 0, crc: 0 }
                } else {
                    State::Payload { command, left: left - 1 }
                };
                (next, Event::Data(byte))
            }
            State::Crc { command, got, crc } => {
                let crc = crc | (byte as u32) << (8 * got);
                if got < 3 {
                    (State::Crc { command, got: got + 1, crc }, Event::Pending)
                } else {
                    let computed = self.hasher.clone().finalize();
                    let event = if computed == crc {
                        Event::Done { command }
                    } else {
                        Event::Error(Error::BadCrc { expected: crc, computed })
                    };
                    (State::Magic { matched: 0 }, event)
                }
            }
        };
        self.state = next;
        event
    }
}

/// The first word of a successful reply.
pub const REPLY_OK: &str = "ok";
/// The start of a failed reply.
pub const REPLY_ERROR: &str = "error: ";
/// After [`REPLY_ERROR`]: the frame was hurt on the way; send it again.
pub const RESEND: &str = "resend: ";
/// The first word of a loaded-plugin line.
pub const REPLY_PLUGIN: &str = "plugin";
/// The line that ends a successful reply.
pub const REPLY_END: &str = "end";

/// One loaded plugin in a successful reply; its `Display` is the line the
/// loader writes, and [`Loaded::parse`] reads it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loaded<'a> {
    pub name: &'a str,
    pub version: &'a str,
    /// Where the plugin's ELF image (its virtual address 0) was placed.
    pub load_address: u64,
    /// The file in the store, e.g. `plugins/counter-plugin-2.0.0.mvp`.
    pub path: &'a str,
}

impl fmt::Display for Loaded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{REPLY_PLUGIN} {} {} {:#x} {}", self.name, self.version, self.load_address, self.path)
    }
}

impl<'a> Loaded<'a> {
    /// Reads a `plugin ...` line; `None` if it is not one.
    pub fn parse(line: &'a str) -> Option<Loaded<'a>> {
        let mut words = line.split_ascii_whitespace();
        if words.next()? != REPLY_PLUGIN {
            return None;
        }
        let (name, version, address, path) = (words.next()?, words.next()?, words.next()?, words.next()?);
        let load_address = u64::from_str_radix(address.strip_prefix("0x")?, 16).ok()?;
        words.next().is_none().then_some(Loaded { name, version, load_address, path })
    }
}

/// Where a reply stands after a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyLine<'a> {
    /// `ok <summary>`: the operation succeeded; plugin lines follow.
    Ok(&'a str),
    Loaded(Loaded<'a>),
    /// `end`: the reply is complete.
    End,
    /// `error: <message>`: the operation failed; the reply is complete.
    Error(&'a str),
    /// `error: resend: <message>`: the frame was hurt on the way and
    /// nothing was done; the reply is complete. Send the frame again.
    Resend(&'a str),
}

/// A line that does not fit the reply grammar at this point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnexpectedLine<'a>(pub &'a str);

impl fmt::Display for UnexpectedLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unexpected reply line `{}` (want `ok ...`, `error: ...`, `plugin ...` or `end`)", self.0)
    }
}

/// Checks the order of reply lines: `error: ...`, or `ok ...`, any number
/// of `plugin ...`, `end`. Blank lines are skipped (`None`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplyParser {
    after_ok: bool,
}

impl ReplyParser {
    pub fn line<'a>(&mut self, line: &'a str) -> Result<Option<ReplyLine<'a>>, UnexpectedLine<'a>> {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return Ok(None);
        }
        let parsed = if !self.after_ok {
            if let Some(message) = line.strip_prefix(REPLY_ERROR) {
                message.strip_prefix(RESEND).map_or(ReplyLine::Error(message), ReplyLine::Resend)
            } else if line == REPLY_OK {
                ReplyLine::Ok("")
            } else if let Some(summary) = line.strip_prefix(REPLY_OK).and_then(|s| s.strip_prefix(' ')) {
                ReplyLine::Ok(summary)
            } else {
                return Err(UnexpectedLine(line));
            }
        } else if line == REPLY_END {
            ReplyLine::End
        } else {
            ReplyLine::Loaded(Loaded::parse(line).ok_or(UnexpectedLine(line))?)
        };
        self.after_ok = matches!(parsed, ReplyLine::Ok(_) | ReplyLine::Loaded(_));
        Ok(Some(parsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn guest_payloads_carry_a_checked_name_before_the_file() {
        let (prefix, n) = guest_prefix("hello.elf").unwrap();
        let mut payload = prefix[..n].to_vec();
        payload.extend_from_slice(b"\x7fELF");
        assert_eq!(guest_file(&payload), Ok(("hello.elf", &b"\x7fELF"[..])));
        for bad in ["", ".hidden", "a/b", "sp ace", &"x".repeat(33)] {
            assert!(guest_prefix(bad).is_none(), "{bad:?}");
        }
        assert_eq!(guest_file(&[]), Err(GuestError::Empty));
        assert_eq!(guest_file(&[5, b'a']), Err(GuestError::ShortName));
        assert_eq!(guest_file(&[3, b'a', b'/', b'b', 1]), Err(GuestError::BadName));
        assert_eq!(guest_file(&[1, b'a']), Err(GuestError::NoFile));
    }

    fn frame(command: Command, payload: &[u8]) -> Vec<u8> {
        let mut f = header(command, payload.len() as u32).to_vec();
        f.extend_from_slice(payload);
        f.extend_from_slice(&trailer(payload));
        f
    }

    /// Feeds `bytes`; returns the payload collected and every non-pending,
    /// non-data event.
    fn decode(d: &mut Decoder, bytes: &[u8]) -> (Vec<u8>, Vec<Event>) {
        let (mut data, mut events) = (Vec::new(), Vec::new());
        for &b in bytes {
            match d.feed(b) {
                Event::Pending => {}
                Event::Data(x) => data.push(x),
                e => events.push(e),
            }
        }
        (data, events)
    }

    #[test]
    fn header_layout_is_magic_command_length() {
        assert_eq!(header(Command::StoreAndSwap, 0x0102_0304), *b"MVUP\x02\x04\x03\x02\x01");
        // The IEEE CRC-32 check value.
        assert_eq!(trailer(b"123456789"), 0xcbf4_3926u32.to_le_bytes());
    }

    #[test]
    fn a_frame_round_trips() {
        let mut d = Decoder::new(1 << 20);
        let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let (data, events) = decode(&mut d, &frame(Command::StoreAndSwap, &payload));
        assert_eq!(data, payload);
        assert_eq!(
            events,
            [
                Event::Start { command: Command::StoreAndSwap, len: 1000 },
                Event::Done { command: Command::StoreAndSwap }
            ]
        );
        let (data, events) = decode(&mut d, &frame(Command::Store, &[]));
        assert!(data.is_empty());
        assert_eq!(events, [Event::Start { command: Command::Store, len: 0 }, Event::Done { command: Command::Store }]);
    }

    #[test]
    fn noise_before_a_frame_is_skipped() {
        let mut d = Decoder::new(100);
        let mut bytes = b"garbage MV MMVU\r\nMMVUP".to_vec();
        // The last "MVUP" above starts a frame whose command byte follows.
        bytes.extend_from_slice(&frame(Command::Store, b"abc")[4..]);
        let (data, events) = decode(&mut d, &bytes);
        assert_eq!(data, b"abc");
        assert_eq!(events.last(), Some(&Event::Done { command: Command::Store }));
    }

    #[test]
    fn damaged_frames_are_refused_and_the_next_one_decodes() {
        let mut d = Decoder::new(100);
        let mut bad = frame(Command::Store, b"hello");
        bad[HEADER_LEN + 1] ^= 0x20;
        let (_, events) = decode(&mut d, &bad);
        let computed = u32::from_le_bytes(trailer(b"hEllo"));
        let expected = u32::from_le_bytes(trailer(b"hello"));
        assert_eq!(events.last(), Some(&Event::Error(Error::BadCrc { expected, computed })));
        let (_, events) = decode(&mut d, b"MVUP\x07");
        assert_eq!(events, [Event::Error(Error::UnknownCommand(7))]);
        let (_, events) = decode(&mut d, &header(Command::Store, 101));
        assert_eq!(events, [Event::Error(Error::TooLong { len: 101, max: 100 })]);
        let (data, events) = decode(&mut d, &frame(Command::StoreAndSwap, b"ok"));
        assert_eq!(
            (data.as_slice(), events.last()),
            (&b"ok"[..], Some(&Event::Done { command: Command::StoreAndSwap }))
        );
    }

    #[test]
    fn frame_starts_are_recognised_as_far_as_they_go() {
        let h = header(Command::Store, 100);
        for n in 1..=HEADER_LEN {
            assert!(could_start_frame(&h[..n], 100), "{n} bytes of a header");
        }
        let mut f = h.to_vec();
        f.extend_from_slice(b"payload");
        assert!(could_start_frame(&f, 100));
        assert!(!could_start_frame(&f, 99), "over the limit");
        assert!(!could_start_frame(b"", 100));
        assert!(!could_start_frame(b"VUP", 100));
        assert!(!could_start_frame(b"MVUx", 100));
        assert!(!could_start_frame(b"MVUP\x07", 100), "unknown command");
    }

    #[test]
    fn refusals_say_whether_to_send_again() {
        let show = |e: Error| std::format!("{}", Refusal(&e));
        assert_eq!(
            show(Error::BadCrc { expected: 1, computed: 2 }),
            "resend: upload damaged in transit: CRC-32 0x00000002 of the payload, frame says 0x00000001"
        );
        assert!(show(Error::CutOff { at: 1009, len: 40000 }).starts_with("resend: upload cut off: "));
        assert!(show(Error::TimedOut { got: 9, idle_ms: 2000 }).starts_with("resend: upload timed out: "));
        assert!(show(Error::Lost).starts_with("resend: "));
        assert_eq!(show(Error::TooLong { len: 5, max: 4 }), "upload of 5 bytes exceeds the limit of 4 bytes");
        assert!(!show(Error::UnknownCommand(7)).contains("resend"));
        assert!(!show(Error::NoRoom { len: 7 }).contains("resend"));
        let mut p = ReplyParser::default();
        let line = std::format!("{REPLY_ERROR}{}", Refusal(&Error::Lost));
        assert_eq!(p.line(&line), Ok(Some(ReplyLine::Resend(&line["error: resend: ".len()..]))));
        assert_eq!(p.line("error: upload refused"), Ok(Some(ReplyLine::Error("upload refused"))));
    }

    #[test]
    fn loaded_lines_round_trip() {
        let l = Loaded {
            name: "counter-plugin",
            version: "2.0.0",
            load_address: 0xffff_8000_0010_0000,
            path: "plugins/counter-plugin-2.0.0.mvp",
        };
        let text = std::format!("{l}");
        assert_eq!(text, "plugin counter-plugin 2.0.0 0xffff800000100000 plugins/counter-plugin-2.0.0.mvp");
        assert_eq!(Loaded::parse(&text), Some(l));
        assert_eq!(Loaded::parse("plugin a 1.0.0 100000 p"), None, "address without 0x");
        assert_eq!(Loaded::parse("plugin a 1.0.0 0x10"), None, "no path");
        assert_eq!(Loaded::parse("plugin a 1.0.0 0x10 p extra"), None);
        assert_eq!(Loaded::parse("plugins a 1.0.0 0x10 p"), None);
    }

    #[test]
    fn replies_follow_the_grammar() {
        let mut p = ReplyParser::default();
        assert_eq!(
            p.line("ok swapped counter-plugin 1.0.0 -> 2.0.0\r\n"),
            Ok(Some(ReplyLine::Ok("swapped counter-plugin 1.0.0 -> 2.0.0")))
        );
        assert!(matches!(p.line("plugin c 2.0.0 0x1000 plugins/c-2.0.0.mvp"), Ok(Some(ReplyLine::Loaded(_)))));
        assert_eq!(p.line(""), Ok(None));
        assert_eq!(p.line("end"), Ok(Some(ReplyLine::End)));
        assert_eq!(p.line("end"), Err(UnexpectedLine("end")), "end outside a reply");
        assert_eq!(p.line("ok"), Ok(Some(ReplyLine::Ok(""))));
        assert_eq!(p.line("garbage"), Err(UnexpectedLine("garbage")));

        let mut p = ReplyParser::default();
        assert_eq!(p.line("error: signature does not verify"), Ok(Some(ReplyLine::Error("signature does not verify"))));
        assert_eq!(p.line("okay"), Err(UnexpectedLine("okay")));
        assert_eq!(
            p.line("plugin c 2.0.0 0x1000 p"),
            Err(UnexpectedLine("plugin c 2.0.0 0x1000 p")),
            "plugin before ok"
        );
    }
}
