//! The shell sessions `runner test` plays, as data.

use plugins::upload::Command as UploadCommand;

use crate::build::plugin_build::STORE_DIR;
use crate::machine::layout::{QemuLayout, RUN_LAYOUT};

/// One thing a reply must (or must not) show. Lines are split at `\r\n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Some line is exactly this.
    Line(&'static str),
    /// Some line starts with this.
    LineStarting(&'static str),
    /// The text occurs anywhere (echo and escape sequences included).
    Contains(&'static str),
    /// The text occurs nowhere.
    Absent(&'static str),
}

/// What a step sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// Bytes typed on COM1 at once, after the prompt.
    Keys(&'static [u8]),
    /// A plugin file pushed on COM2 in one frame; the loader's reply there
    /// (`ok ...`/`plugin ...`/`end`, or `error: ...`) answers it.
    Upload(Upload),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub input: Input,
    /// Prompts that answer typed keys (one per Enter or Ctrl-C); 0 for an
    /// upload, which the shell does not answer.
    pub prompts: usize,
    /// Checked against the typed step's reply, or the upload's reply lines.
    pub expect: &'static [Expect],
}

/// A store file pushed over COM2, spoiled first as the test asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upload {
    pub plugin: &'static str,
    pub version: &'static str,
    pub command: UploadCommand,
    pub spoil: Spoil,
}

/// How an upload is damaged on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spoil {
    /// The signed file as built.
    Intact,
    /// One payload byte flipped after the CRC was computed: damaged in transit.
    FlipPayloadByte,
    /// The signature trailer cut off, the frame itself sound.
    StripSignature,
    /// Signed again with a key the loader does not know.
    ForeignKey,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// The run's name in `runner test`'s report and `--filter`.
    pub name: &'static str,
    /// One line for `runner test --help`.
    pub about: &'static str,
    pub image: &'static str,
    pub layout: QemuLayout,
    /// Appended to the image's command line as `sh="..."`.
    pub boot_commands: &'static str,
    /// What the output before the first interactive prompt must show.
    pub at_boot: &'static [Expect],
    pub steps: &'static [Step],
    /// Typed last; must end the machine (the run then expects `poweroff`).
    pub finish: &'static [u8],
}

const fn step(send: &'static [u8], expect: &'static [Expect]) -> Step {
    Step { input: Input::Keys(send), prompts: 1, expect }
}

const fn upload(version: &'static str, spoil: Spoil, expect: &'static [Expect]) -> Step {
    Step {
        input: Input::Upload(Upload { plugin: "counter-plugin", version, command: UploadCommand::StoreAndSwap, spoil }),
        prompts: 0,
        expect,
    }
}

/// 300 characters and Enter: past the shell's 256, typed in one burst
/// (far more than the UART's 16-byte receive FIFO).
pub(crate) const OVERLONG: &[u8] = &{
    let mut line = [b'a'; 301];
    line[300] = b'\r';
    line
};

use Expect::*;

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "shell-session",
        about: "types garbage, control keys, history and `cpus` around a cpuhp swap on `default`'s shell",
        image: "default",
        layout: RUN_LAYOUT,
        boot_commands: "echo hello from the command line; bogus-boot-command; mem",
        at_boot: &[
            Line("modvisor> echo hello from the command line"),
            Line("hello from the command line"),
            Line("modvisor> bogus-boot-command"),
            Line("error: unknown command `bogus-boot-command`; type `help`"),
            Line("modvisor> mem"),
            LineStarting("frames: "),
        ],
        steps: &[
            step(
                b"help\r",
                &[
                    LineStarting("  help [command] "),
                    LineStarting("  log [level] "),
                    LineStarting("  mem "),
                    LineStarting("  cpus "),
                    LineStarting("  echo [text] "),
                    LineStarting("  reboot "),
                    LineStarting("  poweroff "),
                ],
            ),
            step(b"help log\r", &[Line("usage: log [level]")]),
            step(b"mem\r", &[LineStarting("frames: ")]),
            // Up recalls `mem`: its output comes a second time.
            step(b"\x1b[A\r", &[Contains("mem"), LineStarting("frames: ")]),
            step(b"xyzzy\r", &[Line("error: unknown command `xyzzy`; type `help`")]),
            step(OVERLONG, &[Line("error: line too long (max 256 characters)"), Absent("unknown command")]),
            // Ctrl-C abandons a line that would have powered off.
            step(b"poweroff\x03", &[Contains("poweroff^C"), Absent("modvisor-exit")]),
            // Ctrl-U kills it; what follows runs alone.
            step(b"poweroff\x15echo killed the line\r", &[Line("killed the line"), Absent("modvisor-exit")]),
            step(b"ecgo\x08\x08ho back\x7fk\r", &[Line("back")]),
            step(b"echo wrld\x1b[D\x1b[D\x1b[Do\r", &[Line("world")]),
            // Control characters and unknown escape sequences are ignored.
            step(b"\x01\x02\x06\t\x1b[5~echo \x1b[1;5Aclean\x1bx\x1b[99Z\x07\r", &[Line("clean")]),
            // `ESC O A` is Up too: two back is `echo world`.
            step(b"\x1bOA\x1bOA\r", &[Line("world")]),
            // Three lines in one burst: none may lose a byte.
            Step {
                input: Input::Keys(b"echo one\recho two\recho three, a longer line than the FIFO\r"),
                prompts: 3,
                expect: &[Line("one"), Line("two"), Line("three, a longer line than the FIFO")],
            },
            // The default image loads cpuhp, which describes the CPUs (it
            // brought CPU 1 online); a version swapped in does too; unloading
            // it gives `cpus` back to the loader, which says so; loading it
            // again brings the parked CPU back.
            step(
                b"cpus\r",
                &[Line("cpu 1 apic 1 online boot"), Line("cpu 3 apic 3 absent -"), Absent("loader's view")],
            ),
            // Swapped with CPU 1 offline: the new version must keep it parked
            // (the loader's view below says so).
            step(b"cpu offline 1\r", &[Absent("error")]),
            step(b"swap cpuhp 1.2.0\r", &[LineStarting("swapped (world stopped for ")]),
            step(
                b"cpus\r",
                &[Line("cpu 1 apic 1 offline boot"), Line("cpu 2 apic 2 absent -"), Absent("loader's view")],
            ),
            step(b"unload cpuhp\r", &[Line("unloaded cpuhp-plugin")]),
            step(
                b"cpus\r",
                &[
                    Line("cpu 0 apic 0 online boot"),
                    Line("cpu 1 apic 1 parked boot"),
                    Line("cpu 3 apic 3 offline hot-pluggable"),
                    LineStarting("(the loader's view: "),
                ],
            ),
            step(b"load cpuhp 1.2.0\r", &[Line("loaded cpuhp-plugin 1.2.0")]),
            step(b"cpus\r", &[Line("cpu 1 apic 1 online boot"), Absent("loader's view")]),
            step(b"log chatty\r", &[LineStarting("error: log: `chatty` is not valid here")]),
            step(b"mem extra\r", &[Line("error: usage: mem (see `help mem`)")]),
        ],
        finish: b"poweroff\r",
    },
    Scenario {
        name: "upload-session",
        about: "pushes counter-plugin files over COM2: a stateful swap, damaged, unsigned, foreign-signed, refused",
        image: "default",
        layout: RUN_LAYOUT,
        boot_commands: "",
        at_boot: &[Line("loaded counter-plugin 1.0.0"), Line("loaded consumer-plugin 1.0.0")],
        steps: &[
            step(b"consumer\r", &[Line("consumer: counter generation 1 says 1")]),
            upload(
                "2.0.0",
                Spoil::Intact,
                &[
                    Line("ok swapped counter-plugin to 2.0.0"),
                    LineStarting("plugin consumer-plugin 1.0.0 0x"),
                    LineStarting("plugin counter-plugin 2.0.0 0x"),
                    Contains(" plugins/counter-plugin-2.0.0.mvp"),
                    Line("end"),
                ],
            ),
            // Generation 2 steps by 2 from the 1 that generation 1 handed over;
            // without the state it would say 2.
            step(b"consumer\r", &[Line("consumer: counter generation 2 says 3")]),
            step(b"counter\r", &[Line("counter 3 (generation 2)")]),
            upload("2.0.0", Spoil::FlipPayloadByte, &[LineStarting("error: upload damaged in transit: CRC-32 ")]),
            step(b"plugins\r", STILL_2),
            upload(
                "2.0.0",
                Spoil::StripSignature,
                &[LineStarting("error: upload refused: the plugin file has no modvisor signature trailer")],
            ),
            step(b"plugins\r", STILL_2),
            upload(
                "2.0.0",
                Spoil::ForeignKey,
                &[LineStarting("error: upload refused: the plugin's signature does not verify with this loader's key")],
            ),
            step(b"plugins\r", STILL_2),
            // 3.0.0 is signed and sound, so it is stored; the consumer's range
            // keeps it from running.
            upload(
                "3.0.0",
                Spoil::Intact,
                &[LineStarting(
                    "error: counter-plugin 3.0.0 is stored but: the swap would break consumers: \
                 consumer-plugin needs `counter >=1.0.0, <3.0.0`",
                )],
            ),
            step(b"plugins\r", STILL_2),
            step(b"counter\r", &[Line("counter 3 (generation 2)")]),
        ],
        finish: b"poweroff\r",
    },
];

