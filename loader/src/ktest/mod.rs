//! In-image tests (`ktest`): suites of plain functions, selected by name on
//! the command line (`test=`); each test prints one result line, then a
//! summary line and the exit status follow. Compiled only into test images
//! (the `ktest` feature).
//!
//! A suite sits next to what it tests (`memory/ktests.rs`, ...) and
//! registers itself with [`suite!`], which places it in the `.ktest`
//! linker section; this module holds the runner, which finds every suite
//! between the section's bounds, and the suites of the plugins (`cpuhp`,
//! `vmx`, and `heap` for every plugin's heap account), which drive them
//! through the loader's own paths.

mod cpuhp;
mod guests;
mod heap;
mod requests;
mod selftest;
mod vm_api;
mod vm_api_code;
mod vmx;

use crate::interrupts::idt::{self, Handler};
use core::fmt::{self, Write};
use loader_core::power::exit::Status;

pub struct Test {
    pub name: &'static str,
    pub run: fn() -> Result<(), Failure>,
}

/// Whether `test=all` runs a suite.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum InAll {
    Yes,
    /// Suites that end the run themselves (a reset, a power-off), wait for
    /// the host runner to act (QMP hot-add and remove), hold only where the
    /// emulator has VMX (Bochs) or has not (QEMU's TCG), or fail on purpose
    /// (`selftest-*`): they run only when named.
    OnlyWhenNamed,
}

pub struct Suite {
    pub name: &'static str,
    pub tests: &'static [Test],
    pub in_all: InAll,
}

/// Calls into the active provider of `T`'s interface as loader code must:
/// bracketed, so that a swap never frees code under the call. A provider
/// whose table is smaller than `T` counts as none.
pub fn with<T: plugins::Interface, R>(f: impl FnOnce(&T) -> R) -> Result<R, Failure> {
    let size = core::mem::size_of::<T>();
    crate::smp::enter_unstoppable();
    let r = crate::plugin::registry::provider_table(T::NAME, size).map(|t| {
        // SAFETY: the provider declared this table as `T` (`Interface` ties
        // the name to the type) and it has at least `T`'s bytes; it stays
        // mapped while this CPU is unstoppable, since no swap can commit.
        f(unsafe { &*t.cast::<T>() })
    });
    crate::smp::exit_unstoppable();
    r.ok_or_else(|| crate::failure!("nothing provides `{}` with a table of at least {size} bytes", T::NAME))
}

/// Registers a suite: `suite!(NAME_OF_STATIC, "name", TESTS)`, optionally
/// followed by `, InAll::OnlyWhenNamed`.
#[macro_export]
macro_rules! suite {
    ($static:ident, $name:literal, $tests:expr) => {
        $crate::suite!($static, $name, $tests, $crate::ktest::InAll::Yes);
    };
    ($static:ident, $name:literal, $tests:expr, $in_all:expr) => {
        #[used]
        #[link_section = ".ktest"]
        static $static: $crate::ktest::Suite = $crate::ktest::Suite { name: $name, tests: $tests, in_all: $in_all };
    };
}

/// Every registered suite, in link order.
fn suites() -> &'static [Suite] {
    extern "C" {
        static __ktest_start: u8;
        static __ktest_end: u8;
    }
    let start = (&raw const __ktest_start).cast::<Suite>();
    let bytes = (&raw const __ktest_end).addr() - start.addr();
    // SAFETY: the linker script gathers every `.ktest` input section, each
    // one `Suite` static placed by `suite!` (its size a multiple of its
    // alignment, so they lie back to back), between the two symbols, in
    // read-only data that lives as long as the loader.
    unsafe { core::slice::from_raw_parts(start, bytes / core::mem::size_of::<Suite>()) }
}

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
        $crate::ktest::Failure::new(format_args!($($arg)+))
    };
}

/// Fails the test with a formatted message unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::ktest::Failure::new(format_args!($($arg)+)));
        }
    };
}

/// Fails the test unless both sides are equal, printing both.
#[macro_export]
macro_rules! check_eq {
    ($a:expr, $b:expr, $($arg:tt)+) => {{
        let (a, b) = (&$a, &$b);
        if a != b {
            return Err($crate::ktest::Failure::new(format_args!(
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
    match names.find(|n| *n != "all" && !suites().iter().any(|s| s.name == *n)) {
        Some(unknown) => Err(unknown),
        None => Ok(()),
    }
}

/// The names of every suite, in link order (allocates nothing).
pub fn list() -> impl Iterator<Item = &'static str> {
    suites().iter().map(|s| s.name)
}

/// The names of every suite, sorted.
fn names() -> alloc::vec::Vec<&'static str> {
    let mut names: alloc::vec::Vec<_> = suites().iter().map(|s| s.name).collect();
    names.sort_unstable();
    names
}

/// Runs the selected suites, each once, in the order the command line
/// names them (`all`: every suite of [`InAll::Yes`], by name), and returns
/// the image's exit status.
pub fn run(cl: &loader_core::boot::cmdline::CommandLine) -> Status {
    let mut selected: alloc::vec::Vec<&Suite> = alloc::vec::Vec::new();
    for name in cl.suites() {
        for suite in names().into_iter().filter_map(|n| suites().iter().find(|s| s.name == n)) {
            let wanted = suite.name == name || (name == "all" && suite.in_all == InAll::Yes);
            if wanted && !selected.iter().any(|s| core::ptr::eq(*s, suite)) {
                selected.push(suite);
            }
        }
    }
    let (mut passed, mut failed) = (0, 0);
    for suite in selected {
        for t in suite.tests {
            crate::time::watchdog::pet();
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
