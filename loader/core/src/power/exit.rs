//! How an image ends, and how the host tells the endings apart.
//!
//! Under QEMU the loader writes the status byte to the `isa-debug-exit`
//! device at port [`DEBUG_EXIT_PORT`]; QEMU then exits with
//! `(status << 1) | 1`. QEMU exits with 0 on an ACPI power-off or (with
//! `-no-reboot`) a reset or triple fault, which `isa-debug-exit` can never
//! produce. Bochs has no such device, so before exiting the loader always
//! prints a marker line `modvisor-exit: <code> <name>` on COM1; the host
//! reads that marker when the emulator's own status says nothing.

/// I/O port of QEMU's `isa-debug-exit` device (`iobase=0xf4,iosize=0x04`).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Prefix of the marker line printed on COM1 before every exit.
pub const MARKER: &str = "modvisor-exit:";

/// The documented ways an image can end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Every selected test passed (QEMU exit status 33).
    Pass = 0x10,
    /// At least one test failed (QEMU exit status 35).
    TestFailure = 0x11,
    /// The loader panicked (QEMU exit status 37).
    Panic = 0x12,
    /// A CPU took an exception nobody expected (QEMU exit status 39).
    Exception = 0x13,
    /// The watchdog saw no progress before its deadline (QEMU exit status 41).
    Watchdog = 0x14,
    /// The kernel command line was rejected (QEMU exit status 43).
    BadCommandLine = 0x15,
    /// A deliberate ACPI power-off (QEMU exit status 0, with the marker).
    PowerOff = 0x16,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Pass,
        Status::TestFailure,
        Status::Panic,
        Status::Exception,
        Status::Watchdog,
        Status::BadCommandLine,
        Status::PowerOff,
    ];

    /// Name used in the marker line and in the runner's report.
    pub const fn name(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::TestFailure => "test-failure",
            Status::Panic => "panic",
            Status::Exception => "exception",
            Status::Watchdog => "watchdog",
            Status::BadCommandLine => "bad-command-line",
            Status::PowerOff => "poweroff",
        }
    }

    /// The process exit status QEMU reports after the loader wrote `self`
    /// to the debug-exit port. A power-off never reaches that port.
    pub const fn qemu_exit_code(self) -> i32 {
        match self {
            Status::PowerOff => 0,
            s => ((s as i32) << 1) | 1,
        }
    }

    pub fn from_code(code: u8) -> Option<Status> {
        Status::ALL.into_iter().find(|s| *s as u8 == code)
    }

    pub fn from_name(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Parses a marker line as printed by the loader: `modvisor-exit: 0x10 pass`.
    pub fn from_marker(line: &str) -> Option<Status> {
        let rest = line.trim().strip_prefix(MARKER)?.trim();
        let (code, name) = rest.split_once(' ')?;
        let code = u8::from_str_radix(code.strip_prefix("0x")?, 16).ok()?;
        let status = Status::from_code(code)?;
        (status.name() == name.trim()).then_some(status)
    }
}

impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} {:#04x} {}", MARKER, *self as u8, self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn marker_round_trips_for_every_status() {
        for s in Status::ALL {
            assert_eq!(Status::from_marker(&s.to_string()), Some(s));
        }
    }

    #[test]
    fn qemu_codes_are_distinct_and_never_zero_except_poweroff() {
        let mut seen = std::vec::Vec::new();
        for s in Status::ALL {
            let c = s.qemu_exit_code();
            assert!(!seen.contains(&c), "{s:?} reuses {c}");
            assert_eq!(c == 0, s == Status::PowerOff);
            seen.push(c);
        }
        assert_eq!(Status::Pass.qemu_exit_code(), 33);
    }

    #[test]
    fn bad_markers_are_rejected() {
        assert_eq!(Status::from_marker("modvisor-exit: 0x10 panic"), None);
        assert_eq!(Status::from_marker("modvisor-exit: 0x99 pass"), None);
        assert_eq!(Status::from_marker("exit: 0x10 pass"), None);
    }
}
