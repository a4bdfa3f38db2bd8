//! Where an image boots: which emulator, machine, CPUs and memory, and what
//! the loader's boot banner must report there.

use std::fmt;
use std::time::Duration;

use super::banner::Expectation;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// ICH9 chipset; ACPI CPU hotplug block at I/O port 0x0cd8.
    Q35,
    /// i440FX/PIIX4; ACPI CPU hotplug block at I/O port 0xaf00.
    Pc,
}

impl Machine {
    pub const fn name(self) -> &'static str {
        match self {
            Machine::Q35 => "q35",
            Machine::Pc => "pc",
        }
    }
}

/// One QEMU configuration: `-machine`, `-smp` and `-m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QemuLayout {
    pub machine: Machine,
    /// CPUs enabled at boot (the first number of `-smp`).
    pub cpus: u32,
    /// `maxcpus`; the difference to `cpus` is the hot-pluggable slots.
    pub max_cpus: u32,
    pub mem_mib: u32,
}

impl QemuLayout {
    pub const fn new(machine: Machine, cpus: u32, max_cpus: u32, mem_mib: u32) -> Self {
        QemuLayout { machine, cpus, max_cpus, mem_mib }
    }

    /// The value of `-smp`.
    pub fn smp_arg(&self) -> String {
        if self.max_cpus == self.cpus {
            self.cpus.to_string()
        } else {
            format!("{},maxcpus={}", self.cpus, self.max_cpus)
        }
    }

    /// The value of `-m`.
    pub fn mem_arg(&self) -> String {
        mem_label(self.mem_mib)
    }
}

impl fmt::Display for QemuLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -smp {} -m {}", self.machine.name(), self.smp_arg(), self.mem_arg())
    }
}

fn mem_label(mib: u32) -> String {
    if mib.is_multiple_of(1024) {
        format!("{}G", mib / 1024)
    } else {
        format!("{mib}M")
    }
}

const MIB_128: u32 = 128;
const GIB_2: u32 = 2048;

/// Every test image runs on all six machine × topology combinations. Memory
/// alternates so that each machine and each topology meets both the small
/// and the large size without running the full product.
pub const QEMU_LAYOUTS: [QemuLayout; 6] = [
    QemuLayout::new(Machine::Q35, 1, 1, MIB_128),
    QemuLayout::new(Machine::Q35, 4, 4, GIB_2),
    QemuLayout::new(Machine::Q35, 2, 4, MIB_128),
    QemuLayout::new(Machine::Pc, 1, 1, GIB_2),
    QemuLayout::new(Machine::Pc, 4, 4, MIB_128),
    QemuLayout::new(Machine::Pc, 2, 4, GIB_2),
];

/// The self-check images test the runner's decoding, not the hardware, so
/// one small layout is enough.
pub const SELF_CHECK_LAYOUT: QemuLayout = QEMU_LAYOUTS[0];

/// `runner bench`: one CPU, because `-icount` stalls spinning APs (see
/// platform notes) and one CPU keeps the figure an instruction count.
pub const BENCH_LAYOUT: QemuLayout = QEMU_LAYOUTS[0];

/// `runner run`: room to hot-add CPUs and enough memory to play with.
/// Under TCG `maxcpus` bounds the CPUs QEMU creates over the whole run,
/// not only those present at once (see `qemu::check_plug_events`), so
/// 16 leave room for `make cpu-add` / `make cpu-del` rounds.
pub const RUN_LAYOUT: QemuLayout = QemuLayout::new(Machine::Q35, 2, 16, 512);

/// The Bochs CPU models images boot on (bochsrc `cpu: model=`): Intel
/// models with VMX, which differ in the VMX features they report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BochsModel {
    /// The default: every Bochs recipe runs here, as does `runner bochs`.
    SkylakeX,
    /// Bochs 2.7's newest Intel model: the same VMX code meets a second
    /// set of CPUID leaves and VMX capability MSRs.
    TigerLake,
}

impl BochsModel {
    pub const ALL: [BochsModel; 2] = [BochsModel::SkylakeX, BochsModel::TigerLake];

