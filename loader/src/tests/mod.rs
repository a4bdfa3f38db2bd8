//! In-image tests: suites of plain functions in a static table (no nightly
//! test framework), selected by name on the command line. Each test prints
//! one result line; a summary line and the exit status follow.
//!
//! Tests live next to what they test (`mem::tests`, ...); this module only
//! holds the registry and the runner.

// Every test returns `Failure`, a fixed buffer on purpose (see below).

mod selftest;

use crate::cpu::idt::{self, Handler};
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
    Suite { name: "boot", tests: crate::boot::tests::TESTS },
    Suite { name: "mem", tests: crate::mem::tests::TESTS },
    Suite { name: "cpu", tests: crate::cpu::tests::TESTS },
    Suite { name: "acpi", tests: crate::acpi::tests::TESTS },
    Suite { name: "smp", tests: crate::smp::tests::TESTS },
    Suite { name: "shell", tests: crate::shell::tests::TESTS },
    Suite { name: "plugin-image", tests: crate::plugin::image::tests::TESTS },
    Suite { name: "plugins", tests: crate::plugin::tests::TESTS },
    Suite { name: "bench-plugins", tests: crate::plugin::tests::BENCH },
    Suite { name: "acpihp", tests: crate::sci::tests::TESTS },
    Suite { name: "cpuhp", tests: crate::plugin::cpuhp_tests::TESTS },
    Suite { name: "cpuhp-maxcpus", tests: crate::plugin::cpuhp_tests::MAXCPUS },
    Suite { name: "bench-cpuhp", tests: crate::plugin::cpuhp_tests::BENCH },
    Suite { name: "vmx", tests: crate::plugin::vmx_tests::TESTS },
    Suite { name: "vmx-panic", tests: crate::plugin::vmx_tests::PANIC },
    Suite { name: "vmx-absent", tests: crate::plugin::vmx_tests::ABSENT },
    Suite { name: "bench-vmx", tests: crate::plugin::vmx_tests::BENCH },
    Suite { name: "reboot", tests: crate::power::tests::REBOOT },
    Suite { name: "poweroff", tests: crate::power::tests::POWEROFF },
    Suite { name: "selftest-fail", tests: selftest::FAIL },
    Suite { name: "selftest-panic", tests: selftest::PANIC },
    Suite { name: "selftest-exception", tests: selftest::EXCEPTION },
    Suite { name: "selftest-hang", tests: selftest::HANG },
];

/// Suites that end the run themselves (a reset, a power-off), wait for
/// the host runner to act (`acpihp`: QMP hot-add and remove), or hold only
/// where the emulator has VMX (Bochs) or has not (QEMU's TCG): `all` leaves
/// them out, so they run only when named.
const NOT_IN_ALL: [&str; 7] = ["reboot", "poweroff", "acpihp", "vmx", "vmx-panic", "vmx-absent", "bench-vmx"];

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

/// A [`Failure`] with a formatted message, for `Err(...)` and `map_err`.
#[macro_export]
macro_rules! failure {
    ($($arg:tt)+) => {
        $crate::tests::Failure::new(format_args!($($arg)+))
    };
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

/// Lends the first free interrupt vector to `handler` while `f` runs, then
/// gives it back. `f` must silence its interrupt source before returning;
/// interrupts stay enabled for a millisecond before the handler goes, so an
/// interrupt already on its way still finds it.
pub fn with_vector<R>(handler: Handler, f: impl FnOnce(u8) -> R) -> Result<R, Failure> {
    let Some(vector) = (idt::FIRST_INTERRUPT..idt::SPURIOUS).find(|v| idt::set_handler(*v, handler).is_ok()) else {
        return Err(failure!("no free interrupt vector"));
    };
    let r = f(vector);
    crate::time::delay_us(1000);
    idt::clear_handler(vector);
    Ok(r)
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
/// `selftest-*` ones and those that end the run) and returns the image's
/// exit status.
pub fn run(cl: &loader::cmdline::CommandLine) -> Status {
    let in_all = |s: &Suite| !s.name.starts_with("selftest") && !NOT_IN_ALL.contains(&s.name);
    let selected = |s: &&Suite| cl.suites().any(|n| n == s.name || (n == "all" && in_all(s)));
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
    if failed == 0 {
        Status::Pass
    } else {
        Status::TestFailure
    }
}
