//! For in-image tests: a copy of the console output from `start` on, so
//! that a test can check the message a refusal logged. Fixed-size (no
//! allocation on the console path); what does not fit is dropped.

use spin::Mutex;

const SIZE: usize = 8192;

struct Capture {
    on: bool,
    len: usize,
    bytes: [u8; SIZE],
}

static CAPTURE: Mutex<Capture> = Mutex::new(Capture { on: false, len: 0, bytes: [0; SIZE] });

/// Starts a fresh copy.
pub fn start() {
    let mut c = CAPTURE.lock();
    c.on = true;
    c.len = 0;
}

/// The copy since `start` (it goes on); lossy where a write split a
/// character.
pub fn text() -> alloc::string::String {
    let c = CAPTURE.lock();
    alloc::string::String::from_utf8_lossy(&c.bytes[..c.len]).into_owned()
}

pub fn stop() {
    CAPTURE.lock().on = false;
}

pub(super) fn note(s: &str) {
    // Interrupts are off (the console's lock is held): no handler on this
    // CPU can wait for this lock while it is held.
    let mut c = CAPTURE.lock();
    if !c.on {
        return;
    }
    let at = c.len;
    let n = s.len().min(SIZE - at);
    c.bytes[at..at + n].copy_from_slice(&s.as_bytes()[..n]);
    c.len += n;
}
