//! The runner's own command line. The lists in the help (images, test
//! runs, bench boots) are made from the tables they name, so the help
//! cannot drift from what the runner does.

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use super::bench::BENCH_BOOTS;
use super::profile::{find_window, Window};
use super::test::plan;
use crate::build::recipes::{self, Recipe, RECIPES};
use crate::machine::layout::{BochsModel, BOCHS_CPUS};

#[derive(Debug, Parser)]
#[command(
    name = "runner",
    about = "builds modvisor's images and boots them in QEMU and Bochs",
    after_help = top_help(),
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What the runner was asked to do.
#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Build the loader and every image (only what is stale)
    ///
    /// Builds the loader (cargo, release, x86_64-unknown-none), every plugin
    /// variant (signed into images/out/plugins/<name>-<version>.mvp, with the
    /// unstripped .so beside it for GDB) and the test guests (guests/, into
    /// images/out/guests/<name>.elf, checked against the guest ABI, with
    /// <name>.debug.elf beside), then for every image
    /// images/out/<name>/{loader.elf,initrd,cmdline} and the GRUB ISO
    /// images/out/<name>.iso; each initrd holds every signed plugin under
    /// plugins/ and every guest under guests/.
    /// Pieces that are up to date are left alone. Plugins are signed with
    /// keys/plugin-signing.key, made on the first build.
    #[command(verbatim_doc_comment, after_help = images_help())]
    Build,
    /// Boot every test image on every layout and judge the results
    ///
    /// Builds what is stale, then boots every test image on its layouts (QEMU q35
    /// and pc with several -smp and -m; Bochs for some) and checks how each boot
    /// ended and what its banner reported; then plays the scripted sessions on
    /// serial consoles and drives the QMP hotplug runs (listed below). Serial
    /// logs stay in images/out/runs/. The last line is `N passed, M failed`; the
    /// exit status is 1 if M > 0.
    #[command(verbatim_doc_comment, after_help = runs_help())]
    Test {
        /// Only runs whose name contains SUBSTR, or only the emulator named
        /// SUBSTR (`qemu`, `bochs`)
        #[arg(long, value_name = "SUBSTR")]
        filter: Option<String>,
        /// Boots at a time
        #[arg(short = 'j', long, value_name = "N", default_value_t = 2, value_parser = parse_jobs)]
        jobs: usize,
        /// Seed of the cpuhp-qmp runs' random operations and of the seeded
        /// images (run once with it instead of three fresh seeds); the
        /// report names the seeds it used, and a seed plays the same choices
        #[arg(long, value_name = "N")]
        seed: Option<u64>,
    },
    /// Boot an image in QEMU with the serial console on this terminal
    ///
    /// Boots an image in QEMU with COM1 and the QEMU monitor on this terminal:
    /// Ctrl-A X quits, Ctrl-A C switches to the monitor. COM2 is the unix socket
    /// images/out/run/com2.sock, where `runner swap` uploads plugins; QMP is
    /// images/out/run/qmp.sock, for `runner cpu-add` and `runner cpu-del`.
    /// Arguments after `--` are passed to QEMU as they are (make run QEMU_ARGS=...).
    #[command(verbatim_doc_comment, after_help = images_help())]
    Run {
        /// The image to boot
        #[arg(long, value_name = "NAME", default_value = "default", value_parser = parse_image)]
        image: &'static Recipe,
        /// Passed to QEMU after the runner's own arguments, so they win
        #[arg(last = true, value_name = "QEMU-ARGS")]
        qemu_args: Vec<OsString>,
    },
    /// Boot an image's ISO in Bochs
    ///
    /// Boots an image's ISO in Bochs with N CPUs (default 2) of Bochs's model
    /// MODEL (make bochs BOCHS_MODEL=... BOCHS_CPUS=...). COM1 is this
    /// terminal; Bochs takes every
    /// key, so leave through the loader's power-off or by killing Bochs from
    /// another terminal.
    #[command(verbatim_doc_comment, after_help = images_help())]
    Bochs {
        /// The image to boot
        #[arg(long, value_name = "NAME", default_value = "default", value_parser = parse_image)]
        image: &'static Recipe,
        /// Bochs's CPU model
        #[arg(long, value_name = "MODEL", default_value = BochsModel::SkylakeX.name(), value_parser = parse_model)]
        model: BochsModel,
        /// How many CPUs the machine has (1 to 8)
        #[arg(long, value_name = "N", default_value_t = BOCHS_CPUS, value_parser = parse_bochs_cpus)]
        cpus: u32,
    },
    /// Boot-time figures (instruction counts) and image sizes
    ///
    /// Under QEMU -icount shift=0 (guest TSC = instructions), and in Bochs for
    /// what needs VMX, boots the images listed below; prints every `bench:`
    /// line they print as a table, then the sizes of every image's loader.elf,
    /// initrd and ISO.
    ///
    /// With --profile WINDOW, boots only that window's bench image with every
    /// executed instruction traced and prints the functions the window's
    /// instructions ran in (windows: firmware, boot, load-and-link,
    /// cpu-offline-online; make profile WINDOW=...).
    #[command(verbatim_doc_comment, after_help = bench_help())]
    Bench {
        /// Attribute one window's instructions to functions instead
        #[arg(long, value_name = "WINDOW", value_parser = parse_window)]
        profile: Option<&'static Window>,
    },
    /// Upload a plugin to the image `run` is running and swap it in
    ///
    /// Builds the plugins, then sends plugin NAME (e.g. counter-plugin), version
    /// VERSION or else its highest, to the image `runner run` is running, through
    /// COM2 (images/out/run/com2.sock) with the command `store and swap`. Prints
    /// the loader's reply and a GDB script (`add-symbol-file` per loaded plugin,
    /// also written to images/out/run/plugins.gdb).
    #[command(verbatim_doc_comment)]
    Swap {
        /// The plugin (make swap PLUGIN=NAME)
        #[arg(long, value_name = "NAME", value_parser = parse_plugin)]
        plugin: String,
        /// The version to send; the highest built if not given
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
    },
    /// Upload a guest program to the image `run` or `bochs` is running
    ///
    /// Sends FILE (e.g. images/out/guests/hello.elf) through COM2
    /// (images/out/run/com2.sock) as guest file NAME (FILE's name if not
    /// given). VMs then load it as `uploads/NAME`: `vm run g uploads/NAME`.
    /// Guest files are not signed: a guest runs confined to its VM.
    #[command(verbatim_doc_comment)]
    GuestUpload {
        /// The guest ELF (make guest-upload FILE=PATH)
        #[arg(long, value_name = "PATH")]
        file: std::path::PathBuf,
        /// The name VMs load it by; FILE's name if not given
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Hot-add a CPU to the image `run` is running (QMP)
    ///
    /// Through `runner run`'s QMP socket (images/out/run/qmp.sock): device_add of a
    /// CPU of the boot CPUs' model into the lowest free slot (query-hotpluggable-cpus),
    /// with the given properties on top, e.g. --features '"sse4.2": false' for a
    /// CPU that differs from the boot CPUs. Prints the guest's _OST answer.
    #[command(verbatim_doc_comment)]
    CpuAdd {
        /// Extra CPU properties: '"name": value, ...'
        #[arg(long, value_name = "PROPERTIES", default_value = "")]
        features: String,
    },
    /// Hot-remove a CPU from the image `run` is running (QMP)
    ///
    /// Through `runner run`'s QMP socket: device_del of QEMU's cpu-index N (with
    /// modvisor's default topology also its APIC id and cpu number). QEMU asks the
    /// guest, which ejects the CPU or refuses; prints what QEMU reported.
    #[command(verbatim_doc_comment)]
    CpuDel {
        /// QEMU's cpu-index (make cpu-del CPU=N)
        #[arg(long, value_name = "N")]
        cpu: u64,
    },
}

