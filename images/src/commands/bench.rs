//! `runner bench`: figures as instruction counts, and image sizes.
//!
//! Every QEMU boot runs under `-icount shift=0`, where the guest TSC counts
//! instructions, and every `bench: ...` line a boot prints is shown. The
//! `default` image boots with `bench` added to its command line (boot-time
//! figures, then power-off); the `bench-plugins` image runs its in-image
//! suite on one CPU and on four (plugin runtime figures, then pass).
//!
//! `bench-vmx` needs VMX, which TCG lacks, so it boots in Bochs
//! (`corei7_skylake_x`, two CPUs). Bochs' TSC advances one tick per
//! instruction slot of each CPU at the configured ips (elapsed emulated
//! time in instructions, not a total over CPUs; see the platform notes), so
//! its figures are instruction counts too. Its CPUID advertises a 3.5 GHz
//! TSC regardless, so never convert these figures to seconds that way. Like
//! every Bochs boot, it is judged by the serial exit marker alone.

use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use loader_core::boot::cmdline::CommandLine;
use loader_core::power::exit::Status;

use super::{goals, sizes, Result};
use crate::build::builder::{self, Image};
use crate::build::recipes::{self, RECIPES};
use crate::build::Error;
use crate::machine::bochs::{prepare_bochs, BOCHS};
use crate::machine::firmware::firmware_for;
use crate::machine::layout::{Machine, QemuLayout, Target, BENCH_LAYOUT, SKYLAKE_X2};
use crate::machine::outcome::{classify, Outcome};
use crate::machine::qemu::{qemu_args, Accel, Qemu, QemuBoot};
use crate::machine::{self, fresh_run_dir, process, Serial};
use crate::{last_lines, read_lossy, shown};

/// One benchmark boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchBoot {
    pub image: &'static str,
    /// Words added to the image's command line.
    pub extra: &'static str,
    /// A QEMU target always runs under `-icount shift=0`; Bochs needs no
    /// such option.
    pub target: Target,
    pub expect: Outcome,
}

/// The boots of `runner bench`, in order.
pub const BENCH_BOOTS: [BenchBoot; 5] = [
    BenchBoot {
        image: "default",
        extra: "bench",
        target: Target::Qemu(BENCH_LAYOUT),
        expect: Outcome::Exited(Status::PowerOff),
    },
    BenchBoot {
        image: "bench-plugins",
        extra: "",
        target: Target::Qemu(BENCH_LAYOUT),
        expect: Outcome::Exited(Status::Pass),
    },
    // Four CPUs under icount: mind the platform note on spinning APs.
    BenchBoot {
        image: "bench-plugins",
        extra: "",
        target: Target::Qemu(QemuLayout::new(Machine::Q35, 4, 4, 128)),
        expect: Outcome::Exited(Status::Pass),
    },
    // Two CPUs: the boot CPU takes the other offline and online again.
    BenchBoot {
        image: "bench-cpuhp",
        extra: "",
        target: Target::Qemu(QemuLayout::new(Machine::Q35, 2, 2, 128)),
        expect: Outcome::Exited(Status::Pass),
    },
    // VMX enable and disable on the second CPU: Bochs, since TCG has no VMX.
    BenchBoot {
        image: "bench-vmx",
        extra: "",
        target: Target::Bochs(SKYLAKE_X2),
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

    /// CPUs the machine boots with: the `cpus` column of the table.
    pub fn cpus(&self) -> u32 {
        match self.target {
            Target::Qemu(l) => l.cpus,
            Target::Bochs(b) => b.cpus,
        }
    }

    /// The target as printed, with the icount option and firmware on QEMU.
    pub fn describe(&self) -> String {
        match self.target {
            Target::Qemu(_) => {
                format!("{} -icount shift=0,sleep=off, {}", self.target, firmware_for(self.image).name())
            }
            Target::Bochs(_) => self.target.to_string(),
        }
    }

    /// The host deadline: a QEMU boot under icount takes seconds, Bochs
    /// keeps its usual (longer) deadline.
    pub fn timeout(&self) -> Duration {
        match self.target {
            Target::Qemu(_) => BENCH_TIMEOUT,
            Target::Bochs(_) => self.target.default_timeout(),
        }
    }
}

/// The loader's figure lines, with any log prefix removed.
pub fn bench_lines(serial: &str) -> Vec<&str> {
    serial.lines().map(crate::log_message).filter(|m| m.starts_with("bench:")).collect()
}

/// One figure of a `bench:` line: `bench: <what> <n> tsc [(<detail>)]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Figure<'a> {
    pub what: String,
    pub tsc: u64,
    /// What follows `tsc`, e.g. the parts a total is made of.
    pub detail: &'a str,
}

