//! Emulator command lines (pure, tested) and the thin code that runs them:
//! with a deadline for tests, or on the terminal for interactive use.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use loader_core::power::exit::Status;

use crate::builder::{shown, Image};
use crate::layout::{BochsModel, QemuLayout, BOCHS_CPUS, BOCHS_MEM_MIB, RUN_LAYOUT};
use crate::outcome::{last_marker, Ended};
use crate::{out_dir, swap, Error, Result};

pub const QEMU: &str = "qemu-system-x86_64";
pub const BOCHS: &str = "bochs";

/// QEMU's accelerator, from the `ACCEL` environment variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// The default: works everywhere, and this project's figures assume it.
    Tcg,
    /// For hosts with nested VMX; uses the host's CPU model.
    Kvm,
}

impl Accel {
    pub fn parse(value: Option<&str>) -> Result<Accel> {
        match value {
            None | Some("") | Some("tcg") => Ok(Accel::Tcg),
            Some("kvm") => Ok(Accel::Kvm),
            Some(other) => {
                Err(Error::Environment(format!("ACCEL=`{other}` is not an accelerator: use `tcg` (default) or `kvm`")))
            }
        }
    }

    pub fn from_env() -> Result<Accel> {
        Accel::parse(std::env::var("ACCEL").ok().as_deref())
    }

    fn args(self) -> [&'static str; 4] {
        match self {
            Accel::Tcg => ["-accel", "tcg", "-cpu", "max"],
            // `max` under KVM would still be filtered by the host; `host`
            // says what is meant and is what hot-added CPUs must match.
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
        }
    }
}

/// Where the guest's COM1 goes, in QEMU and in Bochs.
#[derive(Clone, Copy, Debug)]
pub enum Serial<'a> {
    File(&'a Path),
    /// The terminal: QEMU multiplexes it with its monitor (Ctrl-A C /
    /// Ctrl-A X); Bochs puts it in raw mode.
    Terminal,
    /// A unix socket QEMU listens on and the runner connects to (scripted
    /// shell sessions). QEMU starts the guest only once connected, so no
    /// output is lost. Bochs has no such mode.
    Socket(&'a Path),
}

/// Everything that makes up one QEMU boot.
#[derive(Clone, Copy, Debug)]
pub struct QemuBoot<'a> {
    pub image: &'a Image,
    pub cmdline: &'a str,
    pub layout: QemuLayout,
    pub accel: Accel,
    pub serial: Serial<'a>,
    /// Let a reset reboot the machine instead of ending QEMU with status 0.
    pub reboots: bool,
    /// `-icount shift=0`: guest time advances 1 ns per instruction, so TSC
    /// figures become deterministic instruction counts.
    pub icount: bool,
    /// The `-serial` value for COM2 (plugin uploads), if the boot has one.
    pub com2: Option<&'a str>,
}

pub fn qemu_args(boot: &QemuBoot) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |a: &str| args.push(a.into());
    push("-machine");
    push(boot.layout.machine.name());
    boot.accel.args().into_iter().for_each(&mut push);
    push("-smp");
    push(&boot.layout.smp_arg());
    push("-m");
    push(&boot.layout.mem_arg());
    push("-display");
    push("none");
    push("-serial");
    match boot.serial {
        Serial::File(p) => push(&format!("file:{}", p.display())),
        Serial::Terminal => push("mon:stdio"),
        Serial::Socket(p) => push(&format!("unix:{},server=on,wait=on", p.display())),
    }
    // The second `-serial` is COM2 (0x2f8).
    if let Some(com2) = boot.com2 {
        push("-serial");
        push(com2);
    }
    push("-device");
    push("isa-debug-exit,iobase=0xf4,iosize=0x04");
    if !boot.reboots {
        push("-no-reboot");
    }
    if boot.icount {
        push("-icount");
        push("shift=0");
    }
    push("-append");
    push(boot.cmdline);
    args.push("-kernel".into());
    args.push(boot.image.loader().into());
    args.push("-initrd".into());
    args.push(boot.image.initrd().into());
    args
}