fn parse_jobs(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("--jobs takes a whole number of at least 1, not `{value}`")),
    }
}

/// Bochs CPU counts the runner offers: the MADT and the loader take more,
/// but every emulated CPU slows the machine down.
fn parse_bochs_cpus(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(n) if (1..=8).contains(&n) => Ok(n),
        _ => Err(format!("--cpus takes a CPU count from 1 to 8, not `{value}`")),
    }
}

fn parse_image(name: &str) -> Result<&'static Recipe, String> {
    recipes::find(name).map_err(|e| e.to_string())
}

fn parse_window(name: &str) -> Result<&'static Window, String> {
    find_window(name)
}

fn parse_model(name: &str) -> Result<BochsModel, String> {
    BochsModel::parse(name).ok_or_else(|| {
        let known: Vec<&str> = BochsModel::ALL.iter().map(|m| m.name()).collect();
        format!("`{name}` is not one of {}", known.join(", "))
    })
}

fn parse_plugin(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("say which plugin: --plugin NAME (make swap PLUGIN=NAME)".into());
    }
    Ok(name.to_string())
}

/// `name  about` lines, the names in one column.
fn table<'a>(title: &str, rows: impl Iterator<Item = (&'a str, String)>) -> String {
    let rows: Vec<(&str, String)> = rows.collect();
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut text = format!("{title}:");
    for (name, about) in rows {
        text.push_str(&format!("\n  {name:<width$}  {about}"));
    }
    text
}

