//! The host end of the guest's COM2: plugin upload frames and the
//! loader's replies. The frame and the reply grammar are
//! `plugins::upload`, which the loader uses too.
//!
//! Flow control is the emulator's: the loader stops reading its UART while
//! it cannot take more, QEMU then stops reading the socket, and writes here
//! wait (up to [`REPLY_TIMEOUT`]). A frame the loader got damaged, cut off
//! or late is answered `error: resend: ...`; [`Uplink::push`] sends it
//! again, up to [`ATTEMPTS`] times in all.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use plugins::upload::{self, Command, ReplyLine, ReplyParser};

use super::{Error, Result};

/// Far above a swap under TCG; the loader answers once the new version
/// runs or was refused. Also how long a write may wait for the guest.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times a frame is sent while the loader asks for it again.
pub const ATTEMPTS: usize = 3;

/// A complete upload frame.
pub fn frame(command: Command, payload: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(payload.len()).map_err(|_| Error::TooLarge(payload.len()))?;
    let mut f = upload::header(command, len).to_vec();
    f.extend_from_slice(payload);
    f.extend_from_slice(&upload::trailer(payload));
    Ok(f)
}

/// One reply of the loader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Its lines, up to and including `end` or the `error: ...` line.
    pub lines: Vec<String>,
    /// When it was complete, from the start of the push or burst.
    pub after: Duration,
}

impl Reply {
    /// Whether the loader asked for the frame again (`error: resend: ...`).
    pub fn asks_resend(&self) -> bool {
        let mut parser = ReplyParser::default();
        self.lines.iter().any(|l| matches!(parser.line(l), Ok(Some(ReplyLine::Resend(_)))))
    }
}

/// What a burst got back: the replies in order, and what stopped it
/// early, if anything did.
#[derive(Debug)]
pub struct BurstReplies {
    pub replies: Vec<Reply>,
    pub problem: Option<Error>,
}

/// A burst being written ([`Uplink::write_burst`]).
#[derive(Debug)]
pub struct Writing {
    start: Instant,
    /// Bytes the guest has taken so far (the socket's buffer included).
    sent: Arc<AtomicUsize>,
    thread: thread::JoinHandle<std::io::Result<()>>,
}

impl Writing {
    /// How many bytes are written so far: short of the burst while the
    /// guest holds the writer back.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }
}

/// Pieces small enough that [`Writing::sent`] follows the guest closely.
const BURST_CHUNK: usize = 4096;

/// A connection to the guest's COM2. One reader for the whole connection:
/// in a burst, replies follow each other with nothing between them.
pub struct Uplink {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Uplink {
    pub fn new(stream: UnixStream) -> Result<Uplink> {
        stream
            .set_write_timeout(Some(REPLY_TIMEOUT))
            .map_err(|e| Error::io("setting a timeout on the COM2 socket", e))?;
        let reader = stream.try_clone().map_err(|e| Error::io("cloning the COM2 socket", e))?;
        Ok(Uplink { writer: stream, reader: BufReader::new(reader) })
    }

    /// Sends `first` and waits for its reply; while the loader asks for the
    /// frame again, sends `again` (usually the same frame) up to
    /// [`ATTEMPTS`] times in all. `None` never sends again. Every reply, in
    /// order; the last one is final.
    pub fn push(&mut self, first: &[u8], again: Option<&[u8]>) -> Result<Vec<Reply>> {
        let start = Instant::now();
        let mut replies = Vec::new();
        let mut frame = first;
        loop {
            self.write(frame)?;
            let reply = self.read_reply(start, Instant::now() + REPLY_TIMEOUT)?;
            let resend = reply.asks_resend();
            replies.push(reply);
            match again {
                Some(next) if resend && replies.len() < ATTEMPTS => frame = next,
                _ => return Ok(replies),
            }
        }
    }

    /// Starts writing `bytes` in one go, on a thread of its own: the guest
    /// holds the writer back while it works through what came before (or
    /// while it holds COM2), so its answers must be read meanwhile
    /// ([`Uplink::answers`]). Nothing of a burst is sent again.
    pub fn write_burst(&mut self, bytes: Vec<u8>) -> Result<Writing> {
        let mut writer = self.writer.try_clone().map_err(|e| Error::io("cloning the COM2 socket", e))?;
        let start = Instant::now();
        let sent = Arc::new(AtomicUsize::new(0));
        let progress = Arc::clone(&sent);
        let thread = thread::spawn(move || {
            for chunk in bytes.chunks(BURST_CHUNK) {
                writer.write_all(chunk)?;
                progress.fetch_add(chunk.len(), Ordering::Relaxed);
            }
            writer.flush()
        });
        Ok(Writing { start, sent, thread })
    }

