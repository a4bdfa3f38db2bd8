//! `runner bench --profile <window>`: which functions a bench window's
//! instructions ran in.
//!
//! QEMU runs the window's bench boot as `runner bench` does (`-icount
//! shift=0,sleep=off`), with `-accel tcg,one-insn-per-tb=on -d
//! exec,nochain`: every translation block is one instruction and every
//! executed block is logged, so each trace line on QEMU's stderr is one
//! executed instruction with its PC. The runner reads the lines through a
//! pipe as they come (the boot window is tens of millions of lines; none
//! is stored), counts them per PC between the window's two marks, stops
//! QEMU once the end mark ran, and names the PCs from the image's
//! `loader.debug.elf` and, at the bases the loader logged, the plugins'
//! unstripped `.so` files. The marks are the entries of named loader
//! functions, so the guest needs no change to be profiled.

use std::io::{BufRead, BufReader};
use std::process::ExitCode;

use super::bench::{grouped, BenchBoot, BENCH_BOOTS};
use super::symbols::{plugin_bases, trace_pc, Symbols, Tally};
use super::{Error, Result};
use crate::build::builder::{self, Image};
use crate::build::plugin_build::debug_object;
use crate::machine::layout::Target;
use crate::machine::process::{Group, Guard};
use crate::machine::qemu::{qemu_args, Accel, Qemu, QemuBoot};
use crate::machine::{fresh_run_dir, Serial};
use crate::{read_lossy, shown};

/// Where a window opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// At reset: the firmware's first instruction.
    Reset,
    /// At the loader's PVH entry (`pvh_entry`, where QEMU's `-kernel`
    /// boot jumps; the ELF entry point is the multiboot2 one).
    Entry,
    /// At the first entry into the loader function of this name.
    Function(&'static str),
}

/// Where a window closes: the first entry into the named loader function
/// after it opened, or the loader's PVH entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Entry,
    Function(&'static str),
}

/// A window of a bench boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub name: &'static str,
    /// The `BENCH_BOOTS` row it profiles.
    pub boot: usize,
    pub start: Start,
    pub end: End,
    pub about: &'static str,
}

pub const WINDOWS: &[Window] = &[
    Window {
        name: "firmware",
        boot: 0,
        start: Start::Reset,
        end: End::Entry,
        about: "reset to the loader's PVH entry (the firmware part of boot-to-console)",
    },
    Window {
        name: "boot",
        boot: 0,
        start: Start::Entry,
        end: End::Function("loader::power::exit"),
        about: "the loader's entry to power-off under `bench` (the loader part of boot-to-console)",
    },
    // Ends where the suite starts its swap (before the new version is
    // loaded): the two loads and the lines that print their figures.
    // `registry::list` would be closer, but it is inlined there.
    Window {
        name: "load-and-link",
        boot: 1,
        start: Start::Function("loader::plugin::registry::load"),
        end: End::Function("loader::plugin::registry::swap::swap_all"),
        about: "bench-plugins: counter-plugin 1.0.0 and consumer-plugin 1.0.0 loaded, one after the other",
    },
    Window {
        name: "cpu-offline-online",
        boot: 3,
        start: Start::Function("loader::ktest::cpuhp::bench"),
        end: End::Function("loader::power::exit"),
        about: "bench-cpuhp: the second CPU offline and online through cpuhp's states, all CPUs",
    },
];

pub fn find_window(name: &str) -> std::result::Result<&'static Window, String> {
    WINDOWS.iter().find(|w| w.name == name).ok_or_else(|| {
        let known: Vec<&str> = WINDOWS.iter().map(|w| w.name).collect();
        format!("no profile window `{name}`: use one of {}", known.join(", "))
    })
}

/// `args` with one instruction per translation block and every executed
/// block logged (to stderr: no `-D`).
pub fn profiling_args(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out: Vec<std::ffi::OsString> = Vec::with_capacity(args.len() + 2);
    for a in args {
        let tcg = out.last().is_some_and(|p| p == "-accel") && a == "tcg";
        out.push(if tcg { "tcg,one-insn-per-tb=on".into() } else { a });
    }
    out.extend(["-d".into(), "exec,nochain".into()]);
    out
}

