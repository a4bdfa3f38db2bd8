//! Which QEMU runs and its command line: the tree `make setup` unpacks
//! (binary, module folder, firmware folders; the one place that decides
//! them) and, pure and tested, the accelerator, the machine layout with
//! its devices, where COM1 and COM2 go, and the QMP socket.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::firmware::Firmware;
use super::layout::QemuLayout;
use super::{Error, Result, Serial};
use crate::{shown, workspace_root};

/// The oldest QEMU the runner accepts: 7.2 corrupts its heap on a CPU
/// hot-add after an eject under TCG, 10.0 does not (see the README).
pub const MIN_MAJOR: u32 = 10;

/// Where `make setup` (images/setup.sh) unpacks QEMU 10 from Debian's
/// bookworm-backports: a root holding `usr/...` as the packages lay it out.
pub fn qemu_root() -> PathBuf {
    workspace_root().join("images").join("qemu").join("root")
}

/// The paths of an unpacked QEMU under `root`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuTree {
    pub binary: PathBuf,
    /// `QEMU_MODULE_DIR`: without it QEMU looks for its modules in the
    /// system's folder, finds another build's and aborts.
    pub modules: PathBuf,
    /// `-L` folders, searched in order before QEMU's built-in ones: its
    /// own data (option ROMs such as `pvh.bin`) and the seabios that came
    /// with it (`bios-256k.bin`), so nothing of a system QEMU is used.
    pub data: [PathBuf; 2],
}

impl QemuTree {
    pub fn under(root: &Path) -> QemuTree {
        let usr = root.join("usr");
        QemuTree {
            binary: usr.join("bin").join("qemu-system-x86_64"),
            modules: usr.join("lib").join("x86_64-linux-gnu").join("qemu"),
            data: [usr.join("share").join("qemu"), usr.join("share").join("seabios")],
        }
    }

    /// The `-L` arguments.
    pub fn data_args(&self) -> Vec<OsString> {
        self.data.iter().flat_map(|d| [OsString::from("-L"), d.into()]).collect()
    }
}

/// The version `qemu-system-x86_64 --version` reports: its first line is
/// `QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuVersion {
    pub major: u32,
    /// The release and the packager's note, e.g. `10.0.2 (Debian ...)`.
    pub text: String,
}

pub fn parse_version(output: &str) -> Option<QemuVersion> {
    let text = output.lines().next()?.trim().strip_prefix("QEMU emulator version ")?.trim().to_string();
    let major = text.split('.').next()?.parse().ok()?;
    Some(QemuVersion { major, text })
}

/// The QEMU every boot of the project runs: the unpacked tree, checked
/// to be there and new enough.
#[derive(Clone, Debug)]
pub struct Qemu {
    pub tree: QemuTree,
    pub version: QemuVersion,
}

impl Qemu {
    /// Finds the tree under [`qemu_root`] and asks the binary its version.
    pub fn locate() -> Result<Qemu> {
        Qemu::at(&qemu_root())
    }

