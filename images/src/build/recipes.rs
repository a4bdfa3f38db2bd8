//! The image recipes: the one table that says which images exist, what
//! command line each boots with, and what `runner test` expects of it.

use std::time::Duration;

use loader_core::boot::cmdline::CommandLine;
use loader_core::power::exit::Status;

use super::{Error, Result};
use crate::machine::layout::{
    BochsLayout, Target, QEMU_LAYOUTS, SELF_CHECK_LAYOUT, SKYLAKE_X2, SKYLAKE_X4, TIGERLAKE_X2, TIGERLAKE_X4,
};
use crate::machine::outcome::Outcome;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recipe {
    pub name: &'static str,
    /// Command-line words after `image=<name>`.
    pub args: &'static str,
    pub role: Role,
    /// One line for `runner --help`, which lists the table.
    pub about: &'static str,
}

impl Recipe {
    /// Whether the image selects in-image suites (`test=`), and so needs the
    /// loader built with them.
    pub fn runs_suites(&self) -> bool {
        self.args.split_whitespace().any(|w| w.starts_with("test="))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Boots to the console for `runner run` / `runner bochs`; never tested.
    Interactive,
    /// Runs in-image suites on every QEMU layout when `qemu`, and in Bochs
    /// on each machine (model and CPU count) of `bochs`.
    Test {
        expect: Outcome,
        qemu: bool,
        bochs: &'static [BochsLayout],
        /// Resets itself once on purpose, so QEMU must not get `-no-reboot`.
        reboots: bool,
    },
    /// Runs in-image suites that make random choices from `seed=`: on each
    /// Bochs machine of `bochs`, once per seed (`runner test` picks three
    /// and prints them; `--seed N` runs that one), each boot with
    /// `seed=<n>` added to the command line. Passes like a test.
    Seeded { bochs: &'static [BochsLayout] },
    /// Runs an in-image benchmark suite for `runner bench` (which picks the
    /// layouts) and passes; `runner test` leaves it alone.
    Bench,
    /// Runs an in-image suite that waits for the host to act (QMP CPU
    /// hotplug): booted only by its driven runs (`scenarios::hotplug`).
    Driven,
    /// Ends badly on purpose, to prove the runner tells the endings apart.
    /// Runs on one QEMU layout; `timeout` overrides the host deadline.
    SelfCheck { expect: Outcome, timeout: Option<Duration> },
}

const fn test(name: &'static str, args: &'static str, about: &'static str) -> Recipe {
    Recipe {
        name,
        args,
        role: Role::Test { expect: Outcome::Exited(Status::Pass), qemu: true, bochs: &[], reboots: false },
        about,
    }
}

const fn self_check(name: &'static str, args: &'static str, expect: Status, about: &'static str) -> Recipe {
    Recipe { name, args, role: Role::SelfCheck { expect: Outcome::Exited(expect), timeout: None }, about }
}

pub const RECIPES: &[Recipe] = &[
    // Boots to the shell with the standard plugin set loaded; the store
    // holds every version, so a swap can be tried at once.
    Recipe {
        name: "default",
        args: "load=cpuhp-plugin,vmx-plugin,counter-plugin@1.0.0,consumer-plugin@1.0.0",
        role: Role::Interactive,
        about: "the shell with cpuhp, vmx, counter 1.0.0 and consumer 1.0.0 loaded (`runner run`, sessions)",
    },
    // Counter and consumer only: the shell for the COM2 burst session
    // (`scenarios::session`, `upload-burst`), which stores and swaps
    // counter versions while frames are in flight.
    Recipe {
        name: "upload",
        args: "load=counter-plugin@1.0.0,consumer-plugin@1.0.0",
        role: Role::Interactive,
        about: "counter 1.0.0 and consumer 1.0.0 loaded: the shell for the COM2 burst session (`upload-burst`)",
    },
    Recipe {
        name: "boot",
        args: "test=boot",
        role: Role::Test {
            expect: Outcome::Exited(Status::Pass),
            qemu: true,
            bochs: &[SKYLAKE_X2],
            reboots: false,
        },
        about: "the boot path (suite `boot`)",
    },
    test("mem", "test=mem", "memory: frames, page tables, stacks (suite `mem`)"),
    test("cpu", "test=cpu", "per-CPU tables, exceptions and probes (suite `cpu`)"),
    test("acpi", "test=acpi", "ACPI tables, power and reset registers (suite `acpi`)"),
    Recipe {
        name: "smp",
        args: "test=smp",
        role: Role::Test {
            expect: Outcome::Exited(Status::Pass),
            qemu: true,
            bochs: &[SKYLAKE_X2],
            reboots: false,
        },
        about: "starting, parking and restarting CPUs; IPIs (suite `smp`)",
    },
    test("xapic", "test=cpu,smp apic=xapic", "the `cpu` and `smp` suites with the APIC in xAPIC mode"),
    test("shell", "test=shell", "the shell's line editor, registry and commands (suite `shell`)"),
    Recipe {
        name: "plugins",
        args: "test=plugin-image,plugins",
        role: Role::Test {
            expect: Outcome::Exited(Status::Pass),
            qemu: true,
            bochs: &[SKYLAKE_X2],
            reboots: false,
        },
        about: "plugin files mapped, relocated and refused; load, swap, unload (suites `plugin-image`, `plugins`)",
    },
    // Waits for the runner's QMP device_add and device_del.
    Recipe {
        name: "acpihp",
        args: "test=acpihp",
        role: Role::Driven,
        about: "ACPI CPU hot-add and eject, driven by the runner over QMP (`acpihp-q35`, `acpihp-pc`)",
    },
    // cpuhp taking physical hotplug, with cpuidcheck's ONLINE state: the
    // shell for the runner's QMP scenario (`scenarios::cpuhp_qmp`). The
    // vmx-plugin load fails under TCG; the scenario checks it said why.
    Recipe {
        name: "cpuhp-qmp",
        args: "load=cpuhp-plugin@1.2.0,vmx-plugin,cpuidcheck-plugin",
        role: Role::Interactive,
        about: "cpuhp, cpuidcheck and vmx loaded: the shell for the QMP hotplug runs (`cpuhp-qmp-*`)",
    },
    // cpuhp with the hprecorder test plugin; the layouts cover 1, 2 of 4
    // and 4 CPUs, Bochs 2.
    Recipe {
        name: "cpuhp",
        args: "test=cpuhp",
        role: Role::Test {
            expect: Outcome::Exited(Status::Pass),
            qemu: true,
            bochs: &[SKYLAKE_X2],
            reboots: false,
        },
        about: "cpuhp's CPU lifecycle with the hprecorder plugin (suite `cpuhp`)",
    },
    // Needs VMX, which QEMU's TCG does not emulate: Bochs only, on two
    // Intel models that report different VMX capabilities. `maxcpus=1`
    // keeps CPU 1 offline at boot, so that it comes online after the load.
    Recipe {
        name: "vmx",
        args: "test=vmx maxcpus=1",
        role: Role::Test {
            expect: Outcome::Exited(Status::Pass),
            qemu: false,
            bochs: &[SKYLAKE_X2, TIGERLAKE_X2],
            reboots: false,
        },
        about: "VMX on and off through the hotplug states; Bochs only (suite `vmx`)",
    },
    // The panic path's emergency round, which stops the second CPU for
    // good: an image of its own.
    Recipe {
        name: "vmx-panic",
        args: "test=vmx-panic",
        role: Role::Test {
            expect: Outcome::Exited(Status::Pass),
            qemu: false,
            bochs: &[SKYLAKE_X2],
            reboots: false,
        },
        about: "the panic path's emergency VMX round (suite `vmx-panic`)",
    },
    // The counterpart for CPUs without VMX: QEMU under TCG (with
    // ACCEL=kvm the host's CPU model may have VMX, and this image fails).
    test("vmx-absent", "test=vmx-absent", "vmx-plugin refused on CPUs without VMX (suite `vmx-absent`)"),
    // `maxcpus=2`: cpuhp leaves the boot CPUs past the second offline
    // until `cpu online` (on the layouts with 4 CPUs enabled at boot).
    test(
        "cpuhp-maxcpus",
        "test=cpuhp-maxcpus maxcpus=2",
        "`maxcpus=2`: boot CPUs past the second stay offline until `cpu online`",
    ),
    // Every plugin's heap account: attribution, adoption across a swap,
    // leaks reported and freed; then 20 swaps and 20 unload/load cycles of
    // cpuhp, counter and consumer, with the heap and frames back exactly.
    test(
        "heap",
        "test=heap",
        "per-plugin heap accounts; 20 swaps and reloads of each plugin with state return every byte (suite `heap`)",
    ),
    // The same loops for vmx-plugin, whose VMXON regions cross each swap
    // by pointer: needs VMX, so Bochs only.
    Recipe {
        name: "heap-vmx",
        args: "test=heap-vmx",
        role: Role::Test {
            expect: Outcome::Exited(Status::Pass),
            qemu: false,
            bochs: &[SKYLAKE_X2],
            reboots: false,
        },
        about: "20 swaps and reloads of vmx-plugin return every byte; Bochs only (suite `heap-vmx`)",
    },
    // Guests need VMX: Bochs only, on both Intel models, with two CPUs and
    // with four (vCPUs spread over three CPUs, VMs beside each other).
    Recipe {
        name: "guests",
        args: "test=guests",
        role: Role::Test {
            expect: Outcome::Exited(Status::Pass),
            qemu: false,
            bochs: &[SKYLAKE_X2, TIGERLAKE_X2, SKYLAKE_X4, TIGERLAKE_X4],
            reboots: false,
        },
        about: "the test guests as VMs: results, IPIs and timers, reports, kills, isolation, a vCPU moved off an offline CPU; Bochs only (suite `guests`)",
    },
    // The `vm` 1.1 table as another plugin drives it: Bochs only.
    Recipe {
        name: "vm-api",
        args: "test=vm-api",
        role: Role::Test {
            expect: Outcome::Exited(Status::Pass),
            qemu: false,
            bochs: &[SKYLAKE_X2],
            reboots: false,
        },
        about: "the vm table driven like a plugin would: real- and long-mode guests written into RAM, port and MMIO handlers, port policies, pause and resume, hooks; Bochs only (suite `vm-api`)",
    },
    // vmx-plugin's requests and kicks while cpuhp moves vCPUs, seeded:
    // Bochs only (VMX), with one AP and with three.
    Recipe {
        name: "requests",
        args: "test=requests",
        role: Role::Seeded { bochs: &[SKYLAKE_X2, SKYLAKE_X4] },
        about: "the request/kick stress test: probe requests on random vCPU sets while CPUs go offline and online, per seed; Bochs only (suite `requests`)",
    },
    // Resets once and passes on the second boot. Not in Bochs, which the
    // runner configures to stop rather than reset on a triple fault.
    Recipe {
        name: "reboot",
        args: "test=reboot",
        role: Role::Test { expect: Outcome::Exited(Status::Pass), qemu: true, bochs: &[], reboots: true },
        about: "resets once and passes on the second boot (suite `reboot`)",
    },
    Recipe {
        name: "poweroff",
        args: "test=poweroff",
        role: Role::Test { expect: Outcome::Exited(Status::PowerOff), qemu: true, bochs: &[], reboots: false },
        about: "ACPI power-off (suite `poweroff`)",
    },
    // The plugin runtime's figures (`bench:` lines), on one and four CPUs.
    Recipe {
        name: "bench-plugins",
        args: "test=bench-plugins",
        role: Role::Bench,
        about: "plugin runtime figures for `runner bench` (suite `bench-plugins`)",
    },
    // One CPU offline->online through every cpuhp state (`bench:` line).
    Recipe {
        name: "bench-cpuhp",
        args: "test=bench-cpuhp",
        role: Role::Bench,
        about: "one CPU offline and online through every cpuhp state, for `runner bench`",
    },
    // VMX enable and disable on the second CPU (`bench:` lines): needs
    // VMX, so `runner bench` boots it in Bochs.
    Recipe {
        name: "bench-vmx",
        args: "test=bench-vmx",
        role: Role::Bench,
        about: "VMX enable and disable figures for `runner bench`, in Bochs",
    },
    self_check("fail-test", "test=selftest-fail", Status::TestFailure, "a failing test: must end `test-failure`"),
    self_check("fail-panic", "test=selftest-panic", Status::Panic, "a panic: must end `panic`"),
    self_check(
        "fail-exception",
        "test=selftest-exception",
        Status::Exception,
        "an unexpected exception: must end `exception`",
    ),
    self_check(
        "fail-hang",
        "test=selftest-hang watchdog=3",
        Status::Watchdog,
        "a hang the in-image watchdog ends: must end `watchdog`",
    ),
    self_check(
        "fail-cmdline",
        "bogus=1",
        Status::BadCommandLine,
        "a command line the loader rejects: must end `bad-command-line`",
    ),
    // The same hang with the in-image watchdog off: only the runner's own
    // deadline can end it, which proves that deadline works.
    Recipe {
        name: "fail-timeout",
        args: "test=selftest-hang watchdog=0",
        role: Role::SelfCheck { expect: Outcome::Timeout, timeout: Some(Duration::from_secs(10)) },
        about: "a hang with the watchdog off: only the runner's deadline ends it",
    },
];

pub fn find(name: &str) -> Result<&'static Recipe> {
    RECIPES.iter().find(|r| r.name == name).ok_or_else(|| {
        let known: Vec<&str> = RECIPES.iter().map(|r| r.name).collect();
        Error::UnknownImage { name: name.to_string(), known: known.join(", ") }
    })
}

impl Recipe {
    /// The kernel command line: always `image=<name>` first.
    pub fn cmdline(&self) -> String {
        if self.args.is_empty() {
            format!("image={}", self.name)
        } else {
            format!("image={} {}", self.name, self.args)
        }
    }

