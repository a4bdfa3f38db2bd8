//! The host end of the guest's COM2: plugin upload frames and the
//! loader's replies. The frame and the reply grammar are
//! `plugins::upload`, which the loader uses too.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use plugins::upload::{self, Command, ReplyLine, ReplyParser};

use super::{Error, Result};

/// Far above a swap under TCG; the loader answers once the new version
/// runs or was refused.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// A complete upload frame.
pub fn frame(command: Command, payload: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(payload.len()).map_err(|_| Error::TooLarge(payload.len()))?;
    let mut f = upload::header(command, len).to_vec();
    f.extend_from_slice(payload);
    f.extend_from_slice(&upload::trailer(payload));
    Ok(f)
}

/// Sends one frame (whole or damaged on purpose) and returns the loader's
/// reply. Frames go one at a time: the loader answers each before the next.
pub fn push(stream: &UnixStream, frame: &[u8]) -> Result<Vec<String>> {
    let mut writer = stream;
    writer.write_all(frame).map_err(|e| Error::io("writing to the COM2 socket", e))?;
    read_reply(stream)
}

/// The reply's lines up to and including `end` or `error: ...`. The
/// loader sends nothing unasked, so the buffer dropped here holds nothing
/// of the next reply on the same stream.
fn read_reply(stream: &UnixStream) -> Result<Vec<String>> {
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(|e| Error::io("setting a timeout on the COM2 socket", e))?;
    let mut reader = BufReader::new(stream);
    let mut parser = ReplyParser::default();
    let mut lines = Vec::new();
    loop {
        let mut raw = Vec::new();
        let n = reader.read_until(b'\n', &mut raw).map_err(|e| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Error::Com2(format!(
                "no complete reply on COM2 within {} s (does this loader listen on COM2?)",
                REPLY_TIMEOUT.as_secs()
            )),
            _ => Error::io("reading the loader's reply from COM2", e),
        })?;
        if n == 0 {
            return Err(Error::Com2("QEMU closed COM2 before the reply was complete".into()));
        }
        let line = String::from_utf8_lossy(&raw).trim_end().to_string();
        let done = match parser.line(&line).map_err(|e| Error::Com2(e.to_string()))? {
            Some(ReplyLine::End | ReplyLine::Error(_)) => true,
            Some(_) => false,
            None => continue,
        };
        lines.push(line);
        if done {
            return Ok(lines);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::path::Path;

    #[test]
    fn frames_decode_with_the_loaders_decoder() {
        let f = frame(Command::StoreAndSwap, b"payload").unwrap();
        let mut d = upload::Decoder::new(1024);
        let events: Vec<upload::Event> = f.iter().map(|b| d.feed(*b)).collect();
        assert_eq!(events.last(), Some(&upload::Event::Done { command: Command::StoreAndSwap }));
    }

    #[test]
    fn replies_are_read_up_to_their_end() {
        let dir = std::env::temp_dir().join(format!("modvisor-swap-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        let listener = UnixListener::bind(&path).unwrap();
        let loader = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"ok swapped\r\nplugin c 2.0.0 0x1000 plugins/c-2.0.0.mvp\r\n\r\nend\r\nnot read\n").unwrap();
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"error: bad signature\n").unwrap();
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"ok\nplugin c").unwrap();
        });
        let reply = |p: &Path| read_reply(&UnixStream::connect(p).unwrap());
        assert_eq!(reply(&path).unwrap(), ["ok swapped", "plugin c 2.0.0 0x1000 plugins/c-2.0.0.mvp", "end"]);
        assert_eq!(reply(&path).unwrap(), ["error: bad signature"]);
        let e = reply(&path).unwrap_err().to_string();
        assert!(e.contains("unexpected reply line `plugin c`"), "{e}");
        loader.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
