//! Reassembling upload frames from COM2's bytes: the decisions of the
//! kernel's `plugin::upload`, on the frame format of `plugins::upload`.
//!
//! The kernel feeds the bytes its UART received ([`Receiver::next`]) and
//! says when none are waiting ([`Receiver::idle`]); it answers every
//! [`Output::Frame`] and [`Output::Refused`] on COM2, and logs refusals and
//! [`Output::Skipped`] on COM1. Every byte fed ends up in exactly one
//! output: a frame that is answered, or a count of skipped bytes.
//!
//! Two rules keep one bad frame from taking good ones with it:
//! - a frame that stops for [`Limits::timeout_us`] is refused, so nothing
//!   waits for bytes that will not come (a bare header, a sender that died
//!   mid-frame);
//! - a refused frame's bytes after its magic are searched for the start of
//!   another frame ([`could_start_frame`]), and decoding starts over there:
//!   a sender that was cut off and sent its frame again, or a header whose
//!   length swallowed the frames after it, loses only the broken frame.

use alloc::vec::Vec;
use core::fmt;
use core::mem::take;

use plugins::upload::{could_start_frame, Command, Decoder, Error, Event, CRC_LEN, HEADER_LEN, MAGIC};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest payload taken; a longer one is refused at its header,
    /// before any of it is collected.
    pub max_len: u32,
    /// How long a frame may pause before it is refused, in microseconds.
    pub timeout_us: u64,
}

/// One byte from the UART.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Byte {
    pub value: u8,
    /// The UART reported lost or garbled bytes (overrun, parity or framing
    /// error) since the byte before this one, or on this one.
    pub damaged: bool,
}

impl Byte {
    pub const fn clean(value: u8) -> Byte {
        Byte { value, damaged: false }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// A frame whose CRC matched. `number` counts answered frames from 1,
    /// so that the COM1 log and the host name the same frame.
    Frame { number: u32, command: Command, payload: Vec<u8> },
    /// A frame refused; it took `bytes` bytes of the stream (from its magic
    /// up to where the next frame begins). Answered `error: ` and the
    /// [`plugins::upload::Refusal`].
    Refused { number: u32, bytes: usize, error: Error },
    /// `bytes` bytes that were no part of a frame were dropped: noise
    /// before a magic, or the start of a magic that went nowhere. `lost`:
    /// the UART also lost bytes there. Nobody asked, so nobody is answered.
    Skipped { bytes: usize, lost: bool },
}

pub struct Receiver {
    limits: Limits,
    decoder: Decoder,
    /// The current frame's bytes, from its magic on.
    frame: Vec<u8>,
    /// A refused frame's bytes from where another frame may begin
    /// (`replay[replay_at..]`), decoded again before new input.
    replay: Vec<u8>,
    replay_at: usize,
    /// The byte that came with a loss report, decoded after the report.
    pending: Option<u8>,
    /// Bytes fed while hunting for a magic, since the last output.
    hunted: usize,
    /// When bytes were last fed, in the caller's microseconds.
    last_us: u64,
    answered: u32,
}

impl Receiver {
    /// A receiver whose clock starts at `now_us`.
    pub fn new(limits: Limits, now_us: u64) -> Receiver {
        Receiver {
            limits,
            decoder: Decoder::new(limits.max_len),
            frame: Vec::new(),
            replay: Vec::new(),
            replay_at: 0,
            pending: None,
            hunted: 0,
            last_us: now_us,
            answered: 0,
        }
    }

    /// Decodes bytes until something is to be answered or logged: first
    /// those kept from a refused frame, then `input`'s. `None` once both
    /// are exhausted. `now` is read once, after the last byte.
    pub fn next(&mut self, input: &mut impl FnMut() -> Option<Byte>, now: impl Fn() -> u64) -> Option<Output> {
        let mut fed = false;
        let out = loop {
            let Some(byte) = self.take_kept().map(Byte::clean).or_else(&mut *input) else {
                break None;
            };
            fed = true;
            if let Some(out) = self.feed(byte) {
                break Some(out);
            }
        };
        if fed {
            self.last_us = now();
        }
        out
    }