    /// Reads `answers` replies to `writing`'s burst, the first within
    /// `deadline` of this call, each later one within `deadline` of the one
    /// before; then waits for the writer.
    pub fn answers(&mut self, writing: Writing, answers: usize, deadline: Duration) -> BurstReplies {
        let mut replies = Vec::new();
        let mut problem = None;
        let mut since = Instant::now();
        while replies.len() < answers {
            match self.read_reply(writing.start, since + deadline) {
                Ok(r) => {
                    since = writing.start + r.after;
                    replies.push(r);
                }
                Err(e) => {
                    problem = Some(e);
                    break;
                }
            }
        }
        let written = match writing.thread.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Error::io("writing a burst to the COM2 socket", e)),
            Err(_) => Some(Error::Com2("the COM2 writer thread panicked".into())),
        };
        BurstReplies { replies, problem: problem.or(written) }
    }

    fn write(&mut self, frame: &[u8]) -> Result<()> {
        self.writer.write_all(frame).map_err(|e| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Error::Com2(format!(
                "the guest took no more bytes on COM2 for {} s (is its shell busy or hung?)",
                REPLY_TIMEOUT.as_secs()
            )),
            _ => Error::io("writing to the COM2 socket", e),
        })
    }

    /// The reply's lines up to and including `end` or `error: ...`, by
    /// `deadline`.
    fn read_reply(&mut self, start: Instant, deadline: Instant) -> Result<Reply> {
        let mut parser = ReplyParser::default();
        let mut lines = Vec::new();
        loop {
            let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero());
            let timed_out = || {
                Error::Com2(format!(
                    "no complete reply on COM2 within {:.1} s (does this loader listen on COM2?)",
                    deadline.saturating_duration_since(start).as_secs_f64()
                ))
            };
            let left = left.ok_or_else(timed_out)?;
            self.reader
                .get_ref()
                .set_read_timeout(Some(left))
                .map_err(|e| Error::io("setting a timeout on the COM2 socket", e))?;
            let mut raw = Vec::new();
            let n = self.reader.read_until(b'\n', &mut raw).map_err(|e| match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => timed_out(),
                _ => Error::io("reading the loader's reply from COM2", e),
            })?;
            if n == 0 {
                return Err(Error::Com2("QEMU closed COM2 before the reply was complete".into()));
            }
            let line = String::from_utf8_lossy(&raw).trim_end().to_string();
            let done = match parser.line(&line).map_err(|e| Error::Com2(e.to_string()))? {
                Some(ReplyLine::End | ReplyLine::Error(_) | ReplyLine::Resend(_)) => true,
                Some(_) => false,
                None => continue,
            };
            lines.push(line);
            if done {
                return Ok(Reply { lines, after: start.elapsed() });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;

    #[test]
    fn frames_decode_with_the_loaders_decoder() {
        let f = frame(Command::StoreAndSwap, b"payload").unwrap();
        let mut d = upload::Decoder::new(1024);
        let events: Vec<upload::Event> = f.iter().map(|b| d.feed(*b)).collect();
        assert_eq!(events.last(), Some(&upload::Event::Done { command: Command::StoreAndSwap }));
    }

    /// A socket in a directory of its own, removed on drop.
    struct Socket(PathBuf);

    impl Socket {
        fn new(name: &str) -> (Socket, UnixListener) {
            let dir = std::env::temp_dir().join(format!("modvisor-com2-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("s");
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path).unwrap();
            (Socket(dir), listener)
        }

        fn connect(&self) -> Uplink {
            Uplink::new(UnixStream::connect(self.0.join("s")).unwrap()).unwrap()
        }
    }

    impl Drop for Socket {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Reads one frame of `n` bytes from the client.
    fn take(s: &mut UnixStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        s.read_exact(&mut buf).unwrap();
        buf
    }

    #[test]
    fn replies_are_read_up_to_their_end() {
        let (socket, listener) = Socket::new("replies");
        let loader = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            take(&mut s, 1);
            s.write_all(b"ok swapped\r\nplugin c 2.0.0 0x1000 plugins/c-2.0.0.mvp\r\n\r\nend\r\nerror: next\n")
                .unwrap();
            take(&mut s, 1);
            let (mut s, _) = listener.accept().unwrap();
            take(&mut s, 1);
            s.write_all(b"ok\nplugin c").unwrap();
        });
        let mut up = socket.connect();
        let lines = |r: Vec<Reply>| r.into_iter().map(|r| r.lines).collect::<Vec<_>>();
        assert_eq!(
            lines(up.push(b"x", None).unwrap()),
            [["ok swapped", "plugin c 2.0.0 0x1000 plugins/c-2.0.0.mvp", "end"]]
        );
        // What came after the first reply is kept for the next one.
        assert_eq!(lines(up.push(b"y", None).unwrap()), [["error: next"]]);
        let e = socket.connect().push(b"z", None).unwrap_err().to_string();
        assert!(e.contains("unexpected reply line `plugin c`"), "{e}");
        loader.join().unwrap();
    }

    #[test]
    fn a_frame_is_sent_again_while_the_loader_asks() {
        let (socket, listener) = Socket::new("resend");
        let loader = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            assert_eq!(take(&mut s, 3), b"bad");
            s.write_all(b"error: resend: upload damaged in transit\n").unwrap();
            assert_eq!(take(&mut s, 4), b"good");
            s.write_all(b"ok stored\nend\n").unwrap();
            // Asked again every time: three attempts, then the last reply stands.
            for _ in 0..ATTEMPTS {
                assert_eq!(take(&mut s, 4), b"same");
                s.write_all(b"error: resend: upload timed out\n").unwrap();
            }
            assert_eq!(take(&mut s, 4), b"once");
            s.write_all(b"error: resend: upload cut off\n").unwrap();
            // Refusals that sending again cannot cure are final.
            assert_eq!(take(&mut s, 4), b"file");
            s.write_all(b"error: upload refused: bad signature\n").unwrap();
        });
        let mut up = socket.connect();
        let replies = up.push(b"bad", Some(b"good")).unwrap();
        assert_eq!(replies.len(), 2);
        assert!(replies[0].asks_resend() && !replies[1].asks_resend());
        assert_eq!(replies[1].lines, ["ok stored", "end"]);
        let replies = up.push(b"same", Some(b"same")).unwrap();
        assert_eq!(replies.len(), ATTEMPTS);
        assert!(replies.iter().all(Reply::asks_resend));
        assert_eq!(up.push(b"once", None).unwrap().len(), 1, "never sent again");
        assert_eq!(up.push(b"file", Some(b"file")).unwrap().len(), 1);
        loader.join().unwrap();
    }

    #[test]
    fn a_burst_reads_every_answer_while_writing_and_notes_a_late_one() {
        let (socket, listener) = Socket::new("burst");
        // More than a socket buffer holds, answered once per megabyte.
        let bytes: Vec<u8> = (0..4_000_000u32).map(|i| i as u8).collect();
        let total = bytes.len();
        let loader = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let (mut got, mut next) = (0, 1_000_000);
            let mut buf = vec![0; 65536];
            while got < total {
                got += s.read(&mut buf).unwrap();
                while got >= next {
                    s.write_all(format!("ok stored {next}\nend\n").as_bytes()).unwrap();
                    next += 1_000_000;
                }
            }
        });
        let mut up = socket.connect();
        let writing = up.write_burst(bytes).unwrap();
        let got = up.answers(writing, 4, Duration::from_secs(5));
        assert_eq!(got.replies.len(), 4);
        assert!(got.problem.is_none(), "{:?}", got.problem);
        let firsts: Vec<&str> = got.replies.iter().map(|r| r.lines[0].as_str()).collect();
        assert_eq!(firsts, ["ok stored 1000000", "ok stored 2000000", "ok stored 3000000", "ok stored 4000000"]);
        assert!(got.replies.windows(2).all(|w| w[0].after <= w[1].after));
        loader.join().unwrap();
        // Connected but never answered: the answer is late, and says so.
        let (silent, _listener) = Socket::new("silent");
        let mut up = silent.connect();
        let writing = up.write_burst(vec![1]).unwrap();
        let got = up.answers(writing, 1, Duration::from_millis(200));
        assert!(got.replies.is_empty());
        let e = got.problem.unwrap().to_string();
        assert!(e.contains("no complete reply on COM2 within 0.2 s"), "{e}");
    }
}