/// Everything that makes up one Bochs boot.
#[derive(Clone, Copy, Debug)]
pub struct BochsBoot<'a> {
    pub iso: &'a Path,
    pub model: BochsModel,
    pub com1: Serial<'a>,
    /// Bochs's own log (its messages, not the guest's).
    pub log: &'a Path,
    pub bios: &'a Path,
    pub vga_bios: &'a Path,
}

/// The system BIOS from Debian's bochsbios.
pub const BOCHS_BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";
/// The plain VGA BIOS for Bochs's default VGA card (Debian's vgabios; the
/// second name is bochsbios's link to the same file).
pub const VGA_BIOS_CANDIDATES: [&str; 2] = ["/usr/share/vgabios/vgabios.bin", "/usr/share/bochs/VGABIOS-lgpl-latest"];

/// The firmware files Bochs needs: (system BIOS, VGA BIOS).
pub fn bochs_firmware() -> Result<(PathBuf, PathBuf)> {
    let bios = Path::new(BOCHS_BIOS);
    if !bios.is_file() {
        return Err(Error::Environment(format!("{BOCHS_BIOS} is missing: `make setup` installs bochsbios")));
    }
    let vga = VGA_BIOS_CANDIDATES.iter().map(Path::new).find(|p| p.is_file()).ok_or_else(|| {
        Error::Environment(format!(
            "no VGA BIOS at {}: `make setup` installs vgabios",
            VGA_BIOS_CANDIDATES.join(" or ")
        ))
    })?;
    Ok((bios.to_path_buf(), vga.to_path_buf()))
}

pub fn bochsrc(boot: &BochsBoot) -> Result<String> {
    let com1 = match boot.com1 {
        Serial::File(p) => format!("mode=file, dev=\"{}\"", p.display()),
        Serial::Terminal => "mode=term, dev=/dev/tty".to_string(),
        Serial::Socket(_) => {
            return Err(Error::Environment(
                "Bochs cannot put COM1 on a unix socket; scripted shell sessions run in QEMU".into(),
            ))
        }
    };
    Ok(format!(
        "# Written by modvisor's runner for one boot.\n\
         # Debian's Bochs has no `nogui`; rfb without a viewer is headless,\n\
         # and timeout=0 keeps it from waiting for one.\n\
         display_library: rfb, options=\"timeout=0\"\n\
         # A triple fault stops the machine rather than looping through resets.\n\
         cpu: model={model}, count={BOCHS_CPUS}, ips=50000000, reset_on_triple_fault=0\n\
         clock: sync=none\n\
         megs: {BOCHS_MEM_MIB}\n\
         romimage: file=\"{bios}\"\n\
         vgaromimage: file=\"{vga}\"\n\
         ata0-master: type=cdrom, path=\"{iso}\", status=inserted\n\
         boot: cdrom\n\
         com1: enabled=1, {com1}\n\
         port_e9_hack: enabled=1\n\
         # The ALSA sound plugin aborts Bochs on machines without a sound card.\n\
         sound: driver=dummy\n\
         log: \"{log}\"\n",
        model = boot.model.name(),
        bios = boot.bios.display(),
        vga = boot.vga_bios.display(),
        iso = boot.iso.display(),
        log = boot.log.display(),
    ))
}

/// Bochs's arguments: Debian builds the debugger in, which stops at a
/// prompt first; `-rc` feeds it `c` (continue) from `rc_file`.
pub fn bochs_args(bochsrc: &Path, rc_file: &Path) -> Vec<OsString> {
    vec!["-q".into(), "-f".into(), bochsrc.into(), "-rc".into(), rc_file.into()]
}

