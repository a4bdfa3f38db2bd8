//! The expect engine on a guest's COM1: QEMU's serial socket is read on a
//! thread into a shared transcript, and waits look for what the guest
//! prints there (a prompt, a handshake line) with a deadline.
//!
//! Offsets are byte offsets into the transcript as text (the loader writes
//! ASCII only).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use loader_core::shell::{GREETING, PROMPT};

use crate::machine::process::Guard;

/// How long QEMU may take to create its serial socket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

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

pub fn transcript_len(received: &Received) -> usize {
    String::from_utf8_lossy(&received.0.lock().unwrap_or_else(|e| e.into_inner())).len()
}

/// Connects to QEMU's serial socket, which appears once QEMU is up; QEMU
/// (`server=on,wait=on`) starts the guest only after this connection, so
/// nothing the guest prints is missed.
pub fn connect(socket: &Path, child: &mut Guard) -> io::Result<UnixStream> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
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
pub fn receive(stream: &UnixStream, serial_log: &Path) -> io::Result<(Received, thread::JoinHandle<()>)> {
    let received: Received = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
    let shared = Arc::clone(&received);
    let mut stream = stream.try_clone()?;
    let mut log = File::create(serial_log)?;
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

/// The transcript so far.
pub fn transcript(received: &Received) -> String {
    String::from_utf8_lossy(&received.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the loader prints up to the interactive prompt.
    const BOOT: &str = "cpus: 2 enabled at boot, 2 hot-pluggable\r\n\
         modvisor> echo hello from the command line\r\nhello from the command line\r\n\
         type `help` for commands\r\nmodvisor> ";

    #[test]
    fn prompts_are_found_only_at_line_starts() {
        let t = "modvisor> echo modvisor> x\r\nmodvisor> x\r\nmodvisor> ";
        assert_eq!(prompt_end(t, 0, 1), Some(PROMPT.len()));
        let second = t.find("\nmodvisor> x").unwrap() + 1 + PROMPT.len();
        assert_eq!(prompt_end(t, 1, 1), Some(second));
        assert_eq!(prompt_end(t, 1, 2), Some(t.len()));
        assert_eq!(prompt_end(t, 1, 3), None);
        assert_eq!(ready(BOOT), Some(BOOT.len()));
        assert_eq!(ready("modvisor> echo\r\n"), None);
    }

    #[test]
    fn waits_see_what_the_reader_received() {
        let received: Received = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        assert_eq!(wait_for(&received, Duration::from_millis(10), ready), None);
        let shared = Arc::clone(&received);
        let writer = thread::spawn(move || {
            shared.0.lock().unwrap().extend_from_slice(BOOT.as_bytes());
            shared.1.notify_all();
        });
        assert_eq!(wait_for(&received, Duration::from_secs(10), ready), Some(BOOT.len()));
        writer.join().unwrap();
        assert_eq!(transcript_len(&received), BOOT.len());
        assert_eq!(transcript(&received), BOOT);
    }
}
