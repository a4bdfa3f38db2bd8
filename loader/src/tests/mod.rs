//! In-image tests: suites of plain functions in a static table (no nightly
//! test framework), selected by name on the command line. Each test prints
//! one result line; a summary line and the exit status follow.
//!
//! Tests live next to what they test (`mem::tests`, ...); this module only
//! holds the registry and the runner.

// Every test returns `Failure`, a fixed buffer on purpose (see below).
#![allow(clippy::result_large_err)]

mod selftest;

use core::fmt::{self, Write};
use loader::exit::Status;

pub struct Test {
    pub name: &'static str,
    pub run: fn() -> Result<(), Failure>,
}

pub struct Suite {
    pub name: &'static str,
    pub tests: &'static [Test],
}

/// Every suite an image can select.
static SUITES: &[Suite] = &[
    Suite { name: "smp", tests: crate::smp::tests::TESTS },
    Suite { name: "selftest-fail", tests: selftest::FAIL },
    Suite { name: "selftest-panic", tests: selftest::PANIC },
    Suite { name: "selftest-exception", tests: selftest::EXCEPTION },
    Suite { name: "selftest-hang", tests: selftest::HANG },
    Suite { name: "mem", tests: crate::mem::tests::TESTS },
];

/// A failed check. Formatted into a fixed buffer so that reporting a
/// failure never depends on the heap, which some tests exhaust on purpose.
pub struct Failure {
    buf: [u8; 240],
    len: usize,
}

impl Failure {
    pub fn new(args: fmt::Arguments) -> Failure {
        let mut f = Failure { buf: [0; 240], len: 0 };
        let _ = f.write_fmt(args);
        f
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("<message cut inside a character>")
    }
}

impl Write for Failure {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Fails the test with a formatted message unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::tests::Failure::new(format_args!($($arg)+)));
        }
    };
}

/// Fails the test unless both sides are equal, printing both.
#[macro_export]
macro_rules! check_eq {
    ($a:expr, $b:expr, $($arg:tt)+) => {{
        let (a, b) = (&$a, &$b);
        if a != b {
            return Err($crate::tests::Failure::new(format_args!(
                "{}: {:?} != {:?}", format_args!($($arg)+), a, b)));
        }
    }};
}

/// Checks that every suite named on the command line exists.
pub fn validate<'a>(mut names: impl Iterator<Item = &'a str>) -> Result<(), &'a str> {
    match names.find(|n| *n != "all" && !SUITES.iter().any(|s| s.name == *n)) {
        Some(unknown) => Err(unknown),
        None => Ok(()),
    }
}

pub fn list() -> impl Iterator<Item = &'static str> {
    SUITES.iter().map(|s| s.name)
}

/// Runs the selected suites (`all`: every suite but the deliberately failing
/// `selftest-*` ones) and returns the image's exit status.
pub fn run(cl: &loader::cmdline::CommandLine) -> Status {
    let selected = |s: &&Suite| {
        cl.suites().any(|n| n == s.name || (n == "all" && !s.name.starts_with("selftest")))
    };
    let (mut passed, mut failed) = (0, 0);
    for suite in SUITES.iter().filter(selected) {
        for t in suite.tests {
            crate::watchdog::pet();
            match (t.run)() {
                Ok(()) => {
                    passed += 1;
                    crate::println!("test {}::{} ... ok", suite.name, t.name);
                }
                Err(f) => {
                    failed += 1;
                    crate::println!("test {}::{} ... FAILED: {}", suite.name, t.name, f.as_str());
                }
            }
        }
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    crate::println!("test result: {verdict}. {passed} passed; {failed} failed");
    if failed == 0 { Status::Pass } else { Status::TestFailure }
}
