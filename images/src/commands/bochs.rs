//! `runner bochs`: an image's ISO in Bochs, COM1 on this terminal (or
//! copied to stdout when there is none).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::Duration;

use loader_core::power::exit::Status;

use super::{Error, Result};
use crate::build::builder::Image;
use crate::machine::bochs::{prepare_bochs, BOCHS};
use crate::machine::layout::BochsLayout;
use crate::machine::outcome::last_marker;
use crate::machine::process::{Group, Guard};
use crate::machine::{fresh_run_dir, Serial};
use crate::{read_lossy, shown};

/// `runner bochs`: the image's ISO in Bochs. COM1 is the terminal when
/// there is one; otherwise it goes to a file that is copied to stdout.
pub fn bochs_console(image: &Image, machine: BochsLayout) -> Result<ExitCode> {
    let dir = fresh_run_dir(&format!("{}.bochs-console", image.name))?;
    let serial = dir.join("serial.log");
    let tty = File::open("/dev/tty").ok();
    let com1 = if tty.is_some() { Serial::Terminal } else { Serial::File(&serial) };
    let args = prepare_bochs(&dir, &image.iso, machine, com1)?;
    let output = dir.join("bochs.out");
    let out = File::create(&output).map_err(|e| Error::io(format!("creating {}", output.display()), e))?;
    let saved_tty = tty.as_ref().and_then(|_| stty(&["-g"]));
    let mut command = Command::new(BOCHS);
    command
        .args(&args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| Error::io("duplicating a file handle", e))?)
        .stderr(out);
    // In the terminal's foreground group: Bochs reads /dev/tty.
    let mut child =
        Guard::spawn(&mut command, Group::Terminal).map_err(|e| Error::io(format!("starting {BOCHS}"), e))?;
    println!(
        "bochs: image `{}` on {} with {} CPUs; Bochs's own messages go to {}",
        image.name,
        machine.model.name(),
        machine.cpus,
        shown(&output)
    );
    let result = match com1 {
        // `prepare_bochs` refuses a socket.
        Serial::Terminal | Serial::Socket(_) => {
            println!(
                "bochs: COM1 is this terminal and Bochs takes every key, Ctrl-C included; \
                 leave with the loader's power-off or `kill {}` from elsewhere",
                child.id()
            );
            child.wait().map(|_| ())
        }
        Serial::File(path) => copy_while_running(&mut child, path),
    };
    // Bochs leaves the terminal raw when it ends.
    if let Some(saved) = saved_tty {
        stty(&[saved.trim()]);
    }
    result.map_err(|e| Error::io("running bochs", e))?;
    // On the terminal the guest's output was never captured: nothing to judge.
    if matches!(com1, Serial::Terminal) {
        return Ok(ExitCode::SUCCESS);
    }
    Ok(match last_marker(&read_lossy(&serial)) {
        Some(s) => {
            println!("bochs: the loader exited with `{}`", s.name());
            if matches!(s, Status::Pass | Status::PowerOff) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        None => {
            println!("bochs: ended without an exit marker; see {}", shown(&output));
            ExitCode::FAILURE
        }
    })
}

/// Runs `stty` on the controlling terminal; its output when it succeeds.
fn stty(args: &[&str]) -> Option<String> {
    let tty = File::open("/dev/tty").ok()?;
    let out = Command::new("stty").args(args).stdin(tty).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Copies what the guest writes to `path` onto stdout until `child` ends.
fn copy_while_running(child: &mut Guard, path: &Path) -> io::Result<()> {
    let mut offset = 0;
    let mut stdout = io::stdout();
    loop {
        let done = child.try_wait()?.is_some();
        if let Ok(mut file) = File::open(path) {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            if bytes.len() > offset {
                stdout.write_all(&bytes[offset..])?;
                stdout.flush()?;
                offset = bytes.len();
            }
        }
        if done {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
    }
}