    /// Restarts the frame clock: the time since the last byte was the
    /// loader's (reception held), not a pause of the sender.
    pub fn restart_clock(&mut self, now_us: u64) {
        self.last_us = now_us;
    }

    /// Called when no byte is waiting: refuses a frame that has paused for
    /// the timeout, and reports noise that no magic followed.
    pub fn idle(&mut self, now_us: u64) -> Option<Output> {
        let waited = now_us.saturating_sub(self.last_us);
        if waited < self.limits.timeout_us || self.replay_at < self.replay.len() || self.pending.is_some() {
            return None;
        }
        if self.decoder.in_frame() {
            let got = u32::try_from(self.frame.len()).unwrap_or(u32::MAX);
            let idle_ms = u32::try_from(waited / 1000).unwrap_or(u32::MAX);
            return Some(self.refuse(Error::TimedOut { got, idle_ms }));
        }
        // Part of a magic that no rest followed is noise too.
        self.decoder.reset();
        (self.hunted > 0).then(|| Output::Skipped { bytes: take(&mut self.hunted), lost: false })
    }

    fn take_kept(&mut self) -> Option<u8> {
        if let Some(&b) = self.replay.get(self.replay_at) {
            self.replay_at += 1;
            return Some(b);
        }
        if !self.replay.is_empty() {
            // Up to a frame's worth of heap: give it back now.
            self.replay = Vec::new();
            self.replay_at = 0;
        }
        self.pending.take()
    }

    fn feed(&mut self, byte: Byte) -> Option<Output> {
        if byte.damaged {
            // The byte itself may begin the next frame (the loss came
            // before it): decode it after the report.
            self.pending = Some(byte.value);
            if self.decoder.in_frame() {
                return Some(self.refuse(Error::Lost));
            }
            self.decoder.reset();
            return Some(Output::Skipped { bytes: take(&mut self.hunted), lost: true });
        }
        let hunting = !self.decoder.in_frame();
        if hunting {
            self.hunted += 1;
        } else {
            self.frame.push(byte.value);
        }
        match self.decoder.feed(byte.value) {
            Event::Pending if hunting && self.decoder.in_frame() => {
                self.frame.clear();
                self.frame.extend_from_slice(&MAGIC);
                let noise = take(&mut self.hunted) - MAGIC.len();
                (noise > 0).then_some(Output::Skipped { bytes: noise, lost: false })
            }
            Event::Pending | Event::Data(_) => None,
            // The whole frame's room at once: pushes never reallocate, and a
            // heap too full for it refuses the frame instead of panicking.
            Event::Start { len, .. } => match self.frame.try_reserve_exact(len as usize + CRC_LEN) {
                Ok(()) => None,
                Err(_) => Some(self.refuse(Error::NoRoom { len })),
            },
            Event::Done { command } => {
                let mut payload = take(&mut self.frame);
                let len = payload.len() - HEADER_LEN - CRC_LEN;
                payload.copy_within(HEADER_LEN..HEADER_LEN + len, 0);
                payload.truncate(len);
                self.answered += 1;
                Some(Output::Frame { number: self.answered, command, payload })
            }
            Event::Error(e) => Some(self.refuse(e)),
        }
    }

    /// Ends the current frame with `error`; keeps what may be the next
    /// frame's start for decoding.
    fn refuse(&mut self, error: Error) -> Output {
        self.decoder.reset();
        let frame = take(&mut self.frame);
        let restart = (1..frame.len()).find(|&at| could_start_frame(&frame[at..], self.limits.max_len));
        let mut error = error;
        let mut bytes = frame.len();
        if let Some(at) = restart {
            // A whole header inside a frame that failed its CRC or stopped:
            // the sender began again, which says more than the CRC or the
            // clock would.
            if matches!(error, Error::BadCrc { .. } | Error::TimedOut { .. })
                && frame.len() >= HEADER_LEN
                && frame[at..].starts_with(&MAGIC)
            {
                let len = u32::from_le_bytes([frame[5], frame[6], frame[7], frame[8]]);
                error = Error::CutOff { at: at as u32, len };
            }
            bytes = at;
            self.replay = frame;
            self.replay_at = at;
        }
        self.answered += 1;
        Output::Refused { number: self.answered, bytes, error }
    }
}

/// What the shell's `upload` command was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Show the figures.
    Status,
    /// Stop decoding COM2: bytes wait in the ring, then in the UART, then
    /// in the sender, which the UART holds back. For debugging and for
    /// testing that holding back loses nothing.
    Hold,
    /// Decode again.
    Release,
}

