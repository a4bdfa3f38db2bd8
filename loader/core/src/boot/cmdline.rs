//! The kernel command line: `key=value` words separated by spaces.
//!
//! Every word must be known; anything else is refused with an error naming
//! the word, so a typo in a test image never silently runs the wrong thing.
//! A value with spaces goes in double quotes, `key="a b"`, as on Linux; the
//! quotes must enclose the whole value and there is no escape inside them.

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
    /// Shell commands to run at boot, separated by `;` (see
    /// [`CommandLine::boot_commands`]).
    pub shell: Option<&'a str>,
    /// Plugins to load at boot, comma-separated `name` or `name@version`,
    /// before `sh=` runs.
    pub load: Option<&'a str>,
    /// `maxcpus=`, as on Linux: how many of the CPUs enabled at boot, the
    /// boot CPU included, the CPU lifecycle policy (cpuhp-plugin) brings
    /// online when it loads; the others stay offline until asked for. The
    /// loader itself starts no CPU, so it only passes the number on.
    pub max_cpus: Option<u32>,
    /// `cpu_init_udelay=`, as on Linux: microseconds between INIT and the
    /// first SIPI of an AP start; `None` chooses by CPU model
    /// ([`crate::smp::start::delays`]).
    pub init_udelay: Option<u32>,
    /// `seed=`: the seed of the in-image suites that make random choices
    /// (the runner passes one per run and prints it, so a run replays).
    pub seed: Option<u64>,
}

/// One line of help per accepted word, printed with every error.
pub const HELP: &str = r#"  image=<name>        name of the booted image
  test=<suite>[,...]  run in-image test suites (or `all`) and exit
  watchdog=<seconds>  exit with status `watchdog` after this long (0: off)
  log=<level>         off, error, warn, info, debug or trace
  apic=<mode>         auto, xapic or x2apic
  bench               print boot-time figures and power off
  load=<plugin>[@<version>][,...]
                      load plugins from the store at boot (a failure is reported, the boot goes on)
  sh="<cmd>[; ...]"   run shell commands at boot, before tests or the prompt
  maxcpus=<n>         cpuhp-plugin brings only the first n CPUs enabled at boot online (n >= 1,
                      the boot CPU included); the others stay offline until `cpu online N`
  cpu_init_udelay=<us>
                      wait this long between INIT and SIPI when starting a CPU (default: 0 on
                      Intel family >= 6, AMD >= 0xf, Hygon >= 0x18, else 10000)
  seed=<n>            seed of the in-image suites' random choices (the same seed makes the same choices)