    /// The outcome `runner test` expects; `None` for interactive images.
    pub fn expect(&self) -> Option<Outcome> {
        match self.role {
            Role::Interactive => None,
            Role::Bench | Role::Driven | Role::Seeded { .. } => Some(Outcome::Exited(Status::Pass)),
            Role::Test { expect, .. } | Role::SelfCheck { expect, .. } => Some(expect),
        }
    }

    pub fn reboots(&self) -> bool {
        matches!(self.role, Role::Test { reboots: true, .. })
    }

    /// Where `runner test` boots this image.
    pub fn targets(&self) -> Vec<Target> {
        match self.role {
            Role::Interactive | Role::Bench | Role::Driven => Vec::new(),
            Role::Test { qemu, bochs, .. } => {
                let qemu_layouts = if qemu { &QEMU_LAYOUTS[..] } else { &[] };
                let qemu_targets = qemu_layouts.iter().map(|l| Target::Qemu(*l));
                qemu_targets.chain(bochs.iter().map(|m| Target::Bochs(*m))).collect()
            }
            Role::Seeded { bochs } => bochs.iter().map(|m| Target::Bochs(*m)).collect(),
            Role::SelfCheck { .. } => vec![Target::Qemu(SELF_CHECK_LAYOUT)],
        }
    }

