//! `runner`: builds modvisor's images and boots them. See `runner --help`;
//! the work is done in the `images` library.

use std::process::ExitCode;

use images::builder::{self, Image};
use images::cli::{self, Command};
use images::emulator::{self, Accel};
use images::{bench, hotplug, swap, testrun, Error};

fn main() -> ExitCode {
    match cli::parse(std::env::args_os().skip(1)).and_then(execute) {
        Ok(code) => code,
        // Usage messages name the command themselves.
        Err(e @ Error::Usage(_)) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("runner: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> images::Result<ExitCode> {
    match command {
        Command::Help(text) => {
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Build => builder::build_all().map(|()| ExitCode::SUCCESS),
        Command::Test { filter, jobs } => testrun::test_command(filter.as_deref(), jobs),
        Command::Run { image, qemu_args } => {
            let accel = Accel::from_env()?;
            builder::build_all()?;
            emulator::run_console(&Image::of(image.name), image.reboots(), &qemu_args, accel)
        }
        Command::Bochs { image, model } => {
            builder::build_all()?;
            emulator::bochs_console(&Image::of(image.name), model)
        }
        Command::Bench => bench::bench_command(),
        Command::Swap { plugin, version } => swap::swap_command(&plugin, version.as_deref()),
        Command::CpuAdd { features } => hotplug::cpu_add_command(&features),
        Command::CpuDel { cpu } => hotplug::cpu_del_command(cpu),
    }
}