/// Reads a figure line as `bench_lines` returns it; `None` if it has no
/// `<n> tsc`.
pub fn figure(line: &str) -> Option<Figure<'_>> {
    let rest = line.strip_prefix("bench:")?.trim_start();
    let at = rest.find(" tsc")?;
    let (head, tail) = rest.split_at(at);
    let (what, n) = head.rsplit_once(' ')?;
    Some(Figure { what: what.to_string(), tsc: n.parse().ok()?, detail: tail[" tsc".len()..].trim() })
}

/// `1234567` as `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The summary table: one row per figure, with the CPUs of its boot.
pub fn figure_table(figures: &[(u32, Figure)]) -> Vec<String> {
    let width = figures.iter().map(|(_, f)| f.what.len()).max().unwrap_or(0).max("figure".len());
    let mut lines = vec![format!("  {:<width$} {:>4} {:>14}", "figure", "cpus", "instructions")];
    for (cpus, f) in figures {
        let mut line = format!("  {:<width$} {cpus:>4} {:>14}", f.what, grouped(f.tsc));
        if !f.detail.is_empty() {
            line.push_str(&format!("  {}", f.detail));
        }
        lines.push(line);
    }
    lines
}

/// The size table: images whose sizes (loader.elf, loader.debug.elf,
/// initrd, ISO, in bytes) are equal share one row, so the table stays
/// short while every image carries the same loader and store.
pub fn size_table(sizes: &[(&str, [u64; 4])]) -> Vec<String> {
    let mut groups: Vec<([u64; 4], Vec<&str>)> = Vec::new();
    for (name, s) in sizes {
        match groups.iter_mut().find(|(g, _)| g == s) {
            Some((_, names)) => names.push(name),
            None => groups.push((*s, vec![name])),
        }
    }
    let mut lines =
        vec![format!("  {:>12} {:>16} {:>10} {:>12}  images", "loader.elf", "loader.debug.elf", "initrd", "iso")];
    for (s, names) in groups {
        let who = if names.len() == sizes.len() && names.len() > 1 {
            format!("all {}", names.len())
        } else {
            names.join(", ")
        };
        let [loader, debug, initrd, iso] = s.map(grouped);
        lines.push(format!("  {loader:>12} {debug:>16} {initrd:>10} {iso:>12}  {who}"));
    }
    lines
}

/// Runs one boot and prints its figures; returns them, and why it failed
/// if it did.
fn run_boot(boot: &BenchBoot, qemu: &Qemu, accel: Accel) -> Result<(Vec<String>, Option<String>)> {
    let image = Image::of(boot.image);
    let cmdline = boot.cmdline()?;
    CommandLine::parse(&cmdline).map_err(|e| Error::Recipe(format!("bench command line `{cmdline}`: {e}")))?;
    let dir = fresh_run_dir(&format!("bench.{}.{}", boot.image, boot.target.slug()))?;
    let serial_path = dir.join("serial.log");
    let mut command = match boot.target {
        Target::Qemu(layout) => {
            let mut c = qemu.command();
            c.args(qemu_args(&QemuBoot {
                icount: true,
                ..image.qemu_boot(&cmdline, layout, accel, Serial::File(&serial_path))
            }));
            c
        }
        // The ISO's grub.cfg carries the recipe's command line: `extra`
        // cannot reach a Bochs boot.
        Target::Bochs(_) if !boot.extra.is_empty() => {
            return Err(Error::Recipe(format!(
                "bench boot of `{}` in Bochs: the ISO's command line is fixed, so `{}` cannot be added",
                boot.image, boot.extra
            ))
            .into())
        }
        Target::Bochs(machine) => {
            let mut c = Command::new(BOCHS);
            c.args(prepare_bochs(&dir, &image.iso, machine, Serial::File(&serial_path))?);
            c
        }
    };
    println!("bench: booting `{cmdline}` on {}", boot.describe());
    let program = command.get_program().to_string_lossy().into_owned();
    let (ended, _) = process::run_with_deadline(&mut command, &dir.join("emulator.out"), boot.timeout())
        .map_err(|e| machine::Error::io(format!("running {program}"), e))?;
    let serial = read_lossy(&serial_path);
    let outcome = classify(boot.target.emulator(), ended, &serial);
    let figures = bench_lines(&serial);
    for line in &figures {
        println!("  {line}");
    }
    let owned = figures.iter().map(|l| l.to_string()).collect();
    let mut problems = Vec::new();
    if outcome != boot.expect {
        problems.push(format!("expected {}, got {outcome}", boot.expect));
    }
    if figures.is_empty() {
        problems.push("the loader printed no `bench:` line".to_string());
    }
    if problems.is_empty() {
        return Ok((owned, None));
    }
    let mut report = format!("`{cmdline}` on {}: {}\n", boot.target, problems.join("; "));
    report += &format!("serial log {}, last lines:\n", shown(&serial_path));
    for line in last_lines(&serial, 40) {
        report += &format!("| {line}\n");
    }
    Ok((owned, Some(report)))
}