a value with spaces goes in double quotes: key="a b""#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error<'a> {
    Unknown(&'a str),
    BadValue {
        key: &'a str,
        value: &'a str,
        expected: &'static str,
    },
    Duplicate(&'a str),
    /// A `"` opens a value that never closes; holds the rest of the line.
    UnterminatedQuote(&'a str),
    /// A `"` anywhere but around a whole value.
    MisplacedQuote(&'a str),
}

impl fmt::Display for Error<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unknown(w) => write!(f, "unknown command-line argument `{w}`"),
            Error::BadValue { key, value, expected } => {
                write!(f, "bad value `{value}` for command-line argument `{key}`: expected {expected}")
            }
            Error::Duplicate(k) => write!(f, "command-line argument `{k}` given twice"),
            Error::UnterminatedQuote(w) => {
                write!(f, "unterminated `\"` in command-line argument `{w}`: close the quote after the value")
            }
            Error::MisplacedQuote(w) => write!(
                f,
                "misplaced `\"` in command-line argument `{w}`: quotes go around a whole value, as in key=\"a b\""
            ),
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
            shell: None,
            load: None,
            max_cpus: None,
            init_udelay: None,
            seed: None,
        };
        let mut seen: u16 = 0;
        for word in Words(line) {
            let word = word?;
            let (key, value) = match word.split_once('=') {
                Some((k, v)) => (k, Some(unquote(word, v)?)),
                None => (word, None),
            };
            if key.contains('"') {
                return Err(Error::MisplacedQuote(word));
            }
            let bit = match key {
                "image" => 0,
                "test" => 1,
                "watchdog" => 2,
                "log" => 3,
                "apic" => 4,
                "bench" => 5,
                "sh" => 6,
                "load" => 7,
                "maxcpus" => 8,
                "cpu_init_udelay" => 9,
                "seed" => 10,
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
                ("sh", Some(v)) => cl.shell = Some(v),
                ("test", Some(v)) => {
                    if v.split(',').any(str::is_empty) {
                        return Err(bad("suite names separated by single commas"));
                    }
                    cl.tests = Some(v)
                }
                ("load", Some(v)) => {
                    if v.split(',').any(str::is_empty) {
                        return Err(bad("plugin names separated by single commas"));
                    }
                    cl.load = Some(v)
                }
                ("maxcpus", Some(v)) => {
                    let n = v.parse().ok().filter(|&n: &u32| n >= 1);
                    cl.max_cpus = Some(n.ok_or_else(|| bad("a CPU count of at least 1 (the boot CPU always runs)"))?)
                }
                ("cpu_init_udelay", Some(v)) => {
                    cl.init_udelay = Some(v.parse().map_err(|_| bad("whole microseconds"))?)
                }
                ("seed", Some(v)) => cl.seed = Some(v.parse().map_err(|_| bad("a whole number below 2^64"))?),
                ("watchdog", Some(v)) => cl.watchdog_secs = Some(v.parse().map_err(|_| bad("whole seconds"))?),
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

    /// The plugins of `load=`, in order.
    pub fn boot_plugins(&self) -> impl Iterator<Item = &'a str> {
        self.load.into_iter().flat_map(|t| t.split(','))
    }

    /// The commands of `sh=`, trimmed, in order; empty ones (`a;;b`, a
    /// trailing `;`) are skipped.
    pub fn boot_commands(&self) -> impl Iterator<Item = &'a str> {
        self.shell.into_iter().flat_map(|s| s.split(';')).map(str::trim).filter(|c| !c.is_empty())
    }
}

/// The words of a command line: split at ASCII whitespace outside double
/// quotes. A word keeps its quotes; `unquote` checks where they are.
struct Words<'a>(&'a str);

impl<'a> Iterator for Words<'a> {
    type Item = Result<&'a str, Error<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.0.trim_start_matches(|c: char| c.is_ascii_whitespace());
        if rest.is_empty() {
            return None;
        }
        let mut quoted = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    quoted = !quoted;
                }
                !quoted && c.is_ascii_whitespace()
            })
            .map_or(rest.len(), |(i, _)| i);
        if quoted {
            self.0 = "";
            return Some(Err(Error::UnterminatedQuote(rest)));
        }
        self.0 = &rest[end..];
        Some(Ok(&rest[..end]))
    }
}