/// Writes a bochsrc and the debugger's command file into `dir`; returns
/// the arguments that boot them.
pub fn prepare_bochs(dir: &Path, iso: &Path, model: BochsModel, com1: Serial) -> Result<Vec<OsString>> {
    let (bios, vga_bios) = bochs_firmware()?;
    let rc_path = dir.join("bochsrc");
    let cont_path = dir.join("debugger-commands");
    let log = dir.join("bochs.log");
    let text = bochsrc(&BochsBoot { iso, model, com1, log: &log, bios: &bios, vga_bios: &vga_bios })?;
    fs::write(&rc_path, text).map_err(|e| Error::io(format!("writing {}", rc_path.display()), e))?;
    fs::write(&cont_path, "c\n").map_err(|e| Error::io(format!("writing {}", cont_path.display()), e))?;
    Ok(bochs_args(&rc_path, &cont_path))
}

/// A fresh directory for one run's files, kept afterwards for post-mortems.
pub fn fresh_run_dir(name: &str) -> Result<PathBuf> {
    let dir = out_dir().join("runs").join(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("clearing {}", dir.display()), e))?;
    }
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    Ok(dir)
}

pub fn ended(status: ExitStatus) -> Ended {
    match status.code() {
        Some(c) => Ended::Code(c),
        None => Ended::Signal(status.signal().unwrap_or(0)),
    }
}

/// Runs `command` (stdin closed, output to `output`) and kills it once
/// `deadline` has passed.
pub fn run_with_deadline(command: &mut Command, output: &Path, deadline: Duration) -> io::Result<(Ended, Duration)> {
    let out = File::create(output)?;
    let start = Instant::now();
    let mut child = command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out).spawn()?;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((ended(status), start.elapsed()));
        }
        if start.elapsed() >= deadline {
            // kill() fails only if the child already exited, which the
            // wait below settles either way.
            let _ = child.kill();
            child.wait()?;
            return Ok((Ended::TimedOut, start.elapsed()));
        }
        thread::sleep(Duration::from_millis(20));
    }
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

/// `runner run`: the image in QEMU with COM1 and the monitor on this terminal.
pub fn run_console(image: &Image, reboots: bool, extra: &[OsString], accel: Accel) -> Result<ExitCode> {
    let cmdline = image.cmdline()?;
    let socket = swap::com2_socket();
    let com2 = swap::com2_serial_arg(&socket)?;
    fs::create_dir_all(swap::run_dir()).map_err(|e| Error::io(format!("creating {}", swap::run_dir().display()), e))?;
    // A socket left by an earlier session would make QEMU's bind fail.
    if socket.exists() {
        fs::remove_file(&socket).map_err(|e| Error::io(format!("removing {}", socket.display()), e))?;
    }
    let boot = QemuBoot {
        image,
        cmdline: &cmdline,
        layout: RUN_LAYOUT,
        accel,
        serial: Serial::Terminal,
        reboots,
        icount: false,
        com2: Some(&com2),
    };
    let qmp = crate::hotplug::qmp_socket();
    if qmp.exists() {
        fs::remove_file(&qmp).map_err(|e| Error::io(format!("removing {}", qmp.display()), e))?;
    }
    let mut args = qemu_args(&boot);
    args.extend(crate::hotplug::qmp_args(&qmp));
    args.extend(extra.iter().cloned());
    // Later QEMU options override earlier ones, so extra `-smp`/`-m` win.
    let extra_note: String = extra.iter().map(|a| format!(" {}", a.to_string_lossy())).collect();
    println!(
        "run: image `{}` on qemu {RUN_LAYOUT}{extra_note}; Ctrl-A X quits, Ctrl-A C toggles the QEMU monitor",
        image.name
    );
    println!("run: COM2 is {}: `make swap PLUGIN=<name>` uploads a plugin from another terminal", shown(&socket));
    println!(
        "run: QMP is {}: `make cpu-add [FEATURES='\"sse4.2\": false']` and `make cpu-del CPU=<n>` hot-plug CPUs",
        shown(&qmp)
    );
    let status = Command::new(QEMU).args(&args).status().map_err(|e| Error::io(format!("starting {QEMU}"), e))?;
    Ok(report_interactive(status.code()))
}

