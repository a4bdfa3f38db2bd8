//! `runner run`: an image in QEMU with COM1 and the QEMU monitor on this
//! terminal, COM2 and QMP on sockets for `runner swap` and `runner cpu-add`.

use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use loader_core::power::exit::Status;

use super::{Error, Result};
use crate::build::builder::Image;
use crate::machine::layout::RUN_LAYOUT;
use crate::machine::process::{Group, Guard};
use crate::machine::qemu::{com2_serial_arg, qemu_args, qmp_args, Accel, Qemu, QemuBoot};
use crate::machine::Serial;
use crate::{out_dir, shown};

/// The files of the interactive session (`runner run`).
pub fn run_dir() -> PathBuf {
    out_dir().join("run")
}

/// The host end of the guest's COM2.
pub fn com2_socket() -> PathBuf {
    run_dir().join("com2.sock")
}

/// The QMP socket of `runner run`.
pub fn qmp_socket() -> PathBuf {
    run_dir().join("qmp.sock")
}

/// How an interactive session ended, for the user and for make.
fn report_interactive(code: Option<i32>) -> ExitCode {
    let status = code.and_then(|c| Status::ALL.into_iter().find(|s| s.qemu_exit_code() == c && c != 0));
    match (code, status) {
        (Some(0), _) => {
            println!("run: QEMU exited (quit, power-off or reset)");
            ExitCode::SUCCESS
        }
        (_, Some(s)) => {
            println!("run: the loader exited with `{}`", s.name());
            if s == Status::Pass {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        (Some(c), None) => {
            println!("run: QEMU failed with status {c}");
            ExitCode::FAILURE
        }
        (None, _) => {
            println!("run: QEMU was killed by a signal");
            ExitCode::FAILURE
        }
    }
}

/// What `runner run` says first: the image, the QEMU and the machine.
fn first_line(image: &str, qemu: &Qemu, extra_note: &str) -> String {
    format!(
        "run: image `{image}` on {}, {RUN_LAYOUT}{extra_note}; Ctrl-A X quits, Ctrl-A C toggles the QEMU monitor",
        qemu.describe()
    )
}

/// How to debug the run: the shipped `loader.elf` is stripped, so GDB
/// takes its debug twin.
fn gdb_hint(image: &Image) -> String {
    format!(
        "run: GDB: start with QEMU_ARGS=-s, then `gdb {}`, `target remote :1234` (after `make swap`, also \
         `source {}`)",
        shown(&image.loader_debug()),
        shown(&super::swap::gdb_script_path())
    )
}

/// `runner run`: the image in QEMU with COM1 and the monitor on this terminal.
pub fn run_console(qemu: &Qemu, image: &Image, reboots: bool, extra: &[OsString], accel: Accel) -> Result<ExitCode> {
    let cmdline = image.cmdline()?;
    let socket = com2_socket();
    let com2 = com2_serial_arg(&socket)?;
    fs::create_dir_all(run_dir()).map_err(|e| Error::io(format!("creating {}", run_dir().display()), e))?;
    // A socket left by an earlier session would make QEMU's bind fail.
    if socket.exists() {
        fs::remove_file(&socket).map_err(|e| Error::io(format!("removing {}", socket.display()), e))?;
    }
    let boot =
        QemuBoot { reboots, com2: Some(&com2), ..image.qemu_boot(&cmdline, RUN_LAYOUT, accel, Serial::Terminal) };
    let qmp = qmp_socket();
    if qmp.exists() {
        fs::remove_file(&qmp).map_err(|e| Error::io(format!("removing {}", qmp.display()), e))?;
    }
    let mut args = qemu_args(&boot);
    args.extend(qmp_args(&qmp));
    args.extend(extra.iter().cloned());
    // Later QEMU options override earlier ones, so extra `-smp`/`-m` win.
    let extra_note: String = extra.iter().map(|a| format!(" {}", a.to_string_lossy())).collect();
    println!("{}", first_line(&image.name, qemu, &extra_note));
    println!("run: COM2 is {}: `make swap PLUGIN=<name>` uploads a plugin from another terminal", shown(&socket));
    println!(
        "run: QMP is {}: `make cpu-add [FEATURES='\"sse4.2\": false']` and `make cpu-del CPU=<n>` hot-plug CPUs",
        shown(&qmp)
    );
    println!("{}", gdb_hint(image));
    // On the terminal, so in its foreground group: QEMU reads the keys.
    let binary = shown(&qemu.tree.binary);
    let mut child = Guard::spawn(qemu.command().args(&args), Group::Terminal)
        .map_err(|e| Error::io(format!("starting {binary}"), e))?;
    let status = child.wait().map_err(|e| Error::io(format!("running {binary}"), e))?;
    Ok(report_interactive(status.code()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::qemu::{QemuTree, QemuVersion};

    #[test]
    fn interactive_exit_reporting() {
        assert_eq!(report_interactive(Some(0)), ExitCode::SUCCESS);
        assert_eq!(report_interactive(Some(33)), ExitCode::SUCCESS);
        assert_eq!(report_interactive(Some(37)), ExitCode::FAILURE);
        assert_eq!(report_interactive(Some(1)), ExitCode::FAILURE);
        assert_eq!(report_interactive(None), ExitCode::FAILURE);
    }

    #[test]
    fn the_first_line_names_the_qemu() {
        let qemu = Qemu {
            tree: QemuTree::under(std::path::Path::new("/w/images/qemu/root")),
            version: QemuVersion { major: 10, text: "10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)".into() },
        };
        assert_eq!(
            first_line("default", &qemu, " -smp 4"),
            "run: image `default` on QEMU 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1), q35 -smp 2,maxcpus=16 \
             -m 512M -smp 4; Ctrl-A X quits, Ctrl-A C toggles the QEMU monitor"
        );
    }

    #[test]
    fn gdb_gets_the_debug_twin() {
        assert_eq!(
            gdb_hint(&Image::of("default")),
            "run: GDB: start with QEMU_ARGS=-s, then `gdb images/out/default/loader.debug.elf`, `target remote \
             :1234` (after `make swap`, also `source images/out/run/plugins.gdb`)"
        );
    }

    #[test]
    fn the_sockets_sit_in_the_run_directory() {
        assert!(com2_socket().ends_with("images/out/run/com2.sock"));
        assert!(qmp_socket().ends_with("images/out/run/qmp.sock"));
    }
}