/// Every image of the recipe table.
pub fn images_help() -> String {
    table("images", RECIPES.iter().map(|r| (r.name, r.about.to_string())))
}

fn top_help() -> String {
    format!(
        "{}\n\n`runner <command> --help` describes each command; `runner test --help` lists the test runs.\n\
         environment: ACCEL=tcg (default) or kvm selects QEMU's accelerator.",
        images_help()
    )
}

/// Every run of `runner test`, once per name: images with test targets,
/// then the sessions and the hotplug runs.
pub fn runs_help() -> String {
    let mut rows: Vec<(&str, String)> = Vec::new();
    for run in plan(None, &[0]) {
        if !rows.iter().any(|(n, _)| *n == run.name()) {
            rows.push((run.name(), run.about().to_string()));
        }
    }
    table("runs (for --filter)", rows.into_iter())
}

/// The boots of `runner bench`.
pub fn bench_help() -> String {
    let rows = BENCH_BOOTS.iter().map(|b| {
        let extra = if b.extra.is_empty() { String::new() } else { format!(" with `{}`", b.extra) };
        (b.image, format!("on {}{extra}", b.describe()))
    });
    table("boots", rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn p(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("runner").chain(args.iter().copied())).map(|c| c.command)
    }

    fn err(args: &[&str]) -> String {
        p(args).unwrap_err().to_string()
    }

    /// What `runner <args> --help` prints.
    fn help(args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.push("--help");
        let e = p(&all).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DisplayHelp, "{args:?}");
        e.to_string()
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn commands_and_defaults() {
        assert_eq!(p(&["build"]).unwrap(), Command::Build);
        assert_eq!(p(&["bench"]).unwrap(), Command::Bench { profile: None });
        assert_eq!(
            p(&["bench", "--profile", "boot"]).unwrap(),
            Command::Bench { profile: Some(&super::super::profile::WINDOWS[1]) }
        );
        assert!(p(&["bench", "--profile", "nope"]).is_err());
        assert_eq!(p(&["test"]).unwrap(), Command::Test { filter: None, jobs: 2, seed: None });
        assert_eq!(
            p(&["test", "--filter", "smp", "--jobs", "4"]).unwrap(),
            Command::Test { filter: Some("smp".into()), jobs: 4, seed: None }
        );
        assert_eq!(
            p(&["test", "--filter=fail", "-j1"]).unwrap(),
            Command::Test { filter: Some("fail".into()), jobs: 1, seed: None }
        );
        assert_eq!(
            p(&["test", "--filter", "cpuhp-qmp", "--seed", "42"]).unwrap(),
            Command::Test { filter: Some("cpuhp-qmp".into()), jobs: 2, seed: Some(42) }
        );
        let default = recipes::find("default").unwrap();
        assert_eq!(p(&["run"]).unwrap(), Command::Run { image: default, qemu_args: vec![] });
        assert_eq!(
            p(&["bochs", "--image", "smp"]).unwrap(),
            Command::Bochs { image: recipes::find("smp").unwrap(), model: BochsModel::SkylakeX, cpus: 2 }
        );
        assert_eq!(
            p(&["bochs", "--model", "tigerlake", "--cpus", "4"]).unwrap(),
            Command::Bochs { image: default, model: BochsModel::TigerLake, cpus: 4 }
        );
        assert!(p(&["bochs", "--cpus", "0"]).is_err() && p(&["bochs", "--cpus", "9"]).is_err());
    }

    #[test]
    fn cpu_add_and_cpu_del() {
        assert_eq!(p(&["cpu-add"]).unwrap(), Command::CpuAdd { features: String::new() });
        assert_eq!(
            p(&["cpu-add", "--features", r#""sse4.2": false"#]).unwrap(),
            Command::CpuAdd { features: r#""sse4.2": false"#.into() }
        );
        assert_eq!(p(&["cpu-del", "--cpu", "3"]).unwrap(), Command::CpuDel { cpu: 3 });
        assert!(err(&["cpu-del"]).contains("--cpu <N>"));
        assert!(err(&["cpu-del", "--cpu", "x"]).contains("'x'"));
    }

    #[test]
    fn swap_names_a_plugin_and_maybe_a_version() {
        assert_eq!(
            p(&["swap", "--plugin", "counter-plugin"]).unwrap(),
            Command::Swap { plugin: "counter-plugin".into(), version: None }
        );
        assert_eq!(
            p(&["swap", "--version=2.0.0", "--plugin", "counter-plugin"]).unwrap(),
            Command::Swap { plugin: "counter-plugin".into(), version: Some("2.0.0".into()) }
        );
    }

    #[test]
    fn qemu_arguments_after_double_dash() {
        let Command::Run { image, qemu_args } = p(&["run", "--image", "boot", "--", "-s", "-S", "--"]).unwrap() else {
            panic!("not a run command")
        };
        assert_eq!(image.name, "boot");
        assert_eq!(qemu_args, ["-s", "-S", "--"]);
        // As `make run` calls it with no QEMU_ARGS.
        assert_eq!(
            p(&["run", "--image", "default", "--"]).unwrap(),
            Command::Run { image: recipes::find("default").unwrap(), qemu_args: vec![] }
        );
        assert!(err(&["test", "--", "-s"]).contains("'-s'"));
    }

    #[test]
    fn help_everywhere() {
        for args in [&[][..], &["test"], &["run"], &["bochs"], &["bench"], &["build"], &["swap"], &["cpu-add"]] {
            assert!(help(args).contains("Usage: runner"), "{args:?}");
        }
        assert!(help(&["cpu-del"]).contains("device_del of QEMU's cpu-index N"));
        assert_eq!(p(&["help"]).unwrap_err().kind(), ErrorKind::DisplayHelp);
        assert_eq!(p(&[]).unwrap_err().kind(), ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand);
    }

    #[test]
    fn help_lists_every_image_run_and_bench_boot() {
        let top = help(&[]);
        for r in RECIPES {
            assert!(top.contains(&format!("  {} ", r.name)) && top.contains(r.about), "{}", r.name);
            assert!(!r.about.is_empty(), "{} has no `about`", r.name);
        }
        assert!(help(&["run"]).contains("  bench-vmx "));
        let test = help(&["test"]);
        for run in plan(None, &[0]) {
            assert!(test.contains(&format!("  {} ", run.name())), "{}", run.name());
        }
        for name in ["shell-session", "upload-session", "acpihp-q35", "cpuhp-qmp-q35", "cpuhp-qmp-pc", "fail-timeout"] {
            assert!(test.contains(name), "{name}");
        }
        let bench = help(&["bench"]);
        for b in BENCH_BOOTS {
            assert!(bench.contains(&format!("  {} ", b.image)) && bench.contains(&b.describe()), "{}", b.image);
        }
        assert!(bench.contains("bench-cpuhp") && bench.contains("bench-vmx"));
    }

    #[test]
    fn bad_arguments_are_named() {
        assert!(err(&["frob"]).contains("'frob'"));
        assert!(err(&["--verbose"]).contains("--verbose"));
        assert!(err(&["test", "--filtre", "x"]).contains("--filtre"));
        assert!(err(&["test", "--jobs", "0"]).contains("`0`"));
        assert!(err(&["test", "--jobs", "many"]).contains("`many`"));
        assert!(err(&["test", "--filter"]).contains("--filter"));
        assert!(err(&["test", "--seed", "-1"]).contains("'-1'"));
        assert!(err(&["test", "--seed", "x"]).contains("'x'"));
        assert!(err(&["build", "now"]).contains("now"));
        let e = err(&["run", "--image", "nope"]);
        assert!(e.contains("--image") && e.contains("`nope`") && e.contains("default"), "{e}");
        assert!(err(&["run", "-s"]).contains("-s"));
        // Only Bochs has a CPU model to choose.
        assert!(err(&["run", "--model", "tigerlake"]).contains("--model"));
        let e = err(&["bochs", "--model", "skylake"]);
        assert!(e.contains("`skylake`") && e.contains("corei7_skylake_x, tigerlake"), "{e}");
        assert!(err(&["bench", "--fast"]).contains("--fast"));
        assert!(err(&["swap"]).contains("--plugin <NAME>"));
        assert!(err(&["swap", "--plugin="]).contains("--plugin NAME"));
        assert!(err(&["swap", "--plugin"]).contains("--plugin"));
        assert!(err(&["swap", "--plugin", "x", "--force"]).contains("--force"));
        // Usage errors exit 2, as before.
        assert_eq!(p(&["frob"]).unwrap_err().exit_code(), 2);
    }
}
