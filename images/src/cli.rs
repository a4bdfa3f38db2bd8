//! The runner's own command line.

use std::ffi::OsString;

use lexopt::prelude::*;

use crate::layout::BochsModel;
use crate::recipes::{self, Recipe};
use crate::{Error, Result};

pub const HELP: &str = "\
runner: builds modvisor's images and boots them in QEMU and Bochs

usage: runner <command> [options]

commands:
  build    build the loader and every image (only what is stale)
  test     boot every test image on every layout and judge the results
  run      boot an image in QEMU with the serial console on this terminal
  bochs    boot an image's ISO in Bochs
  bench    boot-time figures (instruction counts) and image sizes
  swap     upload a plugin to the image `run` is running and swap it in
  cpu-add  hot-add a CPU to the image `run` is running (QMP)
  cpu-del  hot-remove a CPU from the image `run` is running (QMP)

`runner <command> --help` describes each command.
environment: ACCEL=tcg (default) or kvm selects QEMU's accelerator.";

pub const BUILD_HELP: &str = "\
usage: runner build

Builds the loader (cargo, release, x86_64-unknown-none) and every plugin
variant (signed into images/out/plugins/<name>-<version>.mvp, with the
unstripped .so beside it for GDB), then for every image
images/out/<name>/{loader.elf,initrd,cmdline} and the GRUB ISO
images/out/<name>.iso; each initrd holds every signed plugin under plugins/.
Pieces that are up to date are left alone. Plugins are signed with
keys/plugin-signing.key, made on the first build.";

pub const TEST_HELP: &str = "\
usage: runner test [--filter SUBSTR] [--jobs N]

Builds what is stale, then boots every test image on its layouts (QEMU q35
and pc with several -smp and -m; Bochs for some) and checks how each boot
ended and what its banner reported; then plays the scripted shell session
`shell-session` on the `default` image's serial console and checks every
reply, and drives the `acpihp` image's CPU hot-add and eject over QMP on q35
and pc (`acpihp-q35`, `acpihp-pc`). Serial logs stay in images/out/runs/.
The last line is `N passed, M failed`; the exit status is 1 if M > 0.

options:
  --filter SUBSTR  only images (or sessions) whose name contains SUBSTR, or
                   only the emulator named SUBSTR (`qemu`, `bochs`)
  --jobs N         boots at a time (default 2)";

pub const RUN_HELP: &str = "\
usage: runner run [--image NAME] [-- QEMU-ARGS...]

Boots an image (default: `default`) in QEMU with COM1 and the QEMU monitor on
this terminal: Ctrl-A X quits, Ctrl-A C switches to the monitor. COM2 is the
unix socket images/out/run/com2.sock, where `runner swap` uploads plugins.
Arguments after `--` are passed to QEMU as they are (make run QEMU_ARGS=...).";

pub const BOCHS_HELP: &str = "\
usage: runner bochs [--image NAME] [--model MODEL]

Boots an image's ISO (default: `default`) in Bochs with two CPUs of Bochs's
model MODEL: corei7_skylake_x (default) or tigerlake (make bochs BOCHS_MODEL=...).
COM1 is this terminal; Bochs takes every key, so leave through the loader's
power-off or by killing Bochs from another terminal.";

pub const BENCH_HELP: &str = "\
usage: runner bench

Under QEMU -icount shift=0 (guest TSC = instructions): boots the `default`
image with `bench` added to its command line, then the `bench-plugins` image
with -smp 1 and with -smp 4; prints every `bench:` line they print, then the
sizes of every image's loader.elf, initrd and ISO.";

pub const SWAP_HELP: &str = "\
usage: runner swap --plugin NAME [--version VERSION]

Builds the plugins, then sends plugin NAME (e.g. counter-plugin), version
VERSION or else its highest, to the image `runner run` is running, through
COM2 (images/out/run/com2.sock) with the command `store and swap`. Prints
the loader's reply and a GDB script (`add-symbol-file` per loaded plugin,
also written to images/out/run/plugins.gdb).";

pub const CPU_ADD_HELP: &str = "\
usage: runner cpu-add [--features '\"name\": value, ...']

