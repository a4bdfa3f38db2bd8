//! The kernel command line: `key=value` words separated by spaces.
//!
//! Every word must be known; anything else is refused with an error naming
//! the word, so a typo in a test image never silently runs the wrong thing.

use core::fmt;

/// How the local APIC is driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicMode {
    /// x2APIC when CPUID offers it, xAPIC otherwise.
    Auto,
    XApic,
    X2Apic,
}

/// The parsed command line. Borrowed from the boot protocol's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandLine<'a> {
    /// Name of the image that was booted (shown in the banner).
    pub image: Option<&'a str>,
    /// Comma-separated test suites to run, then exit with a status.
    pub tests: Option<&'a str>,
    /// Watchdog deadline in seconds; `None` means the default for the mode.
    pub watchdog_secs: Option<u32>,
    pub log_level: log::LevelFilter,
    pub apic: ApicMode,
    /// Print boot-time figures and power off.
    pub bench: bool,
}

/// One line of help per accepted word, printed with every error.
pub const HELP: &str = "  image=<name>        name of the booted image
  test=<suite>[,...]  run in-image test suites (or `all`) and exit
  watchdog=<seconds>  exit with status `watchdog` after this long (0: off)
  log=<level>         off, error, warn, info, debug or trace
  apic=<mode>         auto, xapic or x2apic
  bench               print boot-time figures and power off";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error<'a> {
    Unknown(&'a str),
    BadValue { key: &'a str, value: &'a str, expected: &'static str },
    Duplicate(&'a str),
}

impl fmt::Display for Error<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unknown(w) => write!(f, "unknown command-line argument `{w}`"),
            Error::BadValue { key, value, expected } => {
                write!(f, "bad value `{value}` for command-line argument `{key}`: expected {expected}")
            }
            Error::Duplicate(k) => write!(f, "command-line argument `{k}` given twice"),
        }
    }
}

impl<'a> CommandLine<'a> {
    pub fn parse(line: &'a str) -> Result<Self, Error<'a>> {
        let mut cl = CommandLine {
            image: None,
            tests: None,
            watchdog_secs: None,
            log_level: log::LevelFilter::Info,
            apic: ApicMode::Auto,
            bench: false,
        };
        let mut seen: u8 = 0;
        for word in line.split_ascii_whitespace() {
            let (key, value) = match word.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (word, None),
            };
            let bit = match key {
                "image" => 0,
                "test" => 1,
                "watchdog" => 2,
                "log" => 3,
                "apic" => 4,
                "bench" => 5,
                _ => return Err(Error::Unknown(word)),
            };
            if seen & (1 << bit) != 0 {
                return Err(Error::Duplicate(key));
            }
            seen |= 1 << bit;
            let bad = |expected| Error::BadValue { key, value: value.unwrap_or(""), expected };
            match (key, value) {
                ("bench", None) => cl.bench = true,
                ("bench", Some(_)) => return Err(bad("no value")),
                (_, None) | (_, Some("")) => return Err(bad("a value after `=`")),
                ("image", Some(v)) => cl.image = Some(v),
                ("test", Some(v)) => {
                    if v.split(',').any(str::is_empty) {
                        return Err(bad("suite names separated by single commas"));
                    }
                    cl.tests = Some(v)
                }
                ("watchdog", Some(v)) => {
                    cl.watchdog_secs = Some(v.parse().map_err(|_| bad("whole seconds"))?)
                }
                ("log", Some(v)) => {
                    cl.log_level = v.parse().map_err(|_| bad("off, error, warn, info, debug or trace"))?
                }
                ("apic", Some(v)) => {
                    cl.apic = match v {
                        "auto" => ApicMode::Auto,
                        "xapic" => ApicMode::XApic,
                        "x2apic" => ApicMode::X2Apic,
                        _ => return Err(bad("auto, xapic or x2apic")),
                    }
                }
                _ => unreachable!("every key is matched above"),
            }
        }
        Ok(cl)
    }

    /// The selected test suites, in command-line order.
    pub fn suites(&self) -> impl Iterator<Item = &'a str> + Clone {
        self.tests.into_iter().flat_map(|t| t.split(','))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn empty_line_gives_defaults() {
        let cl = CommandLine::parse("  ").unwrap();
        assert_eq!(cl.tests, None);
        assert_eq!(cl.apic, ApicMode::Auto);
        assert_eq!(cl.log_level, log::LevelFilter::Info);
        assert!(!cl.bench);
    }

    #[test]
    fn full_line_parses() {
        let cl = CommandLine::parse("image=smp test=smp,ipi watchdog=30 log=debug apic=xapic bench").unwrap();
        assert_eq!(cl.image, Some("smp"));
        assert_eq!(cl.suites().collect::<std::vec::Vec<_>>(), ["smp", "ipi"]);
        assert_eq!(cl.watchdog_secs, Some(30));
        assert_eq!(cl.log_level, log::LevelFilter::Debug);
        assert_eq!(cl.apic, ApicMode::XApic);
        assert!(cl.bench);
    }

    #[test]
    fn errors_name_the_argument() {
        let e = CommandLine::parse("test=a frobnicate=1").unwrap_err();
        assert_eq!(e, Error::Unknown("frobnicate=1"));
        assert!(e.to_string().contains("frobnicate=1"));
        let e = CommandLine::parse("watchdog=soon").unwrap_err();
        assert!(e.to_string().contains("watchdog") && e.to_string().contains("soon"));
        assert_eq!(CommandLine::parse("apic=yes").unwrap_err().to_string(),
            "bad value `yes` for command-line argument `apic`: expected auto, xapic or x2apic");
        assert_eq!(CommandLine::parse("test=a test=b").unwrap_err(), Error::Duplicate("test"));
        assert!(matches!(CommandLine::parse("test=a,,b"), Err(Error::BadValue { .. })));
        assert!(matches!(CommandLine::parse("image="), Err(Error::BadValue { .. })));
        assert!(matches!(CommandLine::parse("bench=1"), Err(Error::BadValue { .. })));
    }
}