pub fn bench_command() -> Result<ExitCode> {
    let accel = Accel::from_env()?;
    let qemu = Qemu::locate()?;
    builder::build_all()?;
    // The figures are instruction counts, but firmware and QEMU's own code
    // change them between QEMU versions: say which one counted.
    println!("bench: {} ({})", qemu.describe(), shown(&qemu.tree.binary));
    let mut failures = Vec::new();
    let mut lines = Vec::new();
    for boot in &BENCH_BOOTS {
        let (figures, failure) = run_boot(boot, &qemu, accel)?;
        lines.extend(figures.into_iter().map(|f| (boot.cpus(), f)));
        failures.extend(failure);
    }

    println!("bench: figures in instructions (the guest TSC under -icount shift=0,sleep=off, or in Bochs):");
    let figures: Vec<(u32, Figure)> = lines.iter().filter_map(|(cpus, l)| Some((*cpus, figure(l)?))).collect();
    for line in figure_table(&figures) {
        println!("{line}");
    }
    println!("bench: sizes in bytes (loader.elf stripped; loader.debug.elf beside it for GDB):");
    let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let sizes: Vec<(&str, [u64; 4])> = RECIPES
        .iter()
        .map(|r| {
            let i = Image::of(r.name);
            (r.name, [size(&i.loader()), size(&i.loader_debug()), size(&i.initrd()), size(&i.iso)])
        })
        .collect();
    for line in size_table(&sizes) {
        println!("{line}");
    }
    let mut measured: Vec<(String, u64)> = figures.iter().map(|(_, f)| (f.what.clone(), f.tsc)).collect();
    measured.extend(figures.iter().flat_map(|(_, f)| goals::boot_parts(f)));
    measured.extend(goals::request_mask_ratio(&measured));
    measured.push((goals::SHIPPED_SIZE.to_string(), shipped_size(size(&Image::of("default").loader()))?));
    let (verdicts, all_met) = goals::judge(&measured);
    println!("bench: goals (issues 10 and 11); a missed goal makes `runner bench` exit 2, a failed boot exits 1:");
    for line in verdicts {
        println!("{line}");
    }

    for f in &failures {
        print!("bench: FAILED: {f}");
    }
    Ok(bench_status(failures.is_empty(), all_met))
}

/// The exit status: 1 when a boot failed (the figures cannot be trusted),
/// else 2 when a goal was missed, so a script can tell a broken bench from
/// a slow one; 0 only when every boot ran and every goal was met.
pub fn bench_status(boots_ok: bool, goals_met: bool) -> ExitCode {
    ExitCode::from(bench_code(boots_ok, goals_met))
}

pub fn bench_code(boots_ok: bool, goals_met: bool) -> u8 {
    match (boots_ok, goals_met) {
        (false, _) => 1,
        (true, false) => 2,
        (true, true) => 0,
    }
}

