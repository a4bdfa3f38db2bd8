//! How one boot ended, decided from the emulator's exit and the serial log.
//!
//! QEMU: the `isa-debug-exit` status is the authority, and the marker line
//! the loader prints before exiting must agree with it. Exit 0 is ambiguous
//! (ACPI power-off, or a reset/triple fault under `-no-reboot`); only the
//! `poweroff` marker makes it a power-off. Bochs always exits 1, so there
//! the marker alone decides.

use std::fmt;

use loader_core::power::exit::{Status, MARKER};

use super::layout::Emulator;

/// How the emulator process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Code(i32),
    /// Killed by a signal it did not send itself.
    Signal(i32),
    /// The runner's deadline passed and it killed the emulator.
    TimedOut,
}

/// The verdict on one boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The loader ended with a documented status.
    Exited(Status),
    /// QEMU exited 0 without a `poweroff` marker: a reset or triple fault.
    Reset,
    /// The runner's own deadline passed (the in-image watchdog never fired).
    Timeout,
    /// Bochs ended without printing a marker (triple fault, crash, or the
    /// loader shut down without saying why).
    NoMarker,
    /// QEMU's exit status and the marker disagree, or the status is none of
    /// the documented ones (QEMU itself failed, e.g. on a bad option).
    Inconsistent { code: i32, marker: Option<Status> },
    /// The emulator died of a signal.
    Signal(i32),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exited(s) => f.write_str(s.name()),
            Outcome::Reset => f.write_str("reset (exit 0 without a poweroff marker: triple fault or reboot)"),
            Outcome::Timeout => f.write_str("timeout"),
            Outcome::NoMarker => f.write_str("no exit marker on the serial port"),
            Outcome::Inconsistent { code, marker: Some(m) } => {
                write!(f, "exit status {code} but marker `{m}`")
            }
            Outcome::Inconsistent { code, marker: None } => {
                write!(f, "exit status {code} without a marker")
            }
            Outcome::Signal(n) => write!(f, "emulator killed by signal {n}"),
        }
    }
}

/// The last exit marker in `serial`. The marker may follow other text on
/// its line: another CPU can print concurrently with a panicking one.
pub fn last_marker(serial: &str) -> Option<Status> {
    serial.lines().rev().find_map(|line| line.find(MARKER).and_then(|i| Status::from_marker(&line[i..])))
}

pub fn classify(emulator: Emulator, ended: Ended, serial: &str) -> Outcome {
    let marker = last_marker(serial);
    match (emulator, ended) {
        // A marker without the exit means the loader hung on its way out;
        // the deadline is what the user needs to hear about.
        (_, Ended::TimedOut) => Outcome::Timeout,
        (Emulator::Bochs, ended) => match (marker, ended) {
            (Some(s), _) => Outcome::Exited(s),
            (None, Ended::Signal(n)) => Outcome::Signal(n),
            (None, _) => Outcome::NoMarker,
        },
        (Emulator::Qemu, Ended::Signal(n)) => Outcome::Signal(n),
        (Emulator::Qemu, Ended::Code(0)) => match marker {
            Some(Status::PowerOff) => Outcome::Exited(Status::PowerOff),
            None => Outcome::Reset,
            Some(_) => Outcome::Inconsistent { code: 0, marker },
        },
        (Emulator::Qemu, Ended::Code(code)) => match Status::ALL.into_iter().find(|s| s.qemu_exit_code() == code) {
            Some(s) if marker == Some(s) => Outcome::Exited(s),
            _ => Outcome::Inconsistent { code, marker },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(status: Status) -> String {
        format!("[   0.1 0 INFO  loader] booting\ntest boot::x ... ok\n{status}\n")
    }

    #[test]
    fn every_status_round_trips_through_qemu() {
        for s in Status::ALL {
            let o = classify(Emulator::Qemu, Ended::Code(s.qemu_exit_code()), &log_with(s));
            assert_eq!(o, Outcome::Exited(s));
        }
    }

    #[test]
    fn every_status_round_trips_through_bochs_whatever_its_exit() {
        for s in Status::ALL {
            assert_eq!(classify(Emulator::Bochs, Ended::Code(1), &log_with(s)), Outcome::Exited(s));
        }
    }

    #[test]
    fn exit_zero_without_marker_is_a_reset() {
        assert_eq!(classify(Emulator::Qemu, Ended::Code(0), "booting\n"), Outcome::Reset);
        assert_eq!(classify(Emulator::Qemu, Ended::Code(0), ""), Outcome::Reset);
    }

    #[test]
    fn qemu_code_and_marker_must_agree() {
        let o = classify(Emulator::Qemu, Ended::Code(33), &log_with(Status::Panic));
        assert_eq!(o, Outcome::Inconsistent { code: 33, marker: Some(Status::Panic) });
        let o = classify(Emulator::Qemu, Ended::Code(33), "no marker\n");
        assert_eq!(o, Outcome::Inconsistent { code: 33, marker: None });
        // Exit 0 with a pass marker: the loader said pass but QEMU saw a reset.
        let o = classify(Emulator::Qemu, Ended::Code(0), &log_with(Status::Pass));
        assert_eq!(o, Outcome::Inconsistent { code: 0, marker: Some(Status::Pass) });
    }

    #[test]
    fn unknown_qemu_status_is_inconsistent() {
        // QEMU exits 1 on its own errors (bad option, missing kernel).
        let o = classify(Emulator::Qemu, Ended::Code(1), "");
        assert_eq!(o, Outcome::Inconsistent { code: 1, marker: None });
    }

    #[test]
    fn timeout_wins_over_a_marker() {
        for emu in [Emulator::Qemu, Emulator::Bochs] {
            assert_eq!(classify(emu, Ended::TimedOut, &log_with(Status::Pass)), Outcome::Timeout);
            assert_eq!(classify(emu, Ended::TimedOut, ""), Outcome::Timeout);
        }
    }

    #[test]
    fn timeout_and_watchdog_are_distinct() {
        let watchdog =
            classify(Emulator::Qemu, Ended::Code(Status::Watchdog.qemu_exit_code()), &log_with(Status::Watchdog));
        assert_eq!(watchdog, Outcome::Exited(Status::Watchdog));
        assert_ne!(watchdog, classify(Emulator::Qemu, Ended::TimedOut, ""));
    }

    #[test]
    fn bochs_without_marker() {
        assert_eq!(classify(Emulator::Bochs, Ended::Code(1), "booting\n"), Outcome::NoMarker);
        assert_eq!(classify(Emulator::Bochs, Ended::Signal(6), ""), Outcome::Signal(6));
        assert_eq!(classify(Emulator::Qemu, Ended::Signal(9), ""), Outcome::Signal(9));
    }

    #[test]
    fn the_last_marker_counts_even_after_other_text() {
        let log = format!("{}\n[cpu 1 says hi] {}\n", Status::Pass, Status::Panic);
        assert_eq!(last_marker(&log), Some(Status::Panic));
        assert_eq!(last_marker("modvisor-exit: 0x10 panic\n"), None);
        assert_eq!(last_marker("modvisor-exit: 0x10 pass\r\n"), Some(Status::Pass));
    }

    #[test]
    fn outcomes_read_well() {
        assert_eq!(Outcome::Exited(Status::TestFailure).to_string(), "test-failure");
        assert_eq!(Outcome::Timeout.to_string(), "timeout");
        assert!(Outcome::Reset.to_string().starts_with("reset"));
        assert_eq!(
            Outcome::Inconsistent { code: 35, marker: Some(Status::Pass) }.to_string(),
            "exit status 35 but marker `modvisor-exit: 0x10 pass`"
        );
    }
}
