//! Which CPUs exist and how: the MADT's local APIC and local x2APIC entries,
//! classified without the `acpi` crate's helper (which folds online-capable
//! CPUs into "disabled").
//!
//! ACPI 6.5, 5.2.12.2: flags bit 0 `Enabled` (usable at boot), bit 1
//! `Online Capable` (may be enabled at run time, i.e. hot-pluggable; only
//! meaningful when bit 0 is clear). The `Online Capable` bit exists from
//! MADT revision 5 (ACPI 6.3); from then on an entry with neither bit must
//! be ignored. In older MADTs, such as QEMU 7.2's, a disabled entry is how
//! firmware lists a hot-pluggable slot (Linux decides the same way in
//! `acpi_is_processor_usable`).

pub const MAX_CPUS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuClass {
    /// Enabled at boot: firmware says the CPU is there.
    Boot,
    /// Online capable: the slot may receive a CPU at run time.
    HotPluggable,
}

/// First MADT revision with the `Online Capable` flag.
pub const ONLINE_CAPABLE_REVISION: u8 = 5;

impl CpuClass {
    pub fn from_flags(flags: u32, madt_revision: u8) -> Option<CpuClass> {
        let online_capable = if madt_revision >= ONLINE_CAPABLE_REVISION { flags & 2 != 0 } else { true };
        match (flags & 1 != 0, online_capable) {
            (true, _) => Some(CpuClass::Boot),
            (false, true) => Some(CpuClass::HotPluggable),
            (false, false) => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CpuClass::Boot => "boot",
            CpuClass::HotPluggable => "hot-pluggable",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuEntry {
    pub apic_id: u32,
    pub class: CpuClass,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    TooManyCpus,
    DuplicateApicId(u32),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::TooManyCpus => write!(f, "the MADT lists more than {MAX_CPUS} CPUs"),
            Error::DuplicateApicId(id) => write!(f, "the MADT lists APIC id {id} twice"),
        }
    }
}

/// Every possible CPU in MADT order. The index is the logical CPU id, so a
/// hot-pluggable slot keeps its id across hot-add and hot-remove.
#[derive(Clone, Debug)]
pub struct CpuList {
    cpus: [CpuEntry; MAX_CPUS],
    len: usize,
}

impl Default for CpuList {
    fn default() -> Self {
        CpuList { cpus: [CpuEntry { apic_id: 0, class: CpuClass::Boot }; MAX_CPUS], len: 0 }
    }
}

impl CpuList {
    /// Adds one local APIC or x2APIC entry of a MADT with `revision`;
    /// entries that can never hold a CPU are skipped.
    pub fn add(&mut self, apic_id: u32, flags: u32, revision: u8) -> Result<(), Error> {
        let Some(class) = CpuClass::from_flags(flags, revision) else { return Ok(()) };
        if self.iter().any(|c| c.apic_id == apic_id) {
            return Err(Error::DuplicateApicId(apic_id));
        }
        if self.len == MAX_CPUS {
            return Err(Error::TooManyCpus);
        }
        self.cpus[self.len] = CpuEntry { apic_id, class };
        self.len += 1;
        Ok(())
    }

    pub fn iter(&self) -> impl Iterator<Item = CpuEntry> + '_ {
        self.cpus[..self.len].iter().copied()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, id: usize) -> Option<CpuEntry> {
        self.cpus[..self.len].get(id).copied()
    }

    pub fn count(&self, class: CpuClass) -> usize {
        self.iter().filter(|c| c.class == class).count()
    }

    /// The logical id of the CPU with `apic_id`.
    pub fn id_of(&self, apic_id: u32) -> Option<usize> {
        self.iter().position(|c| c.apic_id == apic_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_classify_per_spec() {
        assert_eq!(CpuClass::from_flags(0b01, 5), Some(CpuClass::Boot));
        assert_eq!(CpuClass::from_flags(0b11, 5), Some(CpuClass::Boot));
        assert_eq!(CpuClass::from_flags(0b10, 5), Some(CpuClass::HotPluggable));
        assert_eq!(CpuClass::from_flags(0b00, 5), None);
    }

    #[test]
    fn before_revision_5_disabled_means_hot_pluggable() {
        assert_eq!(CpuClass::from_flags(0b00, 1), Some(CpuClass::HotPluggable));
        assert_eq!(CpuClass::from_flags(0b00, 4), Some(CpuClass::HotPluggable));
        assert_eq!(CpuClass::from_flags(0b01, 1), Some(CpuClass::Boot));
    }

    /// `-smp 2,maxcpus=4`: two enabled entries and two hot-pluggable slots,
    /// as a revision-5 MADT (online capable) and as QEMU 7.2's older
    /// MADT (flags 0) lists them.
    #[test]
    fn two_of_four() {
        for (rev, slot_flags) in [(5, 2), (1, 0)] {
            let mut l = CpuList::default();
            for (id, flags) in [(0, 1), (1, 1), (2, slot_flags), (3, slot_flags)] {
                l.add(id, flags, rev).unwrap();
            }
            assert_eq!(l.count(CpuClass::Boot), 2);
            assert_eq!(l.count(CpuClass::HotPluggable), 2);
            assert_eq!(l.id_of(3), Some(3));
        }
    }

    #[test]
    fn disabled_entries_are_ignored_and_duplicates_refused() {
        let mut l = CpuList::default();
        l.add(0, 1, 5).unwrap();
        l.add(5, 0, 5).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l.add(0, 2, 5), Err(Error::DuplicateApicId(0)));
        for id in 1..MAX_CPUS as u32 {
            l.add(id, 1, 5).unwrap();
        }
        assert_eq!(l.add(1000, 1, 5), Err(Error::TooManyCpus));
    }
}