Through `runner run`'s QMP socket (images/out/run/qmp.sock): device_add of a
CPU of the boot CPUs' model into the lowest free slot (query-hotpluggable-cpus),
with the given properties on top, e.g. --features '\"sse4.2\": false' for a
CPU that differs from the boot CPUs. Prints the guest's _OST answer.";

pub const CPU_DEL_HELP: &str = "\
usage: runner cpu-del --cpu N

Through `runner run`'s QMP socket: device_del of QEMU's cpu-index N (with
modvisor's default topology also its APIC id and cpu number). QEMU asks the
guest, which ejects the CPU or refuses; prints what QEMU reported.";

/// What the runner was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Print this help text and stop.
    Help(&'static str),
    Build,
    Test {
        filter: Option<String>,
        jobs: usize,
    },
    Run {
        image: &'static Recipe,
        qemu_args: Vec<OsString>,
    },
    Bochs {
        image: &'static Recipe,
        model: BochsModel,
    },
    Bench,
    Swap {
        plugin: String,
        version: Option<String>,
    },
    CpuAdd {
        features: String,
    },
    CpuDel {
        cpu: u64,
    },
}

const DEFAULT_JOBS: usize = 2;
const DEFAULT_IMAGE: &str = "default";

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    // Everything after the first `--` belongs to QEMU; lexopt would
    // otherwise hide where its own options end.
    let passthrough = match args.iter().position(|a| a == "--") {
        Some(i) => {
            let rest = args.split_off(i + 1);
            args.pop();
            Some(rest)
        }
        None => None,
    };
    let mut parser = lexopt::Parser::from_args(args);
    let command = match parser.next().map_err(usage("runner"))? {
        None => return Err(Error::Usage("runner: no command given; see `runner --help`".into())),
        Some(Short('h') | Long("help")) => return Ok(Command::Help(HELP)),
        Some(Value(v)) => v.string().map_err(usage("runner"))?,
        Some(other) => return Err(usage("runner")(other.unexpected())),
    };
    if passthrough.is_some() && command != "run" {
        return Err(Error::Usage(format!("runner {command}: `--` and QEMU arguments belong to `runner run`")));
    }
    match command.as_str() {
        "help" => Ok(Command::Help(HELP)),
        "build" => no_options(&mut parser, "build", BUILD_HELP, Command::Build),
        "bench" => no_options(&mut parser, "bench", BENCH_HELP, Command::Bench),
        "test" => parse_test(&mut parser),
        "run" => Ok(match parse_image(&mut parser, "run", None)? {
            Some(image) => Command::Run { image, qemu_args: passthrough.unwrap_or_default() },
            None => Command::Help(RUN_HELP),
        }),
        "bochs" => {
            let mut model = BochsModel::SkylakeX;
            Ok(match parse_image(&mut parser, "bochs", Some(&mut model))? {
                Some(image) => Command::Bochs { image, model },
                None => Command::Help(BOCHS_HELP),
            })
        }
        "swap" => parse_swap(&mut parser),
        "cpu-add" => parse_cpu_add(&mut parser),
        "cpu-del" => parse_cpu_del(&mut parser),
        other => Err(Error::Usage(format!(
            "runner: unknown command `{other}`; commands are build, test, run, bochs, bench, swap, cpu-add, cpu-del (see `runner --help`)"
        ))),
    }
}

/// Wraps lexopt's message (which names the argument) with the command.
fn usage(command: &'static str) -> impl Fn(lexopt::Error) -> Error {
    move |e| Error::Usage(format!("{command}: {e}; see `{command} --help`", command = full(command)))
}

fn full(command: &str) -> String {
    if command == "runner" {
        command.to_string()
    } else {
        format!("runner {command}")
    }
}

fn no_options(
    parser: &mut lexopt::Parser,
    name: &'static str,
    help: &'static str,
    command: Command,
) -> Result<Command> {
    match parser.next().map_err(usage(name))? {
        None => Ok(command),
        Some(Short('h') | Long("help")) => Ok(Command::Help(help)),
        Some(other) => Err(usage(name)(other.unexpected())),
    }
}

