//! `runner bench`: boot-time figures as instruction counts, and image sizes.
//!
//! The `default` image boots with `bench` added to its command line under
//! `-icount shift=0`, where the guest TSC counts instructions; the loader
//! prints `bench: ...` lines and powers off.

use std::fs;
use std::process::{Command, ExitCode};
use std::time::Duration;

use loader::cmdline::CommandLine;
use loader::exit::Status;

use crate::builder::{self, Image};
use crate::emulator::{self, Accel, QemuBoot, Serial};
use crate::layout::{Emulator, BENCH_LAYOUT};
use crate::outcome::{classify, Outcome};
use crate::recipes::RECIPES;
use crate::{last_lines, read_lossy, Error, Result};

/// The image the figures are taken on.
pub const BENCH_IMAGE: &str = "default";

/// Far above a boot under icount (a few seconds).
const BENCH_TIMEOUT: Duration = Duration::from_secs(120);

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

pub fn bench_command() -> Result<ExitCode> {
    let accel = Accel::from_env()?;
    builder::build_all()?;
    let image = Image::of(BENCH_IMAGE);
    let cmdline = format!("{} bench", image.cmdline()?);
    CommandLine::parse(&cmdline)
        .map_err(|e| Error::Recipe(format!("bench command line `{cmdline}`: {e}")))?;
    let dir = emulator::fresh_run_dir("bench")?;
    let serial_path = dir.join("serial.log");
    let boot = QemuBoot {
        image: &image,
        cmdline: &cmdline,
        layout: BENCH_LAYOUT,
        accel,
        serial: Serial::File(&serial_path),
        reboots: false,
        icount: true,
    };
    println!("bench: booting `{cmdline}` on qemu {BENCH_LAYOUT} -icount shift=0");
    let mut command = Command::new(emulator::QEMU);
    command.args(emulator::qemu_args(&boot));
    let (ended, _) =
        emulator::run_with_deadline(&mut command, &dir.join("emulator.out"), BENCH_TIMEOUT)
            .map_err(|e| Error::io("running qemu", e))?;
    let serial = read_lossy(&serial_path);
    let outcome = classify(Emulator::Qemu, ended, &serial);
    let figures = bench_lines(&serial);
    for line in &figures {
        println!("{line}");
    }

    println!("sizes in bytes:");
    let width = RECIPES.iter().map(|r| r.name.len()).max().unwrap_or(0);
    println!(
        "  {:<width$} {:>12} {:>10} {:>10}",
        "image", "loader.elf", "initrd", "iso"
    );
    for recipe in RECIPES {
        let i = Image::of(recipe.name);
        let size = |p: &std::path::Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        println!(
            "{}",
            size_row(
                recipe.name,
                [size(&i.loader()), size(&i.initrd()), size(&i.iso)],
                width
            )
        );
    }

    let expected = Outcome::Exited(Status::PowerOff);
    if outcome == expected && !figures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    if outcome != expected {
        println!("bench: FAILED: expected {expected}, got {outcome}");
    }
    if figures.is_empty() {
        println!("bench: FAILED: the loader printed no `bench:` line");
    }
    println!("serial log {}, last lines:", builder::shown(&serial_path));
    for line in last_lines(&serial, 40) {
        println!("| {line}");
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
    fn bench_command_line_is_accepted_by_the_loader() {
        let cmdline = format!(
            "{} bench",
            crate::recipes::find(BENCH_IMAGE).unwrap().cmdline()
        );
        assert!(CommandLine::parse(&cmdline).unwrap().bench);
    }
}