pub const REQUEST_USAGE: &str = "usage: upload [hold|release]";

impl Request {
    pub fn parse(args: &str) -> Result<Request, &'static str> {
        let mut words = args.split_whitespace();
        match (words.next(), words.next()) {
            (None, _) => Ok(Request::Status),
            (Some("hold"), None) => Ok(Request::Hold),
            (Some("release"), None) => Ok(Request::Release),
            _ => Err(REQUEST_USAGE),
        }
    }
}

/// COM2's figures since boot, as `upload` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames answered `ok`.
    pub taken: u32,
    /// Frames answered `error: ...`.
    pub refused: u32,
    /// Bytes that were no part of a frame.
    pub skipped: u64,
    /// Bytes waiting in the receive ring now, its size, and the most it held.
    pub ring_used: usize,
    pub ring_size: usize,
    pub ring_high: usize,
    /// How often the ring was full, so that the UART held the sender back.
    pub held_back: u64,
    /// Whether `upload hold` is in force.
    pub holding: bool,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self;
        writeln!(
            f,
            "frames: {} answered, {} taken, {} refused; {} bytes outside frames skipped",
            s.taken + s.refused,
            s.taken,
            s.refused,
            s.skipped
        )?;
        writeln!(
            f,
            "receive ring: {} of {} bytes waiting, at most {}; full {} times, the sender held back meanwhile",
            s.ring_used, s.ring_size, s.ring_high, s.held_back
        )?;
        if s.holding {
            write!(f, "decoding: held (`upload release` resumes)")
        } else {
            write!(f, "decoding: on")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use plugins::upload::{header, trailer};

    const MAX: u32 = 1 << 20;
    const TIMEOUT_US: u64 = 2_000_000;
    const LIMITS: Limits = Limits { max_len: MAX, timeout_us: TIMEOUT_US };

    fn frame(command: Command, payload: &[u8]) -> Vec<u8> {
        let mut f = header(command, payload.len() as u32).to_vec();
        f.extend_from_slice(payload);
        f.extend_from_slice(&trailer(payload));
        f
    }

    /// A payload like a plugin file: no magic inside.
    fn payload(seed: u32, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                // Never 'M', so no magic can appear by chance.
                match x as u8 {
                    b'M' => b'm',
                    b => b,
                }
            })
            .collect()
    }

    /// Feeds `bytes` at time `at`; every output until the input runs out.
    fn run(rx: &mut Receiver, bytes: &[u8], at: u64) -> Vec<Output> {
        let mut input = bytes.iter().map(|&b| Byte::clean(b));
        let mut source = || input.next();
        core::iter::from_fn(|| rx.next(&mut source, || at)).collect()
    }

    /// What went on after the input: idle at `at`, then whatever that
    /// refusal kept for decoding again.
    fn idle(rx: &mut Receiver, at: u64) -> Vec<Output> {
        let mut out = Vec::new();
        while let Some(o) = rx.idle(at) {
            out.push(o);
            out.extend(run(rx, &[], at));
        }
        out
    }

    fn stored(number: u32, command: Command, payload: &[u8]) -> Output {
        Output::Frame { number, command, payload: payload.to_vec() }
    }

    #[test]
    fn a_burst_of_many_frames_decodes_in_order() {
        let payloads: Vec<Vec<u8>> = (0..10).map(|i| payload(i, 40_000 + i as usize * 331)).collect();
        let mut burst = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            let command = if i % 3 == 0 { Command::StoreAndSwap } else { Command::Store };
            burst.extend(frame(command, p));
        }
        let mut rx = Receiver::new(LIMITS, 0);
        let out = run(&mut rx, &burst, 0);
        assert_eq!(out.len(), 10);
        for (i, (o, p)) in out.iter().zip(&payloads).enumerate() {
            let command = if i % 3 == 0 { Command::StoreAndSwap } else { Command::Store };
            assert_eq!(*o, stored(i as u32 + 1, command, p), "frame {}", i + 1);
        }
        assert!(idle(&mut rx, TIMEOUT_US * 10).is_empty(), "nothing left over");
    }

    #[test]
    fn a_cut_off_frame_followed_by_the_whole_one_loses_only_the_cut_off() {
        let p = payload(1, 40_000);
        let whole = frame(Command::StoreAndSwap, &p);
        let mut bytes = whole[..1009].to_vec();
        bytes.extend_from_slice(&whole);
        let mut rx = Receiver::new(LIMITS, 0);
        let out = run(&mut rx, &bytes, 0);
        let cut = Error::CutOff { at: 1009, len: 40_000 };
        assert_eq!(out, [Output::Refused { number: 1, bytes: 1009, error: cut }, stored(2, Command::StoreAndSwap, &p)]);
        // A cut inside the header: the next magic lands in the length.
        let mut rx = Receiver::new(LIMITS, 0);
        let mut bytes = whole[..6].to_vec();
        bytes.extend_from_slice(&whole);
        let out = run(&mut rx, &bytes, 0);
        assert!(matches!(out[0], Output::Refused { number: 1, bytes: 6, error: Error::TooLong { .. } }), "{out:?}");
        assert_eq!(out[1..], [stored(2, Command::StoreAndSwap, &p)]);
    }

    #[test]
    fn a_header_over_the_limit_is_refused_before_its_payload() {
        let frames: Vec<Vec<u8>> = (0..5).map(|i| payload(10 + i, 3000)).collect();
        let mut bytes = header(Command::Store, MAX + 1).to_vec();
        for p in &frames {
            bytes.extend(frame(Command::Store, p));
        }
        let mut rx = Receiver::new(LIMITS, 0);
        let out = run(&mut rx, &bytes, 0);
        let too_long = Error::TooLong { len: MAX + 1, max: MAX };
        assert_eq!(out[0], Output::Refused { number: 1, bytes: HEADER_LEN, error: too_long });
        for (i, p) in frames.iter().enumerate() {
            assert_eq!(out[i + 1], stored(i as u32 + 2, Command::Store, p));
        }
        assert_eq!(out.len(), 6);
    }

    #[test]
    fn a_header_at_the_limit_that_swallows_frames_times_out_and_gives_them_back() {
        let frames: Vec<Vec<u8>> = (0..5).map(|i| payload(20 + i, 40_000)).collect();
        let mut bytes = header(Command::Store, MAX).to_vec();
        for p in &frames {
            bytes.extend(frame(Command::StoreAndSwap, p));
        }
        let mut rx = Receiver::new(LIMITS, 0);
        assert!(run(&mut rx, &bytes, 1_000).is_empty(), "all taken as the first frame's payload");
        assert!(idle(&mut rx, 1_000 + TIMEOUT_US - 1).is_empty(), "not yet");
        let out = idle(&mut rx, 1_000 + TIMEOUT_US);
        let cut = Error::CutOff { at: HEADER_LEN as u32, len: MAX };
        assert_eq!(out[0], Output::Refused { number: 1, bytes: HEADER_LEN, error: cut });
        for (i, p) in frames.iter().enumerate() {
            assert_eq!(out[i + 1], stored(i as u32 + 2, Command::StoreAndSwap, p));
        }
        assert_eq!(out.len(), 6);
    }

    #[test]
    fn garbage_before_a_magic_is_counted_and_skipped() {
        let p = payload(3, 100);
        let noise = b"line noise\r\nMV MMVU VUP\x00\xffM";
        let mut bytes = noise.to_vec();
        bytes.extend(frame(Command::Store, &p));
        let mut rx = Receiver::new(LIMITS, 0);
        let out = run(&mut rx, &bytes, 0);
        assert_eq!(out, [Output::Skipped { bytes: noise.len(), lost: false }, stored(1, Command::Store, &p)]);
        // Noise that no magic follows is reported once the line is quiet.
        assert!(run(&mut rx, b"xyzMV", 5).is_empty());
        assert!(idle(&mut rx, 5 + TIMEOUT_US - 1).is_empty());
        assert_eq!(idle(&mut rx, 5 + TIMEOUT_US), [Output::Skipped { bytes: 5, lost: false }]);
        assert!(idle(&mut rx, 5 + 2 * TIMEOUT_US).is_empty(), "reported once");
    }

    #[test]
    fn a_frame_that_stops_times_out_and_the_next_one_decodes() {
        let p = payload(4, 5000);
        let f = frame(Command::Store, &p);
        let mut rx = Receiver::new(LIMITS, 0);
        assert!(run(&mut rx, &f[..500], 100).is_empty());
        assert!(rx.idle(100 + TIMEOUT_US - 1).is_none());
        let timed_out = Error::TimedOut { got: 500, idle_ms: 2000 };
        assert_eq!(idle(&mut rx, 100 + TIMEOUT_US), [Output::Refused { number: 1, bytes: 500, error: timed_out }]);
        assert!(idle(&mut rx, 100 + 5 * TIMEOUT_US).is_empty(), "refused once");
        assert_eq!(run(&mut rx, &f, 200 + 5 * TIMEOUT_US), [stored(2, Command::Store, &p)]);
        // Time spent decoding is no pause: the clock is read after the bytes.
        let mut rx = Receiver::new(LIMITS, 0);
        let mut input = f[..100].iter().map(|&b| Byte::clean(b));
        assert!(rx.next(&mut || input.next(), || 3 * TIMEOUT_US).is_none());
        assert!(rx.idle(3 * TIMEOUT_US + 1).is_none());
    }

    #[test]
    fn bytes_lost_by_the_uart_refuse_the_frame_and_keep_the_next() {
        let (p, q) = (payload(5, 2000), payload(6, 300));
        let (f, g) = (frame(Command::Store, &p), frame(Command::Store, &q));
        // The second half of `f` was lost; the loss is flagged on `g`'s first byte.
        let mut input: Vec<Byte> = f[..1000].iter().map(|&b| Byte::clean(b)).collect();
        input.extend(g.iter().map(|&b| Byte::clean(b)));
        input[1000].damaged = true;
        let mut rx = Receiver::new(LIMITS, 0);
        let mut it = input.into_iter();
        let mut source = || it.next();
        let out: Vec<Output> = core::iter::from_fn(|| rx.next(&mut source, || 0)).collect();
        assert_eq!(
            out,
            [Output::Refused { number: 1, bytes: 1000, error: Error::Lost }, stored(2, Command::Store, &q)]
        );
        // Outside a frame there is no frame to answer; the loss is logged.
        let mut input = vec![Byte::clean(b'x'), Byte { value: b'y', damaged: true }];
        let mut it = input.drain(..);
        let mut source = || it.next();
        assert_eq!(rx.next(&mut source, || 0), Some(Output::Skipped { bytes: 1, lost: true }));
        assert_eq!(rx.next(&mut source, || 0), None);
        assert_eq!(idle(&mut rx, TIMEOUT_US), [Output::Skipped { bytes: 1, lost: false }]);
    }

    #[test]
    fn a_damaged_frame_is_refused_and_the_next_decodes() {
        let (p, q) = (payload(7, 900), payload(8, 900));
        let mut bad = frame(Command::Store, &p);
        bad[HEADER_LEN + 10] ^= 0x40;
        bad.extend(frame(Command::StoreAndSwap, &q));
        let mut rx = Receiver::new(LIMITS, 0);
        let out = run(&mut rx, &bad, 0);
        assert!(matches!(out[0], Output::Refused { number: 1, bytes: 913, error: Error::BadCrc { .. } }), "{out:?}");
        assert_eq!(out[1..], [stored(2, Command::StoreAndSwap, &q)]);
    }

    #[test]
    fn a_hold_is_no_pause_of_the_sender() {
        let f = frame(Command::Store, &payload(9, 100));
        let mut rx = Receiver::new(LIMITS, 0);
        assert!(run(&mut rx, &f[..50], 0).is_empty());
        rx.restart_clock(10 * TIMEOUT_US);
        assert!(idle(&mut rx, 10 * TIMEOUT_US + 1).is_empty());
        assert!(matches!(run(&mut rx, &f[50..], 10 * TIMEOUT_US)[..], [Output::Frame { number: 1, .. }]));
    }

    #[test]
    fn upload_requests_and_figures() {
        assert_eq!(Request::parse(""), Ok(Request::Status));
        assert_eq!(Request::parse(" hold "), Ok(Request::Hold));
        assert_eq!(Request::parse("release"), Ok(Request::Release));
        assert_eq!(Request::parse("hold on"), Err(REQUEST_USAGE));
        assert_eq!(Request::parse("stop"), Err(REQUEST_USAGE));
        let s = Stats {
            taken: 3,
            refused: 2,
            skipped: 41,
            ring_used: 10,
            ring_size: 65535,
            ring_high: 65535,
            held_back: 4,
            holding: true,
        };
        assert_eq!(
            alloc::format!("{s}"),
            "frames: 5 answered, 3 taken, 2 refused; 41 bytes outside frames skipped\n\
             receive ring: 10 of 65535 bytes waiting, at most 65535; full 4 times, the sender held back meanwhile\n\
             decoding: held (`upload release` resumes)"
        );
        assert!(alloc::format!("{}", Stats::default()).ends_with("decoding: on"));
    }

    /// A small deterministic generator for the mixed streams below.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) % n as u64) as usize
        }
    }

    #[test]
    fn mixed_streams_answer_every_frame_and_account_for_every_byte() {
        for seed in 0..200u64 {
            let mut rng = Rng(seed);
            let (mut bytes, mut answers) = (Vec::new(), Vec::new());
            // What each answer must be: a payload stored, or a refusal.
            for i in 0..12 {
                let p = payload(seed as u32 * 100 + i, 1 + rng.below(3000));
                let f = frame(Command::Store, &p);
                match rng.below(5) {
                    0 => bytes.extend(b"noise \x00\xff MV".iter().take(1 + rng.below(12))),
                    1 => {
                        // Cut off after its magic: refused when what follows shows it.
                        bytes.extend_from_slice(&f[..MAGIC.len() + rng.below(f.len() - MAGIC.len())]);
                        answers.push(None);
                    }
                    2 => {
                        let mut bad = f.clone();
                        let at = HEADER_LEN + rng.below(p.len());
                        bad[at] = bad[at].wrapping_add(1 + rng.below(200) as u8) | 1;
                        if bad[at] == b'M' {
                            bad[at] = b'N';
                        }
                        bytes.extend(bad);
                        answers.push(None);
                    }
                    _ => {}
                }
                bytes.extend(f);
                answers.push(Some(p));
            }
            let mut rx = Receiver::new(LIMITS, 0);
            let mut out = run(&mut rx, &bytes, 0);
            out.extend(idle(&mut rx, TIMEOUT_US));
            let mut accounted = 0;
            let mut answered = Vec::new();
            for o in out {
                match o {
                    Output::Frame { number, payload, .. } => {
                        accounted += payload.len() + HEADER_LEN + CRC_LEN;
                        answered.push((number, Some(payload)));
                    }
                    Output::Refused { number, bytes, .. } => {
                        accounted += bytes;
                        answered.push((number, None));
                    }
                    Output::Skipped { bytes, .. } => accounted += bytes,
                }
            }
            assert_eq!(accounted, bytes.len(), "seed {seed}: every byte in exactly one output");
            let numbers: Vec<u32> = answered.iter().map(|a| a.0).collect();
            assert_eq!(numbers, (1..=answers.len() as u32).collect::<Vec<_>>(), "seed {seed}");
            let got: Vec<Option<Vec<u8>>> = answered.into_iter().map(|a| a.1).collect();
            assert_eq!(got, answers, "seed {seed}");
        }
    }
}
