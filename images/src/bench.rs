//! `runner bench`: figures as instruction counts, and image sizes.
//!
//! Every boot runs under `-icount shift=0`, where the guest TSC counts
//! instructions, and every `bench: ...` line it prints is shown. The
//! `default` image boots with `bench` added to its command line (boot-time
//! figures, then power-off); the `bench-plugins` image runs its in-image
//! suite on one CPU and on four (plugin runtime figures, then pass).

use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use loader::cmdline::CommandLine;
use loader::exit::Status;

use crate::builder::{self, Image};
use crate::emulator::{self, Accel, QemuBoot, Serial};
use crate::layout::{Emulator, Machine, QemuLayout, Target, BENCH_LAYOUT};
use crate::outcome::{classify, Outcome};
use crate::recipes::{self, RECIPES};
use crate::{last_lines, read_lossy, Error, Result};

/// One benchmark boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchBoot {
    pub image: &'static str,
    /// Words added to the image's command line.
    pub extra: &'static str,
    pub layout: QemuLayout,
    pub expect: Outcome,
}

/// The boots of `runner bench`, in order.
pub const BENCH_BOOTS: [BenchBoot; 4] = [
    BenchBoot { image: "default", extra: "bench", layout: BENCH_LAYOUT, expect: Outcome::Exited(Status::PowerOff) },
    BenchBoot { image: "bench-plugins", extra: "", layout: BENCH_LAYOUT, expect: Outcome::Exited(Status::Pass) },
    // Four CPUs under icount: mind the platform note on spinning APs.
    BenchBoot {
        image: "bench-plugins",
        extra: "",
        layout: QemuLayout::new(Machine::Q35, 4, 4, 128),
        expect: Outcome::Exited(Status::Pass),
    },
    // Two CPUs: the boot CPU takes the other offline and online again.
    BenchBoot {
        image: "bench-cpuhp",
        extra: "",
        layout: QemuLayout::new(Machine::Q35, 2, 2, 128),
        expect: Outcome::Exited(Status::Pass),
    },
];

/// Far above a boot under icount (a few seconds).
const BENCH_TIMEOUT: Duration = Duration::from_secs(120);

impl BenchBoot {
    /// The command line: the recipe's, plus `extra`.
    pub fn cmdline(&self) -> Result<String> {
        let base = recipes::find(self.image)?.cmdline();
        Ok(if self.extra.is_empty() { base } else { format!("{base} {}", self.extra) })
    }
}

/// The loader's figure lines, with any log prefix removed.
pub fn bench_lines(serial: &str) -> Vec<&str> {
    serial
        .lines()
        .map(crate::log_message)
        .filter(|m| m.starts_with("bench:"))
        .collect()
}

/// One row of the size table: name, then the sizes of loader.elf, initrd
/// and the ISO in bytes.
pub fn size_row(name: &str, sizes: [u64; 3], name_width: usize) -> String {
    format!(
        "  {name:<name_width$} {:>12} {:>10} {:>10}",
        sizes[0], sizes[1], sizes[2]
    )
}

/// Runs one boot and prints its figures; returns why it failed, if it did.
fn run_boot(boot: &BenchBoot, accel: Accel) -> Result<Option<String>> {
    let image = Image::of(boot.image);
    let cmdline = boot.cmdline()?;
    CommandLine::parse(&cmdline)
        .map_err(|e| Error::Recipe(format!("bench command line `{cmdline}`: {e}")))?;
    let dir = emulator::fresh_run_dir(&format!("bench.{}.{}", boot.image, Target::Qemu(boot.layout).slug()))?;
    let serial_path = dir.join("serial.log");
    let qemu = QemuBoot {
        image: &image,
        cmdline: &cmdline,
        layout: boot.layout,
        accel,
        serial: Serial::File(&serial_path),
        reboots: false,
        icount: true,
        com2: None,
    };
    println!("bench: booting `{cmdline}` on qemu {} -icount shift=0", boot.layout);
    let mut command = Command::new(emulator::QEMU);
    command.args(emulator::qemu_args(&qemu));
    let (ended, _) =
        emulator::run_with_deadline(&mut command, &dir.join("emulator.out"), BENCH_TIMEOUT)
            .map_err(|e| Error::io("running qemu", e))?;
    let serial = read_lossy(&serial_path);
    let outcome = classify(Emulator::Qemu, ended, &serial);
    let figures = bench_lines(&serial);
    for line in &figures {
        println!("{line}");
    }
    let mut problems = Vec::new();
    if outcome != boot.expect {
        problems.push(format!("expected {}, got {outcome}", boot.expect));
    }
    if figures.is_empty() {
        problems.push("the loader printed no `bench:` line".to_string());
    }
    if problems.is_empty() {
        return Ok(None);
    }
    let mut report = format!("`{cmdline}` on {}: {}\n", boot.layout, problems.join("; "));
    report += &format!("serial log {}, last lines:\n", builder::shown(&serial_path));
    for line in last_lines(&serial, 40) {
        report += &format!("| {line}\n");
    }
    Ok(Some(report))
}

pub fn bench_command() -> Result<ExitCode> {
    let accel = Accel::from_env()?;
    builder::build_all()?;
    let mut failures = Vec::new();
    for boot in &BENCH_BOOTS {
        failures.extend(run_boot(boot, accel)?);
    }

    println!("sizes in bytes:");
    let width = RECIPES.iter().map(|r| r.name.len()).max().unwrap_or(0);
    println!(
        "  {:<width$} {:>12} {:>10} {:>10}",
        "image", "loader.elf", "initrd", "iso"
    );
    for recipe in RECIPES {
        let i = Image::of(recipe.name);
        let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        println!(
            "{}",
            size_row(
                recipe.name,
                [size(&i.loader()), size(&i.initrd()), size(&i.iso)],
                width
            )
        );
    }

    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for f in &failures {
        print!("bench: FAILED: {f}");
    }
    Ok(ExitCode::FAILURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_bench_lines_with_or_without_log_prefix() {
        let serial = "\
modvisor 0.1.0 loader
bench: boot-to-console 1234567 tsc
[   0.5 0 INFO  loader::bench] bench: acpi-parse 4567 tsc
test bench::x ... ok
not a bench: line
modvisor-exit: 0x16 poweroff
";
        assert_eq!(
            bench_lines(serial),
            [
                "bench: boot-to-console 1234567 tsc",
                "bench: acpi-parse 4567 tsc"
            ]
        );
        assert!(bench_lines("").is_empty());
    }

    #[test]
    fn size_rows_align() {
        assert_eq!(
            size_row("boot", [1_234_567, 10_240, 798_720], 6),
            "  boot        1234567      10240     798720"
        );
    }

    #[test]
    fn bench_command_lines_are_accepted_by_the_loader() {
        let lines: Vec<String> = BENCH_BOOTS.iter().map(|b| b.cmdline().unwrap()).collect();
        assert_eq!(lines, ["image=default load=counter-plugin@1.0.0,consumer-plugin@1.0.0 bench", "image=bench-plugins test=bench-plugins", "image=bench-plugins test=bench-plugins", "image=bench-cpuhp test=bench-cpuhp"]);
        assert!(CommandLine::parse(&lines[0]).unwrap().bench);
        assert_eq!(CommandLine::parse(&lines[1]).unwrap().tests, Some("bench-plugins"));
        assert_eq!([BENCH_BOOTS[1].layout.cpus, BENCH_BOOTS[2].layout.cpus], [1, 4]);
    }
}
