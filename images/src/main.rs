//! `runner`: builds modvisor's images and boots them. See `runner --help`;
//! the work is done in the `images` library.

use std::process::ExitCode;

use clap::Parser;
use images::build::builder::{self, Image};
use images::commands::cli::{Cli, Command};
use images::commands::{bench, bochs, hotplug, profile, run, swap, test, Result};
use images::machine::layout::BochsLayout;
use images::machine::process;
use images::machine::qemu::{Accel, Qemu};

fn main() -> ExitCode {
    // clap prints help and usage errors itself (exit 0 and 2).
    let cli = Cli::parse();
    // Before anything is built or booted: Ctrl-C then always ends the
    // runner and every emulator it started.
    process::install_handler();
    match execute(cli.command) {
        Ok(code) => code,
        // Usage messages name the command themselves.
        Err(e) if e.is_usage() => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("runner: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> Result<ExitCode> {
    match command {
        Command::Build => {
            builder::build_all()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Test { filter, jobs, seed } => test::test_command(filter.as_deref(), jobs, seed),
        Command::Run { image, qemu_args } => {
            let accel = Accel::from_env()?;
            let qemu = Qemu::locate()?;
            builder::build_all()?;
            run::run_console(&qemu, &Image::of(image.name), image.reboots(), &qemu_args, accel)
        }
        Command::Bochs { image, model, cpus } => {
            builder::build_all()?;
            bochs::bochs_console(&Image::of(image.name), BochsLayout::new(model, cpus))
        }
        Command::Bench { profile: None } => bench::bench_command(),
        Command::Bench { profile: Some(w) } => profile::profile_command(w),
        Command::Swap { plugin, version } => swap::swap_command(&plugin, version.as_deref()),
        Command::GuestUpload { file, name } => swap::guest_upload_command(&file, name.as_deref()),
        Command::CpuAdd { features } => hotplug::cpu_add_command(&features),
        Command::CpuDel { cpu } => hotplug::cpu_del_command(cpu),
    }
}