/// The stripped loader's `loader` bytes plus the store files the
/// `default` image loads, each printed.
fn shipped_size(loader: u64) -> Result<u64> {
    let dir = crate::out_dir().join("plugins");
    let listing = fs::read_dir(&dir).map_err(|e| machine::Error::io(format!("listing {}", shown(&dir)), e))?;
    let files: Vec<(String, u64)> = listing
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.metadata().ok()?.len())))
        .collect();
    let args = recipes::find("default")?.args;
    let load = args.split_whitespace().find_map(|w| w.strip_prefix("load=")).unwrap_or("");
    let loaded = sizes::loaded_files(load, &files).map_err(Error::Recipe)?;
    println!("bench: shipped: loader.elf {}", grouped(loader));
    for (file, n) in &loaded {
        println!("bench: shipped: plugins/{file} {}", grouped(*n));
    }
    Ok(loader + loaded.iter().map(|(_, n)| n).sum::<u64>())
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
        assert_eq!(bench_lines(serial), ["bench: boot-to-console 1234567 tsc", "bench: acpi-parse 4567 tsc"]);
        assert!(bench_lines("").is_empty());
    }

    #[test]
    fn figures_are_read_from_their_lines() {
        let f =
            figure("bench: boot-to-console 42849798 tsc (firmware and boot loader 17173412 tsc, loader 25676386 tsc)")
                .unwrap();
        assert_eq!((f.what.as_str(), f.tsc), ("boot-to-console", 42_849_798));
        assert_eq!(f.detail, "(firmware and boot loader 17173412 tsc, loader 25676386 tsc)");
        let f = figure("bench: swap-blackout cpus=4 2520 tsc").unwrap();
        assert_eq!((f.what.as_str(), f.tsc, f.detail), ("swap-blackout cpus=4", 2520, ""));
        assert_eq!(
            figure("bench: load-and-link counter-plugin 2342416 tsc").unwrap().what,
            "load-and-link counter-plugin"
        );
        assert_eq!(figure("bench: no figure here"), None);
        assert_eq!(figure("bench: x many tsc"), None);
        assert_eq!(figure("boot-to-console 1 tsc"), None);
    }

    #[test]
    fn tables_align_and_group() {
        assert_eq!(grouped(42_849_798), "42,849,798");
        assert_eq!(grouped(2003), "2,003");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(0), "0");
        let figures = [
            (1, figure("bench: boot-to-console 42849798 tsc (parts)").unwrap()),
            (4, figure("bench: swap-blackout cpus=4 2520 tsc").unwrap()),
        ];
        assert_eq!(
            figure_table(&figures),
            [
                "  figure               cpus   instructions",
                "  boot-to-console         1     42,849,798  (parts)",
                "  swap-blackout cpus=4    4          2,520",
            ]
        );
        let same = [1_234_567, 19_000_000, 10_240, 798_720];
        let t = size_table(&[("boot", same), ("smp", same), ("big", [1, 2, 3, 4])]);
        assert_eq!(t[0], "    loader.elf loader.debug.elf     initrd          iso  images");
        assert_eq!(t[1], "     1,234,567       19,000,000     10,240      798,720  boot, smp");
        assert_eq!(t[2], "             1                2          3            4  big");
        assert_eq!(
            size_table(&[("a", same), ("b", same)])[1],
            "     1,234,567       19,000,000     10,240      798,720  all 2"
        );
        assert_eq!([bench_code(true, true), bench_code(true, false), bench_code(false, true)], [0, 2, 1]);
    }

    #[test]
    fn bench_command_lines_are_accepted_by_the_loader() {
        let lines: Vec<String> = BENCH_BOOTS.iter().map(|b| b.cmdline().unwrap()).collect();
        assert_eq!(
            lines,
            [
                "image=default load=cpuhp-plugin,vmx-plugin,counter-plugin@1.0.0,consumer-plugin@1.0.0 bench",
                "image=bench-plugins test=bench-plugins",
                "image=bench-plugins test=bench-plugins",
                "image=bench-cpuhp test=bench-cpuhp",
                "image=bench-vmx test=bench-vmx"
            ]
        );
        assert!(CommandLine::parse(&lines[0]).unwrap().bench);
        assert_eq!(CommandLine::parse(&lines[1]).unwrap().tests, Some("bench-plugins"));
        assert_eq!(CommandLine::parse(&lines[4]).unwrap().tests, Some("bench-vmx"));
        assert_eq!(BENCH_BOOTS.map(|b| b.cpus()), [1, 1, 4, 2, 2]);
    }

    #[test]
    fn qemu_boots_use_icount_and_bochs_boots_carry_no_extra_words() {
        assert_eq!(BENCH_BOOTS[0].describe(), "qemu q35 -smp 1 -m 128M -icount shift=0,sleep=off, qboot");
        assert_eq!(BENCH_BOOTS[0].timeout(), BENCH_TIMEOUT);
        let vmx = BENCH_BOOTS[4];
        assert_eq!(vmx.target, Target::Bochs(SKYLAKE_X2));
        assert_eq!(vmx.describe(), "bochs corei7_skylake_x x2 256M");
        assert_eq!(vmx.timeout(), crate::machine::layout::BOCHS_TIMEOUT);
        for b in BENCH_BOOTS.iter().filter(|b| matches!(b.target, Target::Bochs(_))) {
            assert!(b.extra.is_empty(), "{}: a Bochs boot takes the ISO's command line", b.image);
        }
    }
}