    pub fn timeout(&self, target: &Target) -> Duration {
        match self.role {
            Role::SelfCheck { timeout: Some(t), .. } => t,
            _ => target.default_timeout(),
        }
    }

    /// Whether a run must show the boot banner: a rejected command line
    /// stops the loader before it prints one.
    pub fn banner_required(&self) -> bool {
        self.expect() != Some(Outcome::Exited(Status::BadCommandLine))
    }

    /// Checks the recipe against the loader's own command-line parser, so a
    /// typo fails the build instead of booting the wrong thing.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::Recipe(format!("image `{}`: {why}", self.name)));
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return bad("names use a-z, 0-9 and `-` only".into());
        }
        let cmdline = self.cmdline();
        // grub.cfg carries the command line unquoted; these characters
        // mean nothing to GRUB's shell-like syntax.
        if !cmdline.chars().all(|c| c.is_ascii_alphanumeric() || " =,-_.:/@".contains(c)) {
            return bad(format!("`{cmdline}`: use only letters, digits, spaces and `=,-_.:/@`"));
        }
        let parsed = CommandLine::parse(&cmdline);
        if self.expect() == Some(Outcome::Exited(Status::BadCommandLine)) {
            return match parsed {
                Ok(_) => bad(format!("`{cmdline}` is meant to be rejected but the loader accepts it")),
                Err(_) => Ok(()),
            };
        }
        let cl = match parsed {
            Ok(cl) => cl,
            Err(e) => return bad(format!("`{cmdline}`: {e}")),
        };
        if cl.image != Some(self.name) {
            return bad(format!("`{cmdline}` does not name the image"));
        }
        match (self.role, cl.tests) {
            (Role::Interactive, Some(_)) => bad("an interactive image runs no tests".into()),
            (Role::Test { .. } | Role::SelfCheck { .. } | Role::Bench | Role::Driven | Role::Seeded { .. }, None) => {
                bad("a test image needs `test=`, or it never exits".into())
            }
            (Role::Test { qemu: false, bochs: [], .. }, _) => bad("a test image needs a QEMU or a Bochs target".into()),
            (Role::Test { bochs: [_, ..], reboots: true, .. }, _) => {
                bad("Bochs stops on a reset, so a rebooting image cannot run there".into())
            }
            (Role::Test { bochs, .. } | Role::Seeded { bochs }, _)
                if bochs.iter().enumerate().any(|(i, m)| bochs[..i].contains(m)) =>
            {
                bad("a Bochs machine is listed twice".into())
            }
            (Role::Seeded { bochs: [] }, _) => bad("a seeded image needs a Bochs machine".into()),
            (Role::Seeded { .. }, _) if cl.seed.is_some() => bad("the runner adds `seed=` to a seeded image".into()),
            _ => Ok(()),
        }
    }
}

