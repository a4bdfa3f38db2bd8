//! A guest's checks, each printed as it is made: `<guest>: ok: <what>` or
//! `<guest>: FAILED: <what>`, so a VMM test can look for `FAILED`.

use core::fmt;

pub struct Checks {
    guest: &'static str,
    made: u32,
    failed: u32,
}

impl Checks {
    pub const fn new(guest: &'static str) -> Checks {
        Checks { guest, made: 0, failed: 0 }
    }

    /// Records and prints one check; returns `ok`.
    pub fn check(&mut self, ok: bool, what: fmt::Arguments<'_>) -> bool {
        self.made += 1;
        if !ok {
            self.failed += 1;
        }
        crate::println!("{}: {}: {what}", self.guest, if ok { "ok" } else { "FAILED" });
        ok
    }

    /// Prints a line that is no check.
    pub fn note(&self, what: fmt::Arguments<'_>) {
        crate::println!("{}: {what}", self.guest);
    }

    /// Counts checks made elsewhere (another vCPU's).
    pub fn add(&mut self, made: u32, failed: u32) {
        self.made += made;
        self.failed += failed;
    }

    pub fn made(&self) -> u32 {
        self.made
    }

    pub fn failed(&self) -> u32 {
        self.failed
    }

    /// Prints the tally and gives the exit status: pass only if none failed.
    pub fn finish(&self) -> u32 {
        crate::println!("{}: {} checks, {} failed", self.guest, self.made, self.failed);
        if self.failed == 0 {
            crate::status::PASS
        } else {
            crate::status::FAILED
        }
    }
}
