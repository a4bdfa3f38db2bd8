//! QEMU's command line (pure, tested): the accelerator, the machine
//! layout, where COM1 and COM2 go, and the QMP socket.

use std::ffi::OsString;
use std::path::Path;

use super::layout::QemuLayout;
use super::{Error, Result, Serial};

pub const QEMU: &str = "qemu-system-x86_64";

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

/// Everything that makes up one QEMU boot.
#[derive(Clone, Copy, Debug)]
pub struct QemuBoot<'a> {
    /// The image's `loader.elf` and `initrd`.
    pub kernel: &'a Path,
    pub initrd: &'a Path,
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
    args.push(boot.kernel.into());
    args.push("-initrd".into());
    args.push(boot.initrd.into());
    args
}

/// The `-qmp` arguments for a server on `socket` that does not wait.
pub fn qmp_args(socket: &Path) -> Vec<OsString> {
    vec!["-qmp".into(), format!("unix:{},server=on,wait=off", socket.display()).into()]
}

/// The QEMU `-serial` value for COM2 on `socket`: a listening socket that
/// does not wait for a client, so the guest boots at once.
pub fn com2_serial_arg(socket: &Path) -> Result<String> {
    let text = socket.to_str().unwrap_or_default();
    // sun_path holds 108 bytes with the NUL; QEMU's option syntax gives
    // commas a meaning.
    if text.is_empty() || text.len() > 107 || text.contains(',') {
        return Err(Error::Environment(format!(
            "{} cannot be a QEMU unix socket (at most 107 bytes, no commas): move the workspace",
            socket.display()
        )));
    }
    Ok(format!("unix:{text},server=on,wait=off"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::layout::{Machine, RUN_LAYOUT};

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
        let log = Path::new("/tmp/x/serial.log");
        let boot = QemuBoot {
            kernel: Path::new("/w/images/out/smp/loader.elf"),
            initrd: Path::new("/w/images/out/smp/initrd"),
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
        let boot = QemuBoot {
            kernel: Path::new("/k"),
            initrd: Path::new("/i"),
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
    fn serial_on_a_socket() {
        let boot = QemuBoot {
            kernel: Path::new("/k"),
            initrd: Path::new("/i"),
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
        assert_eq!(strings(&qmp_args(Path::new("/r/qmp.sock"))), ["-qmp", "unix:/r/qmp.sock,server=on,wait=off"]);
    }

    #[test]
    fn com2_argument() {
        assert_eq!(
            com2_serial_arg(Path::new("/w/images/out/run/com2.sock")).unwrap(),
            "unix:/w/images/out/run/com2.sock,server=on,wait=off"
        );
        assert!(com2_serial_arg(Path::new("/a,b/com2.sock")).is_err());
        assert!(com2_serial_arg(&Path::new("/").join("x".repeat(120))).is_err());
    }
}