    pub fn at(root: &Path) -> Result<Qemu> {
        let tree = QemuTree::under(root);
        if !tree.binary.is_file() {
            return Err(Error::Environment(format!(
                "{} is missing: `make setup` fetches QEMU 10 from Debian bookworm-backports into {}",
                shown(&tree.binary),
                shown(root)
            )));
        }
        let out = Command::new(&tree.binary)
            .arg("--version")
            .env("QEMU_MODULE_DIR", &tree.modules)
            .output()
            .map_err(|e| Error::io(format!("running {} --version", shown(&tree.binary)), e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = parse_version(&text).filter(|_| out.status.success()).ok_or_else(|| {
            Error::Environment(format!(
                "{} --version failed ({}): {}{}; run `make setup` again",
                shown(&tree.binary),
                out.status,
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        })?;
        check_version(&version)?;
        Ok(Qemu { tree, version })
    }

    /// A command that runs this QEMU with its modules and firmware; the
    /// boot's own arguments follow.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.tree.binary);
        c.env("QEMU_MODULE_DIR", &self.tree.modules).args(self.tree.data_args());
        c
    }

    /// How reports name it: `QEMU 10.0.2 (Debian ...)`.
    pub fn describe(&self) -> String {
        format!("QEMU {}", self.version.text)
    }
}

pub fn check_version(version: &QemuVersion) -> Result<()> {
    if version.major < MIN_MAJOR {
        return Err(Error::Environment(format!(
            "QEMU {} is too old: CPU hotplug after an eject needs QEMU {MIN_MAJOR} or later (`make setup`)",
            version.text
        )));
    }
    Ok(())
}

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

    fn args(self, icount: bool) -> [&'static str; 4] {
        match self {
            // QEMU 10.0.2's TCG aborts with "Bad icount read" under
            // `-icount` once the guest uses x2APIC, which `max` offers
            // (measured: the bench boots die early, with `x2apic=off` they
            // run). Without it the loader takes xAPIC mode, as it did on
            // QEMU 7.2, whose TCG had no x2APIC, so the figures compare.
            Accel::Tcg if icount => ["-accel", "tcg", "-cpu", "max,x2apic=off"],
            Accel::Tcg => ["-accel", "tcg", "-cpu", "max"],
            // `max` under KVM would still be filtered by the host; `host`
            // says what is meant and is what hot-added CPUs must match.
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
        }
    }
}

/// Refuses a run that would plug more CPUs than QEMU can create in one
/// life. Multi-threaded TCG sizes its table of translation contexts by
/// `maxcpus` once, takes one for every vCPU thread it starts and never
/// gives one back when a vCPU is unplugged, so the `maxcpus + 1`-th CPU
/// ever created aborts QEMU (`g_assert(n < tcg_max_ctxs)` in
/// `tcg_register_thread`, tcg/tcg.c; measured with 10.0.2). KVM hands
/// the vCPU of an unplugged CPU to the next one and has no such limit.
/// `what` names the run; `hot_adds` counts every device_add of a CPU,
/// refused ones too.
pub fn check_plug_events(what: &str, accel: Accel, layout: &QemuLayout, hot_adds: usize) -> Result<()> {
    let events = layout.cpus as usize + hot_adds;
    if accel == Accel::Kvm || events <= layout.max_cpus as usize {
        return Ok(());
    }
    Err(Error::PlugBudget(format!(
        "{what}: plans {} boot CPUs + {hot_adds} hot-adds = {events} CPU plug events on `-smp {}`, but under TCG \
         QEMU can create only maxcpus = {} vCPUs in one run (an unplugged vCPU's TCG context is never freed; \
         vCPU number {} aborts QEMU in tcg_register_thread): raise maxcpus to at least {events} or plan fewer hot-adds",
        layout.cpus,
        layout.smp_arg(),
        layout.max_cpus,
        layout.max_cpus + 1
    )))
}

/// Everything that makes up one QEMU boot.
#[derive(Clone, Debug)]
pub struct QemuBoot<'a> {
    /// The image's `loader.elf` and `initrd`.
    pub kernel: PathBuf,
    pub initrd: PathBuf,
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
    pub firmware: Firmware,
}

/// The boot's arguments. `-nodefaults`: QEMU adds no devices of its own
/// (VGA, NIC, floppy, CD-ROM, parallel port, default serial and monitor),
/// so the machine holds what the images use and nothing else: COM1 and
/// COM2 from the `-serial` options, isa-debug-exit for the exit status,
/// and what the board itself has (PIC, IOAPIC, PIT, RTC, HPET, the
/// i8042 for the reset fallback, ACPI with the CPU hotplug block,
/// fw_cfg). No display either: every image talks on its serial ports.
pub fn qemu_args(boot: &QemuBoot) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |a: &str| args.push(a.into());
    push("-machine");
    push(boot.layout.machine.name());
    push("-nodefaults");
    boot.accel.args(boot.icount).into_iter().for_each(&mut push);
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
    // `sleep=off`: with `sleep=on` (the default) an idle guest's clock
    // jumps to the next timer deadline by host time, so firmware waits
    // vary from run to run (17.3-20.7 M measured under SeaBIOS); without
    // it virtual time only advances with instructions and figures repeat.
    if boot.icount {
        push("-icount");
        push("shift=0,sleep=off");
    }
    push("-append");
    push(boot.cmdline);
    args.extend(boot.firmware.args());
    args.push("-kernel".into());
    args.push(boot.kernel.as_os_str().into());
    args.push("-initrd".into());
    args.push(boot.initrd.as_os_str().into());
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
            kernel: "/w/images/out/smp/loader.elf".into(),
            initrd: "/w/images/out/smp/initrd".into(),
            cmdline: "image=smp test=smp",
            layout: QemuLayout::new(Machine::Q35, 2, 4, 2048),
            accel: Accel::Tcg,
            serial: Serial::File(log),
            reboots: false,
            icount: false,
            com2: None,
            firmware: Firmware::SeaBios,
        };
        let args = strings(&qemu_args(&boot)).join(" ");
        assert!(
            args.starts_with(
                "-machine q35 -nodefaults -accel tcg -cpu max -smp 2,maxcpus=4 -m 2G -display none \
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
            kernel: "/k".into(),
            initrd: "/i".into(),
            cmdline: "image=reboot test=reboot",
            layout: QemuLayout::new(Machine::Pc, 1, 1, 128),
            accel: Accel::Kvm,
            serial: Serial::Terminal,
            reboots: true,
            icount: true,
            com2: Some("unix:/w/com2.sock,server=on,wait=off"),
            firmware: Firmware::Qboot,
        };
        let args = strings(&qemu_args(&boot));
        assert!(!args.contains(&"-no-reboot".to_string()));
        let joined = args.join(" ");
        assert!(joined.contains("-accel kvm -cpu host"), "{joined}");
        assert!(joined.contains("-serial mon:stdio -serial unix:/w/com2.sock,server=on,wait=off "), "{joined}");
        assert!(joined.contains("-icount shift=0,sleep=off -append"), "{joined}");
        assert!(joined.contains("-bios qboot.rom -kernel /k"), "{joined}");
        let tcg = QemuBoot { accel: Accel::Tcg, ..boot };
        let joined = strings(&qemu_args(&tcg)).join(" ");
        assert!(joined.contains("-accel tcg -cpu max,x2apic=off -smp"), "{joined}");
        let joined = strings(&qemu_args(&QemuBoot { icount: false, ..tcg })).join(" ");
        assert!(joined.contains("-accel tcg -cpu max -smp"), "{joined}");
    }

    #[test]
    fn serial_on_a_socket() {
        let boot = QemuBoot {
            kernel: "/k".into(),
            initrd: "/i".into(),
            cmdline: "image=default",
            layout: RUN_LAYOUT,
            accel: Accel::Tcg,
            serial: Serial::Socket(Path::new("/tmp/s.sock")),
            com2: None,
            reboots: false,
            icount: false,
            firmware: Firmware::SeaBios,
        };
        let joined = strings(&qemu_args(&boot)).join(" ");
        assert!(joined.contains("-serial unix:/tmp/s.sock,server=on,wait=on "), "{joined}");
        assert_eq!(strings(&qmp_args(Path::new("/r/qmp.sock"))), ["-qmp", "unix:/r/qmp.sock,server=on,wait=off"]);
    }

    #[test]
    fn the_tree_gives_binary_modules_and_firmware() {
        let t = QemuTree::under(Path::new("/w/images/qemu/root"));
        assert_eq!(t.binary, Path::new("/w/images/qemu/root/usr/bin/qemu-system-x86_64"));
        assert_eq!(t.modules, Path::new("/w/images/qemu/root/usr/lib/x86_64-linux-gnu/qemu"));
        assert_eq!(
            strings(&t.data_args()),
            ["-L", "/w/images/qemu/root/usr/share/qemu", "-L", "/w/images/qemu/root/usr/share/seabios"]
        );
        assert!(qemu_root().ends_with("images/qemu/root"));
    }

    #[test]
    fn versions_are_read_and_checked() {
        let out = "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\n\
                   Copyright (c) 2003-2025 Fabrice Bellard and the QEMU Project developers\n";
        let v = parse_version(out).unwrap();
        assert_eq!(v, QemuVersion { major: 10, text: "10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)".into() });
        assert!(check_version(&v).is_ok());
        let old = parse_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)").unwrap();
        assert_eq!(old.major, 7);
        let e = check_version(&old).unwrap_err().to_string();
        assert!(e.contains("7.2.22") && e.contains("make setup"), "{e}");
        assert_eq!(parse_version("qemu-system-x86_64: error while loading shared libraries"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn a_missing_tree_says_to_run_setup() {
        let e = Qemu::at(Path::new("/nonexistent/modvisor-qemu")).unwrap_err().to_string();
        assert!(e.contains("usr/bin/qemu-system-x86_64 is missing") && e.contains("make setup"), "{e}");
    }

    #[test]
    fn plug_events_beyond_maxcpus_are_refused_under_tcg() {
        let l = QemuLayout::new(Machine::Q35, 2, 16, 128);
        assert!(check_plug_events("x", Accel::Tcg, &l, 14).is_ok());
        let e = check_plug_events("cpuhp-qmp-q35", Accel::Tcg, &l, 15).unwrap_err();
        assert!(matches!(e, Error::PlugBudget(_)));
        let e = e.to_string();
        assert!(e.starts_with("cpuhp-qmp-q35: plans 2 boot CPUs + 15 hot-adds = 17 CPU plug events"), "{e}");
        assert!(
            e.contains("`-smp 2,maxcpus=16`") && e.contains("maxcpus = 16") && e.contains("vCPU number 17 aborts"),
            "{e}"
        );
        assert!(e.contains("at least 17"), "{e}");
        assert!(check_plug_events("x", Accel::Kvm, &l, 100).is_ok(), "KVM reuses an unplugged vCPU");
        // No slot to plug into: the boot CPUs alone fill the budget.
        let full = QemuLayout::new(Machine::Pc, 4, 4, 128);
        assert!(check_plug_events("x", Accel::Tcg, &full, 0).is_ok());
        assert!(check_plug_events("x", Accel::Tcg, &full, 1).is_err());
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
