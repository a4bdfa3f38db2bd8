//! The hotplug lock (Linux's cpus_read_lock / cpus_write_lock): readers
//! keep the set of online CPUs steady while they look at it; the writer is
//! a bring-up, tear-down, setup or removal. A writer announces itself
//! first and then waits for the readers inside to leave, and new readers
//! wait while a writer is announced, so a stream of readers cannot starve
//! hotplug.
//!
//! The callbacks and subscribers run while the writer holds the lock: they
//! must not take it (`read` would wait for their own walk). Lock order:
//! the loader's plugin registry lock (OP, held by load/unload/swap) comes
//! before this lock, and this one before cpuhp's machine mutex; the loader's
//! SMP call lock is taken innermost, while a callback is sent to a CPU.

use core::sync::atomic::{AtomicU32, Ordering};

const WRITER: u32 = 1 << 31;

#[derive(Debug, Default)]
pub struct HotplugLock {
    /// Writer bit, then the number of readers inside.
    word: AtomicU32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockError {
    /// `read_unlock` without a matching `read_lock`.
    NotHeld,
}

impl HotplugLock {
    pub const fn new() -> HotplugLock {
        HotplugLock { word: AtomicU32::new(0) }
    }

    /// Takes the read side once no writer is announced.
    pub fn read(&self) {
        loop {
            let w = self.word.load(Ordering::Relaxed);
            if w & WRITER == 0
                && self.word.compare_exchange_weak(w, w + 1, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                return;
            }
            core::hint::spin_loop();
        }
    }

    pub fn read_unlock(&self) -> Result<(), LockError> {
        self.word
            .fetch_update(Ordering::Release, Ordering::Relaxed, |w| (w & !WRITER != 0).then(|| w - 1))
            .map(|_| ())
            .map_err(|_| LockError::NotHeld)
    }

    /// Announces a writer (waiting for an earlier one), then waits until
    /// the readers inside have left.
    pub fn write(&self) {
        while self.word.fetch_or(WRITER, Ordering::Acquire) & WRITER != 0 {
            core::hint::spin_loop();
        }
        while self.word.load(Ordering::Acquire) != WRITER {
            core::hint::spin_loop();
        }
    }

    pub fn write_unlock(&self) {
        self.word.fetch_and(!WRITER, Ordering::Release);
    }

    /// Whether anyone holds or waits for the lock (a swap refuses then).
    pub fn is_busy(&self) -> bool {
        self.word.load(Ordering::Acquire) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn readers_share_and_unlock_is_checked() {
        let l = HotplugLock::new();
        l.read();
        l.read();
        assert!(l.is_busy());
        assert_eq!(l.read_unlock(), Ok(()));
        assert_eq!(l.read_unlock(), Ok(()));
        assert_eq!(l.read_unlock(), Err(LockError::NotHeld));
        assert!(!l.is_busy());
        l.write();
        assert_eq!(l.read_unlock(), Err(LockError::NotHeld), "the writer bit is not a reader");
        l.write_unlock();
    }

    #[test]
    fn writer_waits_for_readers_and_blocks_new_ones() {
        let l = Arc::new(HotplugLock::new());
        l.read();
        let written = Arc::new(AtomicBool::new(false));
        let released = Arc::new(AtomicBool::new(false));
        let (l2, w2, r2) = (l.clone(), written.clone(), released.clone());
        let writer = std::thread::spawn(move || {
            l2.write();
            w2.store(true, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(20));
            r2.store(true, Ordering::SeqCst);
            l2.write_unlock();
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!written.load(Ordering::SeqCst), "the writer got in past a reader");
        l.read_unlock().unwrap();
        while !written.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
        l.read();
        // The writer sleeps 20 ms holding the lock; our read waited for it.
        assert!(released.load(Ordering::SeqCst));
        l.read_unlock().unwrap();
        writer.join().unwrap();
    }
}