/// Validates every recipe and the table as a whole.
pub fn validate_all() -> Result<()> {
    for (i, r) in RECIPES.iter().enumerate() {
        r.validate()?;
        if RECIPES[..i].iter().any(|o| o.name == r.name) {
            return Err(Error::Recipe(format!("image `{}` is listed twice", r.name)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::layout::{Machine, QemuLayout};

    #[test]
    fn the_table_is_valid() {
        validate_all().unwrap();
    }

    #[test]
    fn every_cmdline_starts_with_its_image() {
        for r in RECIPES {
            assert!(r.cmdline().starts_with(&format!("image={}", r.name)), "{}", r.cmdline());
        }
        assert_eq!(
            find("default").unwrap().cmdline(),
            "image=default load=cpuhp-plugin,vmx-plugin,counter-plugin@1.0.0,consumer-plugin@1.0.0"
        );
        assert_eq!(find("xapic").unwrap().cmdline(), "image=xapic test=cpu,smp apic=xapic");
    }

    #[test]
    fn bad_recipes_are_caught() {
        let r = |name, args, role| Recipe { name, args, role, about: "" }.validate().unwrap_err().to_string();
        let pass = Role::Test { expect: Outcome::Exited(Status::Pass), qemu: true, bochs: &[], reboots: false };
        assert!(r("x", "tset=boot", pass).contains("tset=boot"));
        assert!(r("x", "", pass).contains("needs `test=`"));
        assert!(r("X", "test=a", pass).contains("a-z"));
        assert!(r("x", "test=a;reboot", pass).contains("letters, digits"));
        assert!(r("x", "test=boot", Role::Interactive).contains("runs no tests"));
        assert!(r("x", "", Role::Bench).contains("needs `test=`"));
        let rejected = Role::SelfCheck { expect: Outcome::Exited(Status::BadCommandLine), timeout: None };
        assert!(r("x", "test=boot", rejected).contains("meant to be rejected"));
        let both =
            Role::Test { expect: Outcome::Exited(Status::Pass), qemu: true, bochs: &[SKYLAKE_X2], reboots: true };
        assert!(r("x", "test=reboot", both).contains("Bochs stops on a reset"));
        let nowhere = Role::Test { expect: Outcome::Exited(Status::Pass), qemu: false, bochs: &[], reboots: false };
        assert!(r("x", "test=boot", nowhere).contains("QEMU or a Bochs target"));
        let twice = Role::Test {
            expect: Outcome::Exited(Status::Pass),
            qemu: false,
            bochs: &[TIGERLAKE_X2, TIGERLAKE_X2],
            reboots: false,
        };
        assert!(r("x", "test=boot", twice).contains("listed twice"));
    }

    #[test]
    fn unknown_image_names_the_known_ones() {
        let e = find("nope").unwrap_err().to_string();
        assert!(e.contains("`nope`") && e.contains("default") && e.contains("smp"), "{e}");
    }

    #[test]
    fn targets_per_role() {
        assert!(find("default").unwrap().targets().is_empty());
        assert!(find("bench-plugins").unwrap().targets().is_empty());
        assert!(find("bench-vmx").unwrap().targets().is_empty());
        let skylake = Target::Bochs(SKYLAKE_X2);
        let boot = find("boot").unwrap().targets();
        assert_eq!(boot.len(), QEMU_LAYOUTS.len() + 1);
        assert_eq!(boot.last(), Some(&skylake));
        assert!(!find("reboot").unwrap().targets().contains(&skylake));
        assert!(find("smp").unwrap().targets().contains(&skylake));
        assert_eq!(find("vmx").unwrap().targets(), [skylake, Target::Bochs(TIGERLAKE_X2)]);
        let guests = [SKYLAKE_X2, TIGERLAKE_X2, SKYLAKE_X4, TIGERLAKE_X4].map(Target::Bochs);
        assert_eq!(find("guests").unwrap().targets(), guests);
        let absent = find("vmx-absent").unwrap().targets();
        assert_eq!(absent.len(), QEMU_LAYOUTS.len());
        assert!(absent.iter().all(|t| matches!(t, Target::Qemu(_))));
        assert_eq!(find("fail-panic").unwrap().targets(), [Target::Qemu(QemuLayout::new(Machine::Q35, 1, 1, 128))]);
    }

    #[test]
    fn expectations_and_deadlines() {
        assert_eq!(find("poweroff").unwrap().expect(), Some(Outcome::Exited(Status::PowerOff)));
        assert_eq!(find("fail-hang").unwrap().expect(), Some(Outcome::Exited(Status::Watchdog)));
        assert_eq!(find("fail-timeout").unwrap().expect(), Some(Outcome::Timeout));
        assert_eq!(find("default").unwrap().expect(), None);
        let t = Target::Qemu(SELF_CHECK_LAYOUT);
        assert_eq!(find("fail-timeout").unwrap().timeout(&t), Duration::from_secs(10));
        assert_eq!(find("boot").unwrap().timeout(&t), Duration::from_secs(60));
        assert_eq!(find("boot").unwrap().timeout(&Target::Bochs(TIGERLAKE_X4)), Duration::from_secs(240));
        assert!(find("reboot").unwrap().reboots());
        assert!(!find("boot").unwrap().reboots());
        assert!(!find("fail-cmdline").unwrap().banner_required());
        assert!(find("fail-panic").unwrap().banner_required());
    }

    #[test]
    fn the_readme_table_lists_every_recipe_with_its_command_line() {
        let readme = std::fs::read_to_string(crate::workspace_root().join("README.md")).unwrap();
        let images = readme.split("\n## ").find(|s| s.starts_with("Images\n")).expect("README has `## Images`");
        for r in RECIPES {
            let row = images.lines().find(|l| l.starts_with(&format!("| `{}` ", r.name)));
            let row = row.unwrap_or_else(|| panic!("README's image table has no row for `{}`", r.name));
            assert!(row.contains(&format!("| `{}` ", r.args)), "README's row for `{}` lacks `{}`", r.name, r.args);
        }
    }

    #[test]
    fn every_status_but_pass_and_poweroff_has_a_self_check() {
        for s in Status::ALL {
            let checked =
                RECIPES.iter().any(|r| matches!(r.role, Role::SelfCheck { expect: Outcome::Exited(e), .. } if e == s));
            assert_eq!(checked, !matches!(s, Status::Pass | Status::PowerOff), "{s:?}");
        }
    }
}
