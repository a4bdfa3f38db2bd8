//! Checks of the loader's boot banner against the layout it booted on.
//!
//! The banner holds a line `cpus: <B> enabled at boot, <H> hot-pluggable`
//! and a line `memory: <N> MiB usable` (possibly after a log prefix such as
//! `[   0.001234 0 INFO  loader::acpi] `). An image that reboots prints the
//! banner once per boot; every copy must fit.

use std::ops::RangeInclusive;

/// How far below the configured size the usable memory may be: firmware
/// keeps the real-mode area, the BIOS ROM window and its ACPI tables, and
/// the loader may hold back its own image; all of that is a few MiB.
pub const MEMORY_SLACK_MIB: u64 = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectation {
    pub boot_cpus: u32,
    pub hotpluggable: u32,
    pub memory_mib: RangeInclusive<u64>,
}

impl Expectation {
    pub fn new(boot_cpus: u32, hotpluggable: u32, configured_mib: u32) -> Self {
        let top = u64::from(configured_mib);
        Expectation { boot_cpus, hotpluggable, memory_mib: top.saturating_sub(MEMORY_SLACK_MIB)..=top }
    }
}

/// `(enabled at boot, hot-pluggable)` from a `cpus:` line.
pub fn parse_cpus(line: &str) -> Option<(u32, u32)> {
    let rest = after_key(line, "cpus:")?;
    let (boot, rest) = rest.split_once(" enabled at boot, ")?;
    let (hot, _) = rest.split_once(" hot-pluggable")?;
    Some((boot.trim().parse().ok()?, hot.trim().parse().ok()?))
}

/// The MiB count from a `memory:` line.
pub fn parse_memory(line: &str) -> Option<u64> {
    let rest = after_key(line, "memory:")?;
    let (mib, _) = rest.split_once(" MiB usable")?;
    mib.trim().parse().ok()
}

/// The text after `key` when `key` starts the line's message; elsewhere in
/// a line it is not the banner.
fn after_key<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    crate::log_message(line).strip_prefix(key)
}

/// Every mismatch between the banner(s) in `serial` and `expect`. A missing
/// banner counts as a mismatch only when `required`: an image that stops
/// before the banner (a rejected command line) has nothing to check.
pub fn check(serial: &str, expect: &Expectation, required: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let cpus: Vec<(u32, u32)> = serial.lines().filter_map(parse_cpus).collect();
    let memory: Vec<u64> = serial.lines().filter_map(parse_memory).collect();
    if required && cpus.is_empty() {
        problems.push("banner: no `cpus: <B> enabled at boot, <H> hot-pluggable` line".to_string());
    }
    if required && memory.is_empty() {
        problems.push("banner: no `memory: <N> MiB usable` line".to_string());
    }
    for (boot, hot) in cpus {
        if (boot, hot) != (expect.boot_cpus, expect.hotpluggable) {
            problems.push(format!(
                "banner: `cpus: {boot} enabled at boot, {hot} hot-pluggable`, \
                 expected {} enabled at boot, {} hot-pluggable",
                expect.boot_cpus, expect.hotpluggable
            ));
        }
    }
    for mib in memory {
        if !expect.memory_mib.contains(&mib) {
            problems.push(format!(
                "banner: `memory: {mib} MiB usable`, expected {} to {} MiB",
                expect.memory_mib.start(),
                expect.memory_mib.end()
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const BANNER: &str = "\
[   0.001000 0 INFO  loader] modvisor 0.1.0 loader, booted via pvh
[   0.002000 0 INFO  loader::acpi] cpus: 2 enabled at boot, 2 hot-pluggable
[   0.002100 0 INFO  loader::mem] memory: 125 MiB usable
";

    #[test]
    fn parses_banner_lines_with_and_without_log_prefix() {
        assert_eq!(parse_cpus("cpus: 4 enabled at boot, 0 hot-pluggable"), Some((4, 0)));
        assert_eq!(parse_cpus("[   0.2 1 INFO  loader::acpi] cpus: 1 enabled at boot, 3 hot-pluggable"), Some((1, 3)));
        assert_eq!(parse_memory("memory: 2040 MiB usable"), Some(2040));
        assert_eq!(parse_memory("[ 1.0 0 INFO  x] memory: 12 MiB usable (3 ranges)"), Some(12));
    }

    #[test]
    fn ignores_lines_that_only_mention_the_words() {
        assert_eq!(parse_cpus("smp: started all cpus: 4 enabled at boot, 0 hot-pluggable"), None);
        assert_eq!(parse_cpus("cpus: four enabled at boot, 0 hot-pluggable"), None);
        assert_eq!(parse_memory("memory: 12 KiB usable"), None);
        assert_eq!(parse_memory("test mem::memory ... ok"), None);
    }

    #[test]
    fn matching_banner_passes() {
        assert!(check(BANNER, &Expectation::new(2, 2, 128), true).is_empty());
    }

    #[test]
    fn cpu_and_memory_mismatches_are_reported() {
        let p = check(BANNER, &Expectation::new(4, 0, 128), true);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("expected 4 enabled at boot, 0 hot-pluggable"), "{p:?}");
        let p = check(BANNER, &Expectation::new(2, 2, 2048), true);
        assert_eq!(p, ["banner: `memory: 125 MiB usable`, expected 2032 to 2048 MiB"]);
        // More than configured is as wrong as too little.
        let p = check(
            "memory: 129 MiB usable\ncpus: 2 enabled at boot, 2 hot-pluggable",
            &Expectation::new(2, 2, 128),
            true,
        );
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn memory_bounds_are_inclusive() {
        let e = Expectation::new(1, 0, 128);
        assert!(check("cpus: 1 enabled at boot, 0 hot-pluggable\nmemory: 112 MiB usable", &e, true).is_empty());
        assert!(check("cpus: 1 enabled at boot, 0 hot-pluggable\nmemory: 128 MiB usable", &e, true).is_empty());
        assert_eq!(check("cpus: 1 enabled at boot, 0 hot-pluggable\nmemory: 111 MiB usable", &e, true).len(), 1);
    }

    #[test]
    fn missing_banner_fails_only_when_required() {
        let e = Expectation::new(1, 0, 128);
        assert_eq!(check("error: unknown command-line argument", &e, true).len(), 2);
        assert!(check("error: unknown command-line argument", &e, false).is_empty());
    }

    #[test]
    fn every_boot_of_a_rebooting_image_is_checked() {
        let two_boots = format!("{BANNER}rebooting\n{}", BANNER.replace("cpus: 2", "cpus: 1"));
        let p = check(&two_boots, &Expectation::new(2, 2, 128), true);
        assert_eq!(p.len(), 1, "{p:?}");
    }
}