/// `plugins` after a refused upload: 2.0.0 still runs, nothing replaced it.
const STILL_2: &[Expect] = &[
    LineStarting("counter-plugin 2.0.0 [active] "),
    LineStarting("consumer-plugin 1.0.0 [active] "),
    Absent("counter-plugin 1.0.0"),
    Absent("counter-plugin 3.0.0"),
];

impl Scenario {
    /// The image's command line with the boot commands added.
    pub fn cmdline(&self, image_cmdline: &str) -> String {
        if self.boot_commands.is_empty() {
            image_cmdline.to_string()
        } else {
            format!("{image_cmdline} sh=\"{}\"", self.boot_commands)
        }
    }

    /// Whether a step pushes over COM2 (so the boot needs it on a socket).
    pub fn uploads(&self) -> bool {
        self.steps.iter().any(|s| matches!(s.input, Input::Upload(_)))
    }
}

impl Upload {
    /// The file in the build's store (`images/out/`), as the initrd names it.
    pub fn store_path(&self) -> String {
        format!("{}/{}-{}.mvp", STORE_DIR, self.plugin, self.version)
    }

    /// How the COM2 log names this push.
    pub fn describe(&self) -> String {
        format!("{:?} {} ({:?})", self.command, self.store_path(), self.spoil)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::session::checks::shown;

    const UP: &Scenario = &SCENARIOS[1];

    #[test]
    fn the_scenarios_are_complete() {
        for s in SCENARIOS {
            assert!(crate::build::recipes::find(s.image).is_ok(), "{}", s.name);
            for st in s.steps {
                match st.input {
                    // Each typed step ends with the key that brings the
                    // prompt back.
                    Input::Keys(keys) => {
                        assert!(matches!(keys.last(), Some(b'\r' | 0x03)), "{}", shown(keys));
                        let enters = keys.iter().filter(|b| matches!(b, b'\r' | 0x03)).count();
                        assert_eq!(enters, st.prompts, "{}", shown(keys));
                    }
                    Input::Upload(u) => assert_eq!(st.prompts, 0, "{}", u.describe()),
                }
            }
            assert_eq!(s.finish, b"poweroff\r");
            let cl = s.cmdline("image=default");
            let parsed = loader_core::boot::cmdline::CommandLine::parse(&cl).unwrap();
            assert_eq!(
                parsed.boot_commands().count(),
                s.boot_commands.split(';').filter(|c| !c.trim().is_empty()).count()
            );
        }
        assert_eq!(SCENARIOS[0].cmdline("image=x"), format!("image=x sh=\"{}\"", SCENARIOS[0].boot_commands));
        assert!(!SCENARIOS[0].uploads());
        assert_eq!(UP.cmdline("image=default"), "image=default", "no empty sh=");
        assert!(UP.uploads());
    }
}
