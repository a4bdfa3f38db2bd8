//! Bochs's configuration (pure, tested) and the files one boot needs.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use super::layout::{BochsLayout, BOCHS_MEM_MIB};
use super::{Error, Result, Serial};

pub const BOCHS: &str = "bochs";

/// Everything that makes up one Bochs boot.
#[derive(Clone, Copy, Debug)]
pub struct BochsBoot<'a> {
    pub iso: &'a Path,
    pub machine: BochsLayout,
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
         cpu: model={model}, count={cpus}, ips=50000000, reset_on_triple_fault=0\n\
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
        model = boot.machine.model.name(),
        cpus = boot.machine.cpus,
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
pub fn prepare_bochs(dir: &Path, iso: &Path, machine: BochsLayout, com1: Serial) -> Result<Vec<OsString>> {
    let (bios, vga_bios) = bochs_firmware()?;
    let rc_path = dir.join("bochsrc");
    let cont_path = dir.join("debugger-commands");
    let log = dir.join("bochs.log");
    let text = bochsrc(&BochsBoot { iso, machine, com1, log: &log, bios: &bios, vga_bios: &vga_bios })?;
    fs::write(&rc_path, text).map_err(|e| Error::io(format!("writing {}", rc_path.display()), e))?;
    fs::write(&cont_path, "c\n").map_err(|e| Error::io(format!("writing {}", cont_path.display()), e))?;
    Ok(bochs_args(&rc_path, &cont_path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::layout::{SKYLAKE_X2, TIGERLAKE_X4};

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn bochsrc_for_a_test_run() {
        let text = bochsrc(&BochsBoot {
            iso: Path::new("/w/images/out/boot.iso"),
            machine: SKYLAKE_X2,
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
            machine: TIGERLAKE_X4,
            com1: Serial::Terminal,
            log: Path::new("/l"),
            bios: Path::new("/b"),
            vga_bios: Path::new("/v"),
        })
        .unwrap();
        assert!(text.contains("com1: enabled=1, mode=term, dev=/dev/tty\n"), "{text}");
        assert!(text.contains("cpu: model=tigerlake, count=4, "), "{text}");
    }

    #[test]
    fn serial_on_a_socket_is_qemu_only() {
        let e = bochsrc(&BochsBoot {
            iso: Path::new("/i.iso"),
            machine: SKYLAKE_X2,
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
}