/// The value without its quotes: `"a b"` gives `a b`; quotes elsewhere in
/// `word` are an error.
fn unquote<'a>(word: &'a str, value: &'a str) -> Result<&'a str, Error<'a>> {
    let inner = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => inner,
        None => value,
    };
    if inner.contains('"') {
        return Err(Error::MisplacedQuote(word));
    }
    Ok(inner)
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
    fn boot_plugins_are_listed_in_order() {
        let cl = CommandLine::parse("load=counter-plugin@1.0.0,consumer").unwrap();
        assert_eq!(cl.boot_plugins().collect::<std::vec::Vec<_>>(), ["counter-plugin@1.0.0", "consumer"]);
        assert!(matches!(CommandLine::parse("load=a,,b"), Err(Error::BadValue { key: "load", .. })));
        assert_eq!(CommandLine::parse("").unwrap().boot_plugins().count(), 0);
    }

    #[test]
    fn maxcpus_is_a_count_of_at_least_one() {
        assert_eq!(CommandLine::parse("").unwrap().max_cpus, None);
        assert_eq!(CommandLine::parse("maxcpus=2").unwrap().max_cpus, Some(2));
        assert_eq!(CommandLine::parse("maxcpus=1").unwrap().max_cpus, Some(1));
        for bad in ["0", "-1", "two", "5000000000"] {
            let line = std::format!("maxcpus={bad}");
            let e = CommandLine::parse(&line).unwrap_err();
            assert_eq!(
                e.to_string(),
                std::format!("bad value `{bad}` for command-line argument `maxcpus`: expected a CPU count of at least 1 (the boot CPU always runs)")
            );
        }
        assert!(matches!(CommandLine::parse("maxcpus"), Err(Error::BadValue { key: "maxcpus", .. })));
        assert_eq!(CommandLine::parse("maxcpus=2 maxcpus=3"), Err(Error::Duplicate("maxcpus")));
    }

    #[test]
    fn cpu_init_udelay_is_whole_microseconds() {
        assert_eq!(CommandLine::parse("").unwrap().init_udelay, None);
        assert_eq!(CommandLine::parse("cpu_init_udelay=10000").unwrap().init_udelay, Some(10_000));
        assert_eq!(CommandLine::parse("cpu_init_udelay=0").unwrap().init_udelay, Some(0));
        for bad in ["-1", "10ms", "cpu_init_udelay"] {
            let line = std::format!("cpu_init_udelay={bad}");
            assert!(matches!(CommandLine::parse(&line), Err(Error::BadValue { key: "cpu_init_udelay", .. })));
        }
    }

    #[test]
    fn seed_is_a_u64() {
        assert_eq!(CommandLine::parse("").unwrap().seed, None);
        assert_eq!(CommandLine::parse("seed=0").unwrap().seed, Some(0));
        assert_eq!(CommandLine::parse("seed=18446744073709551615").unwrap().seed, Some(u64::MAX));
        for bad in ["-1", "18446744073709551616", "0x10", "seed"] {
            let line = std::format!("seed={bad}");
            assert!(matches!(CommandLine::parse(&line), Err(Error::BadValue { key: "seed", .. })), "{bad}");
        }
        assert_eq!(CommandLine::parse("seed=1 seed=2"), Err(Error::Duplicate("seed")));
    }

    #[test]
    fn errors_name_the_argument() {
        let e = CommandLine::parse("test=a frobnicate=1").unwrap_err();
        assert_eq!(e, Error::Unknown("frobnicate=1"));
        assert!(e.to_string().contains("frobnicate=1"));
        let e = CommandLine::parse("watchdog=soon").unwrap_err();
        assert!(e.to_string().contains("watchdog") && e.to_string().contains("soon"));
        assert_eq!(
            CommandLine::parse("apic=yes").unwrap_err().to_string(),
            "bad value `yes` for command-line argument `apic`: expected auto, xapic or x2apic"
        );
        assert_eq!(CommandLine::parse("test=a test=b").unwrap_err(), Error::Duplicate("test"));
        assert!(matches!(CommandLine::parse("test=a,,b"), Err(Error::BadValue { .. })));
        assert!(matches!(CommandLine::parse("image="), Err(Error::BadValue { .. })));
        assert!(matches!(CommandLine::parse("bench=1"), Err(Error::BadValue { .. })));
    }

    #[test]
    fn quoted_values_keep_their_spaces() {
        let cl = CommandLine::parse(r#"image=default sh="echo hi;  mem ; ;cpus;" log=warn"#).unwrap();
        assert_eq!(cl.shell, Some("echo hi;  mem ; ;cpus;"));
        assert_eq!(cl.boot_commands().collect::<std::vec::Vec<_>>(), ["echo hi", "mem", "cpus"]);
        assert_eq!(cl.log_level, log::LevelFilter::Warn);
        // Any key may be quoted, and quoting a value without spaces is fine.
        let cl = CommandLine::parse(r#"image="a b"  test="boot""#).unwrap();
        assert_eq!((cl.image, cl.tests), (Some("a b"), Some("boot")));
        assert_eq!(CommandLine::parse("").unwrap().boot_commands().count(), 0);
        // An empty quoted value is as empty as an unquoted one.
        assert!(matches!(CommandLine::parse(r#"sh="""#), Err(Error::BadValue { key: "sh", .. })));
    }

    #[test]
    fn quote_errors_are_clear() {
        let e = CommandLine::parse(r#"image=x sh="mem; cpus log=warn"#).unwrap_err();
        assert_eq!(e, Error::UnterminatedQuote(r#"sh="mem; cpus log=warn"#));
        assert_eq!(
            e.to_string(),
            r#"unterminated `"` in command-line argument `sh="mem; cpus log=warn`: close the quote after the value"#
        );
        for bad in [r#"sh=a"b""#, r#"sh="a"b"#, r#""sh"=a"#, r#"sh="a""b""#, r#""bench""#] {
            assert_eq!(CommandLine::parse(bad), Err(Error::MisplacedQuote(bad)), "{bad}");
        }
        assert!(CommandLine::parse(r#"sh=x""#).unwrap_err().to_string().contains("unterminated"));
    }
}