    /// Bochs's name for the model.
    pub const fn name(self) -> &'static str {
        match self {
            BochsModel::SkylakeX => "corei7_skylake_x",
            BochsModel::TigerLake => "tigerlake",
        }
    }

    pub fn parse(name: &str) -> Option<BochsModel> {
        BochsModel::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// One Bochs machine: the CPU model and how many CPUs it has (bochsrc
/// `cpu: model=..., count=...`). Memory is the same for every machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BochsLayout {
    pub model: BochsModel,
    pub cpus: u32,
}

impl BochsLayout {
    pub const fn new(model: BochsModel, cpus: u32) -> Self {
        BochsLayout { model, cpus }
    }
}

/// Bochs boots have two CPUs unless a recipe asks for more: the fewest
/// that exercise SMP, and each emulated CPU slows every boot.
pub const BOCHS_CPUS: u32 = 2;
pub const BOCHS_MEM_MIB: u32 = 256;

/// The Bochs machines recipes pick from: each model with the usual two
/// CPUs, and with four where a suite must also hold with more CPUs than
/// it places vCPUs on.
pub const SKYLAKE_X2: BochsLayout = BochsLayout::new(BochsModel::SkylakeX, BOCHS_CPUS);
pub const SKYLAKE_X4: BochsLayout = BochsLayout::new(BochsModel::SkylakeX, 4);
pub const TIGERLAKE_X2: BochsLayout = BochsLayout::new(BochsModel::TigerLake, BOCHS_CPUS);
pub const TIGERLAKE_X4: BochsLayout = BochsLayout::new(BochsModel::TigerLake, 4);

/// Host-side deadlines: far above a normal boot (QEMU about 1 s, Bochs
/// about 30 s), so only a real hang reaches them.
pub const QEMU_TIMEOUT: Duration = Duration::from_secs(60);
pub const BOCHS_TIMEOUT: Duration = Duration::from_secs(240);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulator {
    Qemu,
    Bochs,
}

impl Emulator {
    pub const fn name(self) -> &'static str {
        match self {
            Emulator::Qemu => "qemu",
            Emulator::Bochs => "bochs",
        }
    }
}

/// Where one test run boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Qemu(QemuLayout),
    Bochs(BochsLayout),
}

impl Target {
    pub fn emulator(&self) -> Emulator {
        match self {
            Target::Qemu(_) => Emulator::Qemu,
            Target::Bochs(_) => Emulator::Bochs,
        }
    }

    pub fn default_timeout(&self) -> Duration {
        match self {
            Target::Qemu(_) => QEMU_TIMEOUT,
            Target::Bochs(_) => BOCHS_TIMEOUT,
        }
    }

    /// A file-name-safe form of the target, for per-run log directories.
    pub fn slug(&self) -> String {
        match self {
            Target::Qemu(l) => format!("qemu-{}-smp{}of{}-{}", l.machine.name(), l.cpus, l.max_cpus, l.mem_arg()),
            Target::Bochs(b) => format!("bochs-{}-x{}", b.model.name().replace('_', "-"), b.cpus),
        }
    }

