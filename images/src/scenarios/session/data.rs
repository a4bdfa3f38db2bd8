//! The shell sessions `runner test` plays, as data.

use plugins::upload::{Command as UploadCommand, MAX_PAYLOAD};

use crate::build::plugin_build::STORE_DIR;
use crate::machine::layout::{Machine, QemuLayout, RUN_LAYOUT};

/// One thing a reply must (or must not) show. Lines are split at `\r\n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Some line is exactly this.
    Line(&'static str),
    /// Some line starts with this.
    LineStarting(&'static str),
    /// Some line starts with the first text and ends with the second.
    LineWith(&'static str, &'static str),
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
    /// (`ok ...`/`plugin ...`/`end`, or `error: ...`) answers it. Sent
    /// again while the loader asks (`error: resend: ...`), unless its spoil
    /// would only be sent again unchanged.
    Upload(Upload),
    /// Pieces written to COM2 in one go, on a thread of their own, without
    /// waiting for any answer; the steps after it run while it writes.
    Write(&'static [Piece]),
    /// The answers to the last [`Input::Write`]: every piece but noise is
    /// answered, in order, each answer within [`ANSWER_DEADLINE`] of the
    /// one before (the first of this step's start).
    Answers,
    /// Keys typed again every [`UNTIL_EVERY`] until the answer contains
    /// the text (at most the step timeout); the last answer is checked.
    Until(&'static [u8], &'static str),
}

/// How often an [`Input::Until`] step types its keys.
pub const UNTIL_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// How long each answer of a burst may take after the one before (the
/// first after the burst began): a frame timeout of the loader (2 s) plus
/// the work on what it swallowed, with room for a busy host.
pub const ANSWER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// One piece of a burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// An upload's frame, spoiled as it says; answered once.
    Frame(Upload, &'static [Expect]),
    /// Bytes that are no frame; never answered.
    Noise(&'static [u8]),
    /// The first bytes of an upload's frame, and nothing more of it;
    /// answered once (with a refusal).
    Cut(Upload, usize, &'static [Expect]),
    /// A bare header announcing this many payload bytes; answered once.
    Header(UploadCommand, u32, &'static [Expect]),
}

impl Piece {
    /// What its answer must show; `None` for a piece that gets none.
    pub fn expect(&self) -> Option<&'static [Expect]> {
        match *self {
            Piece::Frame(_, e) | Piece::Cut(_, _, e) | Piece::Header(_, _, e) => Some(e),
            Piece::Noise(_) => None,
        }
    }

    /// How problem reports and the COM2 log name it.
    pub fn describe(&self) -> String {
        match self {
            Piece::Frame(u, _) => u.describe(),
            Piece::Noise(n) => format!("{} bytes of noise", n.len()),
            Piece::Cut(u, n, _) => format!("the first {n} bytes of {}", u.describe()),
            Piece::Header(c, len, _) => format!("a bare {c:?} header announcing {len} bytes"),
        }
    }
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
    /// The command byte is 7, which means nothing.
    UnknownCommand,
    /// Damaged like [`Spoil::FlipPayloadByte`] the first time; the client
    /// sends the intact frame when the loader asks for it again.
    DamagedOnce,
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

/// A store file as a burst or an upload carries it.
const fn file(plugin: &'static str, version: &'static str, command: UploadCommand, spoil: Spoil) -> Upload {
    Upload { plugin, version, command, spoil }
}

const fn store(plugin: &'static str, version: &'static str, spoil: Spoil) -> Upload {
    file(plugin, version, UploadCommand::Store, spoil)
}

/// A test guest (`guests/<name>` of the build) pushed as a guest file of
/// that name.
const fn guest_upload(name: &'static str, expect: &'static [Expect]) -> Step {
    Step {
        input: Input::Upload(Upload {
            plugin: name,
            version: "",
            command: UploadCommand::GuestFile,
            spoil: Spoil::Intact,
        }),
        prompts: 0,
        expect,
    }
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
            // QEMU has no VMX: the `vm` command's plugin could not load, and
            // the error says why and where guests run.
            step(
                b"vm list\r",
                &[
                    Line("error: unknown command `vm`; type `help`"),
                    Line(
                        "  (not loaded at boot: vmx-plugin needs vmx, which this CPU does not have: VMs and guests \
                         need VMX; boot this image in Bochs (`make bochs`))",
                    ),
                ],
            ),
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
        about: "pushes counter-plugin files over COM2: a stateful swap, damaged, unsigned, foreign-signed, refused; then a guest file",
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
            upload("2.0.0", Spoil::FlipPayloadByte, &[LineStarting("error: resend: upload damaged in transit: CRC-32 ")]),
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
            // A guest program: kept unsigned, for VMs to load as uploads/NAME.
            guest_upload("hello.elf", &[LineStarting("ok stored guest file uploads/hello.elf ("), Line("end")]),
            step(b"store\r", &[LineStarting("guest file uploads/hello.elf ("), Contains("uploaded, not signed")]),
        ],
        finish: b"poweroff\r",
    },
    Scenario {
        name: "upload-burst",
        about: "writes frames to COM2 in bursts: ten mixed, cut off, over the limit, a header that swallows frames, one that stops",
        image: "upload",
        layout: BURST_LAYOUT,
        boot_commands: "",
        at_boot: &[Line("loaded counter-plugin 1.0.0"), Line("loaded consumer-plugin 1.0.0")],
        steps: &[
            // Ten frames, sound and damaged, in one write of half a
            // megabyte: eight times the loader's receive ring.
            // Ten frames, sound and damaged, in one write of half a
            // megabyte, while the shell holds COM2: the ring fills, the
            // UART holds the writer back, and nothing may be lost.
            step(b"upload hold\r", &[LineStarting("holding COM2: ")]),
            write(TEN_FRAMES),
            Step {
                input: Input::Until(b"upload\r", "receive ring: 65535 of 65535 bytes waiting"),
                prompts: 1,
                expect: &[
                    LineStarting("frames: 0 answered, "),
                    LineStarting("receive ring: 65535 of 65535 bytes waiting, at most 65535; full "),
                    Absent("full 0 times"),
                    Line("decoding: held (`upload release` resumes)"),
                ],
            },
            step(b"upload release\r", &[Line("released COM2: decoding what waited")]),
            ANSWERS,
            step(
                b"upload\r",
                &[LineStarting("frames: 10 answered, 5 taken, 5 refused; "), Absent("full 0 times"), Line("decoding: on")],
            ),
            step(
                b"store\r",
                &[
                    LineWith("counter-plugin 2.0.0 (", " bytes, uploaded)"),
                    LineWith("counter-plugin 3.0.0 (", " bytes, uploaded)"),
                    LineWith("hprecorder-plugin 1.0.0 (", " bytes, uploaded)"),
                    LineWith("cpuhp-plugin 1.3.0 (", " bytes, uploaded)"),
                    LineWith("consumer-plugin 2.0.0 (", " bytes, uploaded)"),
                    // Refused: the initrd's files stay.
                    LineWith("counter-plugin 1.0.0 (", " bytes, initrd)"),
                    LineWith("cpuidcheck-plugin 1.0.0 (", " bytes, initrd)"),
                ],
            ),
            step(b"plugins\r", &[LineStarting("counter-plugin 2.0.0 [active] "), LineStarting("consumer-plugin 1.0.0 [active] ")]),
            // The first 1,009 bytes of a frame, then the whole frame.
            write(&[
                Piece::Cut(
                    store("consumer-plugin", "1.0.0", Spoil::Intact),
                    1009,
                    &[LineStarting(
                        "error: resend: upload cut off: a new frame began 1009 bytes into this one, whose header announced ",
                    )],
                ),
                Piece::Frame(store("consumer-plugin", "1.0.0", Spoil::Intact), &[Line("ok stored consumer-plugin 1.0.0")]),
            ]),
            ANSWERS,
            // Over the limit: refused at the header, before any payload.
            write(&[
                Piece::Header(UploadCommand::Store, MAX_PAYLOAD + 1, &[Line("error: upload of 4194305 bytes exceeds the limit of 4194304 bytes")]),
                Piece::Frame(store("vmx-plugin", "1.0.0", Spoil::Intact), &[Line("ok stored vmx-plugin 1.0.0")]),
                Piece::Frame(store("cpuhp-plugin", "1.2.0", Spoil::Intact), &[Line("ok stored cpuhp-plugin 1.2.0")]),
            ]),
            ANSWERS,
            // At the limit: the header takes the next five frames as its
            // payload and waits for the rest; the frame timeout refuses it
            // and the five are decoded from where the first began.
            write(&[
                Piece::Header(
                    UploadCommand::Store,
                    MAX_PAYLOAD,
                    &[Line(
                        "error: resend: upload cut off: a new frame began 9 bytes into this one, \
                         whose header announced 4194304 payload bytes",
                    )],
                ),
                Piece::Frame(store("counter-plugin", "1.0.0", Spoil::Intact), &[Line("ok stored counter-plugin 1.0.0")]),
                Piece::Frame(store("cpuidcheck-plugin", "1.0.0", Spoil::Intact), &[Line("ok stored cpuidcheck-plugin 1.0.0")]),
                Piece::Frame(store("vmx-plugin", "1.1.0", Spoil::Intact), &[Line("ok stored vmx-plugin 1.1.0")]),
                Piece::Frame(store("hprecorder-plugin", "1.0.0", Spoil::Intact), &[Line("ok stored hprecorder-plugin 1.0.0")]),
                Piece::Frame(store("counter-plugin", "3.0.0", Spoil::Intact), &[Line("ok stored counter-plugin 3.0.0")]),
            ]),
            ANSWERS,
            // A frame that stops and nothing after it: only the clock ends it.
            write(&[Piece::Cut(
                store("counter-plugin", "2.0.0", Spoil::Intact),
                5000,
                &[LineStarting("error: resend: upload timed out: 5000 bytes of a frame came, then nothing for ")],
            )]),
            ANSWERS,
            // Damaged on the way once: the client sends it again when asked.
            Step {
                input: Input::Upload(store("counter-plugin", "2.0.0", Spoil::DamagedOnce)),
                prompts: 0,
                expect: STORED_COUNTER_2,
            },
            step(
                b"store\r",
                &[
                    LineWith("consumer-plugin 1.0.0 (", " bytes, uploaded)"),
                    LineWith("vmx-plugin 1.0.0 (", " bytes, uploaded)"),
                    LineWith("vmx-plugin 1.1.0 (", " bytes, uploaded)"),
                    LineWith("cpuhp-plugin 1.2.0 (", " bytes, uploaded)"),
                    LineWith("counter-plugin 1.0.0 (", " bytes, uploaded)"),
                    LineWith("cpuidcheck-plugin 1.0.0 (", " bytes, uploaded)"),
                ],
            ),
            step(b"counter\r", &[LineStarting("counter "), Contains("(generation 2)")]),
        ],
        finish: b"poweroff\r",
    },
];

/// `upload-burst`'s machine: pc, two CPUs, 128 MiB (a 16 MiB heap that
/// must hold a 4 MiB frame and what it swallowed).
pub const BURST_LAYOUT: QemuLayout = QemuLayout::new(Machine::Pc, 2, 2, 128);

const fn write(pieces: &'static [Piece]) -> Step {
    Step { input: Input::Write(pieces), prompts: 0, expect: &[] }
}

const ANSWERS: Step = Step { input: Input::Answers, prompts: 0, expect: &[] };

/// The ten frames of the first burst, sound and damaged, noise among them.
const TEN_FRAMES: &[Piece] = &[
    Piece::Frame(store("counter-plugin", "2.0.0", Spoil::Intact), STORED_COUNTER_2),
    Piece::Frame(store("counter-plugin", "3.0.0", Spoil::FlipPayloadByte), DAMAGED),
    Piece::Noise(b"line noise before a magic: MV MVU \r\n\x00\xff"),
    Piece::Frame(store("hprecorder-plugin", "1.0.0", Spoil::Intact), &[Line("ok stored hprecorder-plugin 1.0.0")]),
    Piece::Frame(store("consumer-plugin", "2.0.0", Spoil::StripSignature), UNSIGNED),
    Piece::Frame(
        file("counter-plugin", "2.0.0", UploadCommand::StoreAndSwap, Spoil::Intact),
        &[Line("ok swapped counter-plugin to 2.0.0"), LineStarting("plugin counter-plugin 2.0.0 0x"), Line("end")],
    ),
    Piece::Frame(store("cpuidcheck-plugin", "1.0.0", Spoil::ForeignKey), FOREIGN),
    Piece::Frame(
        store("counter-plugin", "1.0.0", Spoil::UnknownCommand),
        &[Line("error: upload command 7 is unknown (1 = store, 2 = store and swap, 3 = guest file)")],
    ),
    Piece::Frame(store("cpuhp-plugin", "1.3.0", Spoil::Intact), &[Line("ok stored cpuhp-plugin 1.3.0")]),
    Piece::Frame(
        file("counter-plugin", "3.0.0", UploadCommand::StoreAndSwap, Spoil::Intact),
        &[LineStarting("error: counter-plugin 3.0.0 is stored but: the swap would break consumers")],
    ),
    Piece::Frame(store("consumer-plugin", "2.0.0", Spoil::Intact), &[Line("ok stored consumer-plugin 2.0.0")]),
];

const STORED_COUNTER_2: &[Expect] =
    &[Line("ok stored counter-plugin 2.0.0"), LineStarting("plugin counter-plugin "), Line("end")];
const DAMAGED: &[Expect] = &[LineStarting("error: resend: upload damaged in transit: CRC-32 ")];
const UNSIGNED: &[Expect] = &[LineStarting("error: upload refused: the plugin file has no modvisor signature trailer")];
const FOREIGN: &[Expect] =
    &[LineStarting("error: upload refused: the plugin's signature does not verify with this loader's key")];

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
        self.steps.iter().any(|s| matches!(s.input, Input::Upload(_) | Input::Write(_)))
    }
}

impl Upload {
    /// The file in the build's output (`images/out/`), as the initrd names
    /// it: a plugin's in the store, a guest file's under `guests/`.
    pub fn store_path(&self) -> String {
        match self.command {
            UploadCommand::GuestFile => format!("guests/{}", self.plugin),
            _ => format!("{}/{}-{}.mvp", STORE_DIR, self.plugin, self.version),
        }
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
                    Input::Until(keys, _) => {
                        let enters = keys.iter().filter(|b| matches!(b, b'\r' | 0x03)).count();
                        assert!(enters == 1 && keys.last() == Some(&b'\r') && st.prompts == 1, "{}", shown(keys));
                    }
                    // A burst's frames are never sent again, so a spoil
                    // that counts on it would prove nothing there.
                    Input::Write(pieces) => {
                        assert_eq!(st.prompts, 0);
                        assert!(pieces.iter().any(|p| p.expect().is_some()), "a burst with nothing to answer");
                        for p in pieces {
                            if let Piece::Frame(u, _) | Piece::Cut(u, _, _) = p {
                                assert_ne!(u.spoil, Spoil::DamagedOnce, "{}", p.describe());
                            }
                        }
                    }
                    Input::Answers => assert_eq!(st.prompts, 0),
                }
            }
            // Every write is answered before anything else goes to COM2.
            let com2: Vec<&Input> = s
                .steps
                .iter()
                .map(|st| &st.input)
                .filter(|i| matches!(i, Input::Upload(_) | Input::Write(_) | Input::Answers))
                .collect();
            for (k, i) in com2.iter().enumerate() {
                let before = k.checked_sub(1).map(|b| com2[b]);
                match i {
                    Input::Answers => {
                        assert!(matches!(before, Some(Input::Write(_))), "{}: answers to no write", s.name)
                    }
                    _ => assert!(!matches!(before, Some(Input::Write(_))), "{}: a write without its answers", s.name),
                }
            }
            assert!(!matches!(com2.last(), Some(Input::Write(_))), "{}: the last write is never answered", s.name);
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
        let burst = SCENARIOS.iter().find(|s| s.name == "upload-burst").unwrap();
        assert!(burst.uploads());
        // The acceptance of the COM2 work: ten frames in one burst, a cut-off
        // frame before a whole one, a header over the limit before frames.
        let bursts: Vec<&[Piece]> = burst
            .steps
            .iter()
            .filter_map(|s| match s.input {
                Input::Write(p) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(bursts[0].iter().filter(|p| matches!(p, Piece::Frame(..))).count(), 10);
        assert!(matches!(bursts[1], [Piece::Cut(a, _, _), Piece::Frame(b, _)] if a == b));
        assert!(matches!(bursts[2][0], Piece::Header(_, len, _) if len > MAX_PAYLOAD));
        assert!(bursts[2][1..].iter().all(|p| matches!(p, Piece::Frame(u, _) if u.spoil == Spoil::Intact)));
    }
}