fn parse_test(parser: &mut lexopt::Parser) -> Result<Command> {
    let mut filter = None;
    let mut jobs = DEFAULT_JOBS;
    while let Some(arg) = parser.next().map_err(usage("test"))? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(TEST_HELP)),
            Long("filter") => filter = Some(parser.value().and_then(|v| v.string()).map_err(usage("test"))?),
            Short('j') | Long("jobs") => {
                let value = parser.value().and_then(|v| v.string()).map_err(usage("test"))?;
                jobs = match value.parse::<usize>() {
                    Ok(n) if n >= 1 => n,
                    _ => {
                        return Err(Error::Usage(format!(
                            "runner test: --jobs takes a whole number of at least 1, not `{value}`"
                        )))
                    }
                };
            }
            other => return Err(usage("test")(other.unexpected())),
        }
    }
    Ok(Command::Test { filter, jobs })
}

fn parse_swap(parser: &mut lexopt::Parser) -> Result<Command> {
    let (mut plugin, mut version) = (None, None);
    while let Some(arg) = parser.next().map_err(usage("swap"))? {
        let slot = match arg {
            Short('h') | Long("help") => return Ok(Command::Help(SWAP_HELP)),
            Long("plugin") => &mut plugin,
            Long("version") => &mut version,
            other => return Err(usage("swap")(other.unexpected())),
        };
        *slot = Some(parser.value().and_then(|v| v.string()).map_err(usage("swap"))?);
    }
    match plugin {
        Some(plugin) if !plugin.is_empty() => Ok(Command::Swap { plugin, version }),
        _ => Err(Error::Usage("runner swap: say which plugin: --plugin NAME (make swap PLUGIN=NAME)".into())),
    }
}

fn parse_cpu_add(parser: &mut lexopt::Parser) -> Result<Command> {
    let mut features = String::new();
    while let Some(arg) = parser.next().map_err(usage("cpu-add"))? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(CPU_ADD_HELP)),
            Long("features") => features = parser.value().and_then(|v| v.string()).map_err(usage("cpu-add"))?,
            other => return Err(usage("cpu-add")(other.unexpected())),
        }
    }
    Ok(Command::CpuAdd { features })
}

fn parse_cpu_del(parser: &mut lexopt::Parser) -> Result<Command> {
    let mut cpu = None;
    while let Some(arg) = parser.next().map_err(usage("cpu-del"))? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(CPU_DEL_HELP)),
            Long("cpu") => cpu = Some(parser.value().and_then(|v| v.parse()).map_err(usage("cpu-del"))?),
            other => return Err(usage("cpu-del")(other.unexpected())),
        }
    }
    cpu.map(|cpu| Command::CpuDel { cpu })
        .ok_or_else(|| Error::Usage("runner cpu-del: say which CPU: --cpu N (make cpu-del CPU=N)".into()))
}