/// `runner bochs`: the image's ISO in Bochs. COM1 is the terminal when
/// there is one; otherwise it goes to a file that is copied to stdout.
pub fn bochs_console(image: &Image, model: BochsModel) -> Result<ExitCode> {
    let dir = fresh_run_dir(&format!("{}.bochs-console", image.name))?;
    let serial = dir.join("serial.log");
    let tty = File::open("/dev/tty").ok();
    let com1 = if tty.is_some() { Serial::Terminal } else { Serial::File(&serial) };
    let args = prepare_bochs(&dir, &image.iso, model, com1)?;
    let output = dir.join("bochs.out");
    let out = File::create(&output).map_err(|e| Error::io(format!("creating {}", output.display()), e))?;
    let saved_tty = tty.as_ref().and_then(|_| stty(&["-g"]));
    let mut child = Command::new(BOCHS)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| Error::io("duplicating a file handle", e))?)
        .stderr(out)
        .spawn()
        .map_err(|e| Error::io(format!("starting {BOCHS}"), e))?;
    println!("bochs: image `{}` on {}; Bochs's own messages go to {}", image.name, model.name(), shown(&output));
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
    Ok(match last_marker(&crate::read_lossy(&serial)) {
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
fn copy_while_running(child: &mut Child, path: &Path) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Machine;

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn accel_from_environment() {
        assert_eq!(Accel::parse(None).unwrap(), Accel::Tcg);
        assert_eq!(Accel::parse(Some("")).unwrap(), Accel::Tcg);
        assert_eq!(Accel::parse(Some("kvm")).unwrap(), Accel::Kvm);
        let e = Accel::parse(Some("hvf")).unwrap_err().to_string();
        assert!(e.contains("ACCEL") && e.contains("hvf"), "{e}");
    }

    #[test]
    fn qemu_test_boot_arguments() {
        let image = Image::of("smp");
        let log = Path::new("/tmp/x/serial.log");
        let boot = QemuBoot {
            image: &image,
            cmdline: "image=smp test=smp",
            layout: QemuLayout::new(Machine::Q35, 2, 4, 2048),
            accel: Accel::Tcg,
            serial: Serial::File(log),
            reboots: false,
            icount: false,
            com2: None,
        };
        let args = strings(&qemu_args(&boot)).join(" ");
        assert!(
            args.starts_with(
                "-machine q35 -accel tcg -cpu max -smp 2,maxcpus=4 -m 2G -display none \
             -serial file:/tmp/x/serial.log -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
             -no-reboot -append image=smp test=smp -kernel "
            ),
            "{args}"
        );
        assert!(args.contains("images/out/smp/loader.elf -initrd "), "{args}");
        assert!(args.ends_with("images/out/smp/initrd"), "{args}");
        // The command line stays one argument, spaces and all.
        assert!(strings(&qemu_args(&boot)).contains(&"image=smp test=smp".to_string()));
    }

    #[test]
    fn qemu_reboot_console_and_icount_variants() {
        let image = Image::of("reboot");
        let boot = QemuBoot {
            image: &image,
            cmdline: "image=reboot test=reboot",
            layout: QemuLayout::new(Machine::Pc, 1, 1, 128),
            accel: Accel::Kvm,
            serial: Serial::Terminal,
            reboots: true,
            icount: true,
            com2: Some("unix:/w/com2.sock,server=on,wait=off"),
        };
        let args = strings(&qemu_args(&boot));
        assert!(!args.contains(&"-no-reboot".to_string()));
        let joined = args.join(" ");
        assert!(joined.contains("-accel kvm -cpu host"), "{joined}");
        assert!(joined.contains("-serial mon:stdio -serial unix:/w/com2.sock,server=on,wait=off "), "{joined}");
        assert!(joined.contains("-icount shift=0"), "{joined}");
    }

    #[test]
    fn bochsrc_for_a_test_run() {
        let text = bochsrc(&BochsBoot {
            iso: Path::new("/w/images/out/boot.iso"),
            model: BochsModel::SkylakeX,
            com1: Serial::File(Path::new("/w/run/serial.log")),
            log: Path::new("/w/run/bochs.log"),
            bios: Path::new(BOCHS_BIOS),
            vga_bios: Path::new("/usr/share/vgabios/vgabios.bin"),
        })
        .unwrap();
        for line in [
            "display_library: rfb, options=\"timeout=0\"",
            "cpu: model=corei7_skylake_x, count=2, ips=50000000, reset_on_triple_fault=0",
            "clock: sync=none",
            "megs: 256",
            "romimage: file=\"/usr/share/bochs/BIOS-bochs-latest\"",
            "vgaromimage: file=\"/usr/share/vgabios/vgabios.bin\"",
            "ata0-master: type=cdrom, path=\"/w/images/out/boot.iso\", status=inserted",
            "boot: cdrom",
            "com1: enabled=1, mode=file, dev=\"/w/run/serial.log\"",
            "port_e9_hack: enabled=1",
            "sound: driver=dummy",
            "log: \"/w/run/bochs.log\"",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(l.contains(": "), "not a bochsrc option: {l}");
        }
    }

    #[test]
    fn bochsrc_on_the_terminal() {
        let text = bochsrc(&BochsBoot {
            iso: Path::new("/i.iso"),
            model: BochsModel::TigerLake,
            com1: Serial::Terminal,
            log: Path::new("/l"),
            bios: Path::new("/b"),
            vga_bios: Path::new("/v"),
        })
        .unwrap();
        assert!(text.contains("com1: enabled=1, mode=term, dev=/dev/tty\n"), "{text}");
        assert!(text.contains("cpu: model=tigerlake, count=2, "), "{text}");
    }

    #[test]
    fn serial_on_a_socket_is_qemu_only() {
        let image = Image::of("default");
        let boot = QemuBoot {
            image: &image,
            cmdline: "image=default",
            layout: RUN_LAYOUT,
            accel: Accel::Tcg,
            serial: Serial::Socket(Path::new("/tmp/s.sock")),
            com2: None,
            reboots: false,
            icount: false,
        };
        let joined = strings(&qemu_args(&boot)).join(" ");
        assert!(joined.contains("-serial unix:/tmp/s.sock,server=on,wait=on "), "{joined}");
        let e = bochsrc(&BochsBoot {
            iso: Path::new("/i.iso"),
            model: BochsModel::SkylakeX,
            com1: Serial::Socket(Path::new("/tmp/s.sock")),
            log: Path::new("/l"),
            bios: Path::new("/b"),
            vga_bios: Path::new("/v"),
        })
        .unwrap_err();
        assert!(e.to_string().contains("QEMU"), "{e}");
    }

    #[test]
    fn bochs_arguments_feed_the_debugger_a_continue() {
        let args = strings(&bochs_args(Path::new("/d/bochsrc"), Path::new("/d/c")));
        assert_eq!(args, ["-q", "-f", "/d/bochsrc", "-rc", "/d/c"]);
    }

    #[test]
    fn deadline_kills_a_hanging_process() {
        let dir = std::env::temp_dir().join(format!("modvisor-runner-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let (e, took) = run_with_deadline(Command::new("sleep").arg("10"), &out, Duration::from_millis(200)).unwrap();
        assert_eq!(e, Ended::TimedOut);
        assert!(took < Duration::from_secs(5));
        let (e, _) =
            run_with_deadline(Command::new("sh").args(["-c", "echo hi; exit 33"]), &out, Duration::from_secs(10))
                .unwrap();
        assert_eq!(e, Ended::Code(33));
        assert_eq!(fs::read_to_string(&out).unwrap(), "hi\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn interactive_exit_reporting() {
        assert_eq!(report_interactive(Some(0)), ExitCode::SUCCESS);
        assert_eq!(report_interactive(Some(33)), ExitCode::SUCCESS);
        assert_eq!(report_interactive(Some(37)), ExitCode::FAILURE);
        assert_eq!(report_interactive(Some(1)), ExitCode::FAILURE);
        assert_eq!(report_interactive(None), ExitCode::FAILURE);
    }
}