    /// What the banner must say on this target: every CPU the machine
    /// starts with is enabled at boot, the rest of `maxcpus` is
    /// hot-pluggable, and the usable memory is just below the configured size.
    pub fn expected_banner(&self) -> Expectation {
        match self {
            Target::Qemu(l) => Expectation::new(l.cpus, l.max_cpus - l.cpus, l.mem_mib),
            Target::Bochs(b) => Expectation::new(b.cpus, 0, BOCHS_MEM_MIB),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Qemu(l) => write!(f, "qemu {l}"),
            Target::Bochs(b) => write!(f, "bochs {} x{} {}", b.model.name(), b.cpus, mem_label(BOCHS_MEM_MIB)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_arguments_and_labels() {
        let l = QemuLayout::new(Machine::Q35, 2, 4, 2048);
        assert_eq!(l.smp_arg(), "2,maxcpus=4");
        assert_eq!(l.mem_arg(), "2G");
        assert_eq!(Target::Qemu(l).to_string(), "qemu q35 -smp 2,maxcpus=4 -m 2G");
        assert_eq!(Target::Qemu(l).slug(), "qemu-q35-smp2of4-2G");
        let l = QemuLayout::new(Machine::Pc, 4, 4, 128);
        assert_eq!(l.smp_arg(), "4");
        assert_eq!(Target::Qemu(l).to_string(), "qemu pc -smp 4 -m 128M");
        let skylake = Target::Bochs(SKYLAKE_X2);
        assert_eq!(skylake.to_string(), "bochs corei7_skylake_x x2 256M");
        assert_eq!(skylake.slug(), "bochs-corei7-skylake-x-x2");
        let tigerlake = Target::Bochs(TIGERLAKE_X4);
        assert_eq!(tigerlake.to_string(), "bochs tigerlake x4 256M");
        assert_eq!(tigerlake.slug(), "bochs-tigerlake-x4");
    }

    #[test]
    fn banner_expectations_follow_the_layout() {
        let e = Target::Qemu(QemuLayout::new(Machine::Pc, 2, 4, 128)).expected_banner();
        assert_eq!((e.boot_cpus, e.hotpluggable), (2, 2));
        assert_eq!(e.memory_mib, 112..=128);
        let e = Target::Qemu(QemuLayout::new(Machine::Q35, 4, 4, 2048)).expected_banner();
        assert_eq!((e.boot_cpus, e.hotpluggable), (4, 0));
        assert_eq!(e.memory_mib, 2032..=2048);
        for (b, cpus) in [(SKYLAKE_X2, 2), (SKYLAKE_X4, 4), (TIGERLAKE_X2, 2), (TIGERLAKE_X4, 4)] {
            let e = Target::Bochs(b).expected_banner();
            assert_eq!((e.boot_cpus, e.hotpluggable), (cpus, 0));
            assert_eq!(e.memory_mib, 240..=256);
        }
    }

    #[test]
    fn test_layouts_cover_every_machine_topology_pair_with_both_sizes() {
        let mut pairs = Vec::new();
        for l in QEMU_LAYOUTS {
            assert!(l.cpus <= l.max_cpus);
            pairs.push((l.machine, l.cpus, l.max_cpus));
        }
        for m in [Machine::Q35, Machine::Pc] {
            for smp in [(1, 1), (4, 4), (2, 4)] {
                assert_eq!(pairs.iter().filter(|p| **p == (m, smp.0, smp.1)).count(), 1);
            }
            let sizes: Vec<u32> = QEMU_LAYOUTS.iter().filter(|l| l.machine == m).map(|l| l.mem_mib).collect();
            assert!(sizes.contains(&MIB_128) && sizes.contains(&GIB_2), "{m:?}: {sizes:?}");
        }
        for smp in [(1, 1), (4, 4), (2, 4)] {
            let sizes: Vec<u32> =
                QEMU_LAYOUTS.iter().filter(|l| (l.cpus, l.max_cpus) == smp).map(|l| l.mem_mib).collect();
            assert!(sizes.contains(&MIB_128) && sizes.contains(&GIB_2), "{smp:?}: {sizes:?}");
        }
    }

    #[test]
    fn the_run_layout_leaves_room_for_hot_adds_after_ejects() {
        assert_eq!(RUN_LAYOUT.to_string(), "q35 -smp 2,maxcpus=16 -m 512M");
        const { assert!(RUN_LAYOUT.max_cpus - RUN_LAYOUT.cpus >= 8) };
    }

    #[test]
    fn bochs_models_by_name() {
        for m in BochsModel::ALL {
            assert_eq!(BochsModel::parse(m.name()), Some(m));
        }
        assert_eq!(BochsModel::parse("skylake"), None);
    }

    #[test]
    fn slugs_are_unique_and_file_name_safe() {
        let mut slugs: Vec<String> = QEMU_LAYOUTS.iter().map(|l| Target::Qemu(*l).slug()).collect();
        slugs.extend([SKYLAKE_X2, SKYLAKE_X4, TIGERLAKE_X2, TIGERLAKE_X4].map(|b| Target::Bochs(b).slug()));
        for s in &slugs {
            assert!(s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "{s}");
        }
        let n = slugs.len();
        slugs.sort();
        slugs.dedup();
        assert_eq!(slugs.len(), n);
    }
}
