//! How long to wait between the IPIs that start an AP.
//!
//! The MP specification's INIT, 10 ms, SIPI, 200 us, SIPI suits CPUs with
//! an external APIC; CPUs with an integrated APIC leave INIT at once. Linux
//! (`smp_quirk_init_udelay`) drops the 10 ms for Intel family 6 and later,
//! AMD family 0xF and later and Hygon family 0x18 and later, and then waits
//! 10 us after each SIPI. A hypervisor that traps INIT may still need the
//! old delay: `cpu_init_udelay=` on the command line sets it.

/// The legacy INIT-to-SIPI delay.
pub const LEGACY_INIT_US: u32 = 10_000;
/// After each SIPI with the legacy delay, and with none.
pub const LEGACY_SIPI_US: u32 = 200;
pub const MODERN_SIPI_US: u32 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    Intel,
    Amd,
    Hygon,
    Other,
}

impl Vendor {
    /// From CPUID leaf 0's vendor string.
    pub fn from_id(id: &str) -> Vendor {
        match id {
            "GenuineIntel" => Vendor::Intel,
            "AuthenticAMD" => Vendor::Amd,
            "HygonGenuine" => Vendor::Hygon,
            _ => Vendor::Other,
        }
    }
}

/// The delays of one start, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delays {
    pub init_us: u32,
    pub sipi_us: u32,
}

/// Whether the boot CPU's vendor and (display) family leave INIT at once.
pub fn skips_init_delay(vendor: Vendor, family: u32) -> bool {
    match vendor {
        Vendor::Intel => family >= 6,
        Vendor::Amd => family >= 0xf,
        Vendor::Hygon => family >= 0x18,
        Vendor::Other => false,
    }
}

/// The delays for this CPU; `forced` is `cpu_init_udelay=`, which wins.
pub fn delays(vendor: Vendor, family: u32, forced: Option<u32>) -> Delays {
    let init_us = forced.unwrap_or(if skips_init_delay(vendor, family) { 0 } else { LEGACY_INIT_US });
    let sipi_us = if init_us == 0 { MODERN_SIPI_US } else { LEGACY_SIPI_US };
    Delays { init_us, sipi_us }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendors_from_their_strings() {
        assert_eq!(Vendor::from_id("GenuineIntel"), Vendor::Intel);
        assert_eq!(Vendor::from_id("AuthenticAMD"), Vendor::Amd);
        assert_eq!(Vendor::from_id("HygonGenuine"), Vendor::Hygon);
        assert_eq!(Vendor::from_id("CentaurHauls"), Vendor::Other);
    }

    #[test]
    fn modern_cpus_skip_the_init_delay() {
        assert!(skips_init_delay(Vendor::Intel, 6));
        assert!(!skips_init_delay(Vendor::Intel, 5));
        assert!(skips_init_delay(Vendor::Amd, 0xf));
        assert!(skips_init_delay(Vendor::Amd, 0x19));
        assert!(!skips_init_delay(Vendor::Amd, 0xe));
        assert!(skips_init_delay(Vendor::Hygon, 0x18));
        assert!(!skips_init_delay(Vendor::Hygon, 0x17));
        assert!(!skips_init_delay(Vendor::Other, 0x20));
    }

    #[test]
    fn delays_follow_the_init_delay() {
        assert_eq!(delays(Vendor::Intel, 6, None), Delays { init_us: 0, sipi_us: MODERN_SIPI_US });
        assert_eq!(delays(Vendor::Other, 6, None), Delays { init_us: LEGACY_INIT_US, sipi_us: LEGACY_SIPI_US });
    }

    #[test]
    fn the_command_line_wins() {
        assert_eq!(delays(Vendor::Intel, 6, Some(10_000)), Delays { init_us: 10_000, sipi_us: LEGACY_SIPI_US });
        assert_eq!(delays(Vendor::Other, 4, Some(0)), Delays { init_us: 0, sipi_us: MODERN_SIPI_US });
    }
}
