//! Which firmware a QEMU boot runs before the loader: qboot where it
//! works, SeaBIOS where an image needs something qboot lacks.
//!
//! Every QEMU boot of the project is a PVH `-kernel` boot, which qboot
//! handles: it sets up the machine and jumps to the kernel's PVH entry in
//! about 96 k instructions, against SeaBIOS' 17 M (a byte-wise clear of
//! its high memory, POST waits). The GRUB ISO (Bochs) boots from a CD,
//! which qboot cannot; Bochs brings its own BIOS anyway.

use std::ffi::OsString;

/// The firmware of one QEMU boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// `-bios qboot.rom` from QEMU's data folder (found through `-L`).
    Qboot,
    /// QEMU's default `bios-256k.bin`.
    SeaBios,
}

/// Images that need SeaBIOS, each with the reason. The list is short and
/// kept in one place so a change of firmware is one line and a reason.
pub const SEABIOS_IMAGES: &[(&str, &str)] = &[];

/// The firmware `image` boots with in QEMU.
pub fn firmware_for(image: &str) -> Firmware {
    if SEABIOS_IMAGES.iter().any(|(name, _)| *name == image) {
        Firmware::SeaBios
    } else {
        Firmware::Qboot
    }
}

impl Firmware {
    /// QEMU arguments that select it; SeaBIOS is QEMU's default.
    pub fn args(self) -> Vec<OsString> {
        match self {
            Firmware::Qboot => vec!["-bios".into(), "qboot.rom".into()],
            Firmware::SeaBios => Vec::new(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Firmware::Qboot => "qboot",
            Firmware::SeaBios => "SeaBIOS",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qboot_unless_listed() {
        assert_eq!(firmware_for("default"), Firmware::Qboot);
        assert_eq!(Firmware::Qboot.args(), [OsString::from("-bios"), OsString::from("qboot.rom")]);
        assert!(Firmware::SeaBios.args().is_empty());
        for (name, why) in SEABIOS_IMAGES {
            assert_eq!(firmware_for(name), Firmware::SeaBios);
            assert!(!why.is_empty(), "{name}: say why it needs SeaBIOS");
            assert!(crate::build::recipes::find(name).is_ok(), "{name} is no image");
        }
    }
}