/// `--image NAME` for `run` and `bochs`, and `--model MODEL` where `model`
/// is given (`bochs`): the recipe, or `None` when help was asked for.
fn parse_image(
    parser: &mut lexopt::Parser,
    name: &'static str,
    mut model: Option<&mut BochsModel>,
) -> Result<Option<&'static Recipe>> {
    let mut image = DEFAULT_IMAGE.to_string();
    while let Some(arg) = parser.next().map_err(usage(name))? {
        match (arg, model.as_deref_mut()) {
            (Short('h') | Long("help"), _) => return Ok(None),
            (Long("image"), _) => image = parser.value().and_then(|v| v.string()).map_err(usage(name))?,
            (Long("model"), Some(slot)) => {
                let value = parser.value().and_then(|v| v.string()).map_err(usage(name))?;
                *slot = BochsModel::parse(&value).ok_or_else(|| {
                    let known: Vec<&str> = BochsModel::ALL.iter().map(|m| m.name()).collect();
                    Error::Usage(format!("runner {name}: --model `{value}` is not one of {}", known.join(", ")))
                })?;
            }
            (other, _) => return Err(usage(name)(other.unexpected())),
        }
    }
    recipes::find(&image).map(Some).map_err(|e| Error::Usage(format!("runner {name}: --image: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command> {
        parse(args.iter().map(OsString::from))
    }

    fn err(args: &[&str]) -> String {
        p(args).unwrap_err().to_string()
    }

    #[test]
    fn commands_and_defaults() {
        assert_eq!(p(&["build"]).unwrap(), Command::Build);
        assert_eq!(p(&["bench"]).unwrap(), Command::Bench);
        assert_eq!(p(&["test"]).unwrap(), Command::Test { filter: None, jobs: 2 });
        assert_eq!(
            p(&["test", "--filter", "smp", "--jobs", "4"]).unwrap(),
            Command::Test { filter: Some("smp".into()), jobs: 4 }
        );
        assert_eq!(
            p(&["test", "--filter=fail", "-j1"]).unwrap(),
            Command::Test { filter: Some("fail".into()), jobs: 1 }
        );
        let default = recipes::find("default").unwrap();
        assert_eq!(p(&["run"]).unwrap(), Command::Run { image: default, qemu_args: vec![] });
        assert_eq!(
            p(&["bochs", "--image", "smp"]).unwrap(),
            Command::Bochs { image: recipes::find("smp").unwrap(), model: BochsModel::SkylakeX }
        );
        assert_eq!(
            p(&["bochs", "--model", "tigerlake"]).unwrap(),
            Command::Bochs { image: default, model: BochsModel::TigerLake }
        );
    }

    #[test]
    fn cpu_add_and_cpu_del() {
        assert_eq!(p(&["cpu-add"]).unwrap(), Command::CpuAdd { features: String::new() });
        assert_eq!(
            p(&["cpu-add", "--features", r#""sse4.2": false"#]).unwrap(),
            Command::CpuAdd { features: r#""sse4.2": false"#.into() }
        );
        assert_eq!(p(&["cpu-del", "--cpu", "3"]).unwrap(), Command::CpuDel { cpu: 3 });
        assert!(err(&["cpu-del"]).contains("--cpu N"));
        assert!(err(&["cpu-del", "--cpu", "x"]).contains("runner cpu-del"));
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
        assert_eq!(
            p(&["run", "--"]).unwrap(),
            Command::Run { image: recipes::find("default").unwrap(), qemu_args: vec![] }
        );
        assert!(err(&["test", "--", "-s"]).contains("belong to `runner run`"));
    }

    #[test]
    fn help_everywhere() {
        assert_eq!(p(&["--help"]).unwrap(), Command::Help(HELP));
        assert_eq!(p(&["-h"]).unwrap(), Command::Help(HELP));
        assert_eq!(p(&["help"]).unwrap(), Command::Help(HELP));
        assert_eq!(p(&["test", "--help"]).unwrap(), Command::Help(TEST_HELP));
        assert_eq!(p(&["run", "-h"]).unwrap(), Command::Help(RUN_HELP));
        assert_eq!(p(&["bochs", "--help"]).unwrap(), Command::Help(BOCHS_HELP));
        assert_eq!(p(&["bench", "--help"]).unwrap(), Command::Help(BENCH_HELP));
        assert_eq!(p(&["build", "--help"]).unwrap(), Command::Help(BUILD_HELP));
        assert_eq!(p(&["swap", "--help"]).unwrap(), Command::Help(SWAP_HELP));
    }

    #[test]
    fn bad_arguments_are_named() {
        assert!(err(&[]).contains("no command"));
        assert!(err(&["frob"]).contains("`frob`"));
        assert!(err(&["--verbose"]).contains("--verbose"));
        assert!(err(&["test", "--filtre", "x"]).contains("--filtre"));
        assert!(err(&["test", "--jobs", "0"]).contains("`0`"));
        assert!(err(&["test", "--jobs", "many"]).contains("`many`"));
        assert!(err(&["test", "--filter"]).contains("--filter"));
        assert!(err(&["build", "now"]).contains("now"));
        let e = err(&["run", "--image", "nope"]);
        assert!(e.contains("--image") && e.contains("`nope`") && e.contains("default"), "{e}");
        assert!(err(&["run", "-s"]).contains("-s"));
        // Only Bochs has a CPU model to choose.
        assert!(err(&["run", "--model", "tigerlake"]).contains("--model"));
        let e = err(&["bochs", "--model", "skylake"]);
        assert!(e.contains("`skylake`") && e.contains("corei7_skylake_x, tigerlake"), "{e}");
        assert!(err(&["bench", "--fast"]).contains("runner bench --help"));
        assert!(err(&["swap"]).contains("--plugin NAME"));
        assert!(err(&["swap", "--plugin="]).contains("--plugin NAME"));
        assert!(err(&["swap", "--plugin"]).contains("--plugin"));
        assert!(err(&["swap", "--plugin", "x", "--force"]).contains("--force"));
    }
}