/// The loader's symbol for its PVH entry.
const PVH_ENTRY: &str = "pvh_entry";

/// The PCs of a window's marks in the loader's symbols.
fn marks(window: &Window, symbols: &Symbols) -> Result<(Option<u64>, u64)> {
    let find = |name: &str| {
        symbols.address_of(name).ok_or_else(|| {
            Error::Usage(format!("window `{}`: the loader has no function `{name}` (inlined or renamed?)", window.name))
        })
    };
    let start = match window.start {
        Start::Reset => None,
        Start::Entry => Some(find(PVH_ENTRY)?),
        Start::Function(f) => Some(find(f)?),
    };
    let end = match window.end {
        End::Entry => find(PVH_ENTRY)?,
        End::Function(f) => find(f)?,
    };
    Ok((start, end))
}

pub fn profile_command(window: &Window) -> Result<ExitCode> {
    let accel = Accel::from_env()?;
    if accel != Accel::Tcg {
        return Err(Error::Usage("--profile needs TCG (QEMU's trace of executed blocks): unset ACCEL".into()));
    }
    let qemu = Qemu::locate()?;
    builder::build_all()?;
    let boot: &BenchBoot = &BENCH_BOOTS[window.boot];
    let Target::Qemu(layout) = boot.target else {
        return Err(Error::Usage(format!("window `{}`: its boot is not a QEMU boot", window.name)));
    };
    let image = Image::of(boot.image);
    let elf = std::fs::read(image.loader_debug())
        .map_err(|e| Error::Io { context: format!("reading {}", shown(&image.loader_debug())), source: e })?;
    let mut symbols = Symbols::default();
    symbols.add_elf(&elf, 0, "").map_err(|e| Error::Usage(format!("{}: {e}", shown(&image.loader_debug()))))?;
    let (start, end) = marks(window, &symbols)?;

    let dir = fresh_run_dir(&format!("profile.{}", window.name))?;
    let serial_path = dir.join("serial.log");
    let cmdline = boot.cmdline()?;
    let args = profiling_args(qemu_args(&QemuBoot {
        icount: true,
        ..image.qemu_boot(&cmdline, layout, accel, Serial::File(&serial_path))
    }));
    println!("profile: window `{}`: {}", window.name, window.about);
    println!("profile: booting `{cmdline}` on {} with one instruction per block, every block traced", boot.describe());
    let tally = trace(&qemu, &args, start, end)?;
    if !tally.closed() {
        println!("profile: the window never closed (QEMU ended first); what ran is counted below");
    }
    let serial = read_lossy(&serial_path);
    for (name, version, base) in plugin_bases(&serial) {
        let so = debug_object(&format!("plugins/{name}-{version}.mvp"));
        if let Ok(bytes) = std::fs::read(&so) {
            symbols.add_elf(&bytes, base, &name).map_err(|e| Error::Usage(format!("{}: {e}", shown(&so))))?;
        }
    }
    for line in report(&tally.by_function(&symbols), tally.total, 30) {
        println!("{line}");
    }
    Ok(if tally.closed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Runs QEMU with `args`, its stderr through a pipe into a tally; stops
/// QEMU once the window closed.
fn trace(qemu: &Qemu, args: &[std::ffi::OsString], start: Option<u64>, end: u64) -> Result<Tally> {
    let io = |what: &str, e| Error::Io { context: what.to_string(), source: e };
    let (reader, writer) = std::io::pipe().map_err(|e| io("making a pipe for QEMU's trace", e))?;
    let mut command = qemu.command();
    command.args(args).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(writer);
    let mut child = Guard::spawn(&mut command, Group::Own).map_err(|e| io("starting QEMU", e))?;
    // The parent's copy of the write end went with `command`: drop it, or
    // the read below would never see the end of the stream.
    drop(command);
    let mut tally = Tally::new(start, end);
    let mut other = Vec::new();
    let mut line = String::new();
    let mut lines = BufReader::with_capacity(1 << 20, reader);
    while lines.read_line(&mut line).map_err(|e| io("reading QEMU's trace", e))? > 0 {
        match trace_pc(&line) {
            Some(pc) => tally.step(pc),
            // `-d exec` also says where it broke a chain for an interrupt:
            // that block did not run, so the line counts for nothing.
            None if line.starts_with("Stopped execution") => {}
            None if other.len() < 20 => other.push(line.trim_end().to_string()),
            None => {}
        }
        line.clear();
        if tally.closed() {
            break;
        }
    }
    child.kill().map_err(|e| io("stopping QEMU", e))?;
    for l in other {
        println!("profile: qemu: {l}");
    }
    Ok(tally)
}

/// Which image a reported function lies in: a plugin's names carry
/// `<plugin>: `, PCs outside every symbol are `? <page>`.
fn image_of(function: &str) -> &str {
    if function.starts_with("? ") {
        "no symbol (firmware, or code without one)"
    } else {
        function.split_once(": ").map_or("loader", |(plugin, _)| plugin)
    }
}

/// The top `top` functions with count and share of `total`, after the
/// split by image.
pub fn report(rows: &[(String, u64)], total: u64, top: usize) -> Vec<String> {
    let share = |n: u64| if total == 0 { 0.0 } else { n as f64 * 100.0 / total as f64 };
    let mut lines = vec![format!("profile: {} instructions in the window, {} functions", grouped(total), rows.len())];
    let mut images: Vec<(&str, u64)> = Vec::new();
    for (name, n) in rows {
        match images.iter_mut().find(|(i, _)| *i == image_of(name)) {
            Some((_, sum)) => *sum += n,
            None => images.push((image_of(name), *n)),
        }
    }
    images.sort_by_key(|i| std::cmp::Reverse(i.1));
    for (image, n) in images {
        lines.push(format!("  {:>14} {:>5.1}%  in {image}", grouped(n), share(n)));
    }
    lines.push(format!("  {:>14} {:>6}  function", "instructions", "share"));
    for (name, n) in rows.iter().take(top) {
        lines.push(format!("  {:>14} {:>5.1}%  {name}", grouped(*n), share(*n)));
    }
    let rest: u64 = rows.iter().skip(top).map(|(_, n)| n).sum();
    if rest > 0 {
        lines.push(format!("  {:>14} {:>5.1}%  ({} more functions)", grouped(rest), share(rest), rows.len() - top));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_name_their_boots() {
        assert_eq!(find_window("boot").unwrap().boot, 0);
        assert!(find_window("nope").unwrap_err().contains("firmware, boot, load-and-link"));
        for w in WINDOWS {
            assert!(matches!(BENCH_BOOTS[w.boot].target, Target::Qemu(_)), "{}", w.name);
        }
    }

    #[test]
    fn profiling_turns_on_single_instruction_blocks_and_the_trace() {
        let args: Vec<std::ffi::OsString> = ["-machine", "q35", "-accel", "tcg", "-cpu", "max"].map(Into::into).into();
        let out: Vec<String> = profiling_args(args).iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(out, ["-machine", "q35", "-accel", "tcg,one-insn-per-tb=on", "-cpu", "max", "-d", "exec,nochain"]);
    }

    #[test]
    fn the_report_has_shares_and_the_rest() {
        let rows = [("a".to_string(), 75), ("counter-plugin: b".to_string(), 20), ("? 0xf0000".to_string(), 5)];
        let lines = report(&rows, 100, 2);
        assert_eq!(lines[0], "profile: 100 instructions in the window, 3 functions");
        assert_eq!(lines[1], "              75  75.0%  in loader");
        assert_eq!(lines[2], "              20  20.0%  in counter-plugin");
        assert_eq!(lines[3], "               5   5.0%  in no symbol (firmware, or code without one)");
        assert_eq!(lines[5], "              75  75.0%  a");
        assert_eq!(lines[7], "               5   5.0%  (1 more functions)");
        assert_eq!(report(&[], 0, 2).len(), 2);
    }
}
