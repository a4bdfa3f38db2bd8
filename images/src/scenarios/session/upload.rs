//! The uploads a session pushes over COM2, and the frames that carry
//! them, damaged on purpose as a step asks.

use ed25519_compact::KeyPair;
use plugins::upload::{header, Command, HEADER_LEN};

use super::data::{Input, Piece, Scenario, Spoil, Upload};
use crate::build::{self, signing};
use crate::link::com2;
use crate::scenarios::Result;

/// The frame that carries `upload`'s `file` (signed with the tree's key),
/// spoiled; `foreign` signs for [`Spoil::ForeignKey`]. For
/// [`Spoil::DamagedOnce`] this is the damaged first attempt.
pub fn frame(upload: &Upload, file: &[u8], foreign: &KeyPair) -> Result<Vec<u8>> {
    let unsigned = || {
        plugins::sig::split(file)
            .map(|(body, _)| body)
            .map_err(|e| build::Error::Recipe(format!("{}: {e}", upload.store_path())))
    };
    let payload = match (upload.command, upload.spoil) {
        (Command::GuestFile, _) => {
            let (prefix, n) = plugins::upload::guest_prefix(upload.plugin)
                .ok_or_else(|| build::Error::Recipe(format!("{}: no guest file name", upload.describe())))?;
            [&prefix[..n], file].concat()
        }
        (_, Spoil::StripSignature) => unsigned()?.to_vec(),
        (_, Spoil::ForeignKey) => signing::sign(unsigned()?, foreign),
        _ => file.to_vec(),
    };
    let mut f = com2::frame(upload.command, &payload)?;
    match upload.spoil {
        // Inside the payload, so the header still parses and only the CRC
        // can tell.
        Spoil::FlipPayloadByte | Spoil::DamagedOnce => f[HEADER_LEN + payload.len() / 2] ^= 0x01,
        Spoil::UnknownCommand => f[plugins::upload::MAGIC.len()] = 7,
        Spoil::Intact | Spoil::StripSignature | Spoil::ForeignKey => {}
    }
    Ok(f)
}

/// What a COM2 step sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// An upload step's frame, and what to send when the loader asks for
    /// it again (`None`: never, the spoil would only repeat itself).
    Upload { first: Vec<u8>, again: Option<Vec<u8>> },
    /// A write step's bytes, and how many answers they ask for.
    Burst { bytes: Vec<u8>, answers: usize },
}

fn prepare_upload(u: &Upload, read: &impl Fn(&str) -> Result<Vec<u8>>, foreign: &KeyPair) -> Result<Prepared> {
    let file = read(&u.store_path())?;
    let first = frame(u, &file, foreign)?;
    let again = match u.spoil {
        Spoil::FlipPayloadByte => None,
        Spoil::DamagedOnce => Some(com2::frame(u.command, &file)?),
        _ => Some(first.clone()),
    };
    Ok(Prepared::Upload { first, again })
}

fn prepare_burst(pieces: &[Piece], read: &impl Fn(&str) -> Result<Vec<u8>>, foreign: &KeyPair) -> Result<Prepared> {
    let mut bytes = Vec::new();
    for p in pieces {
        match *p {
            Piece::Frame(u, _) => bytes.extend(frame(&u, &read(&u.store_path())?, foreign)?),
            Piece::Noise(n) => bytes.extend_from_slice(n),
            Piece::Cut(u, n, _) => {
                let f = frame(&u, &read(&u.store_path())?, foreign)?;
                let cut = f.get(..n).ok_or_else(|| {
                    build::Error::Recipe(format!("{}: cut at {n} bytes of a {}-byte frame", p.describe(), f.len()))
                })?;
                bytes.extend_from_slice(cut);
            }
            Piece::Header(command, len, _) => bytes.extend_from_slice(&header(command, len)),
        }
    }
    Ok(Prepared::Burst { bytes, answers: pieces.iter().filter(|p| p.expect().is_some()).count() })
}

/// What `scenario`'s COM2 steps (uploads and writes) send, in step order: `read` gives a store
/// file's bytes, and one throwaway key signs every foreign upload.
pub fn prepare(
    scenario: &Scenario,
    read: impl Fn(&str) -> Result<Vec<u8>>,
    foreign: &KeyPair,
) -> Result<Vec<Prepared>> {
    scenario
        .steps
        .iter()
        .filter_map(|s| match s.input {
            Input::Upload(u) => Some(prepare_upload(&u, &read, foreign)),
            Input::Write(pieces) => Some(prepare_burst(pieces, &read, foreign)),
            Input::Keys(_) | Input::Until(..) | Input::Answers => None,
        })
        .collect()
}

/// A key that no tree signs with: a fresh random one per run.
pub fn throwaway_key() -> Result<KeyPair> {
    Ok(KeyPair::from_seed(ed25519_compact::Seed::new(signing::random_seed()?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::session::data::SCENARIOS;
    use plugins::upload::Command as UploadCommand;

    const S: &Scenario = &SCENARIOS[0];
    const UP: &Scenario = &SCENARIOS[1];

    /// Decodes one frame as the loader does: the payload and the final event.
    fn decode(frame: &[u8]) -> (Vec<u8>, plugins::upload::Event) {
        use plugins::upload::{Decoder, Event};
        let mut d = Decoder::new(1 << 20);
        let mut payload = Vec::new();
        let mut last = Event::Pending;
        for &b in frame {
            match d.feed(b) {
                Event::Data(x) => payload.push(x),
                Event::Pending => {}
                e => last = e,
            }
        }
        (payload, last)
    }

    #[test]
    fn spoiled_uploads_fail_where_the_loader_checks() {
        use ed25519_compact::Seed;
        use loader_core::plugin::elf::{verify, Error as ElfError};
        use plugins::upload::{Error as FrameError, Event};
        let tree = KeyPair::from_seed(Seed::new([1; 32]));
        let foreign = KeyPair::from_seed(Seed::new([2; 32]));
        let file = signing::sign(b"\x7fELF plugin body", &tree);
        let up = |spoil| Upload { plugin: "p", version: "1.0.0", command: UploadCommand::StoreAndSwap, spoil };
        let done = Event::Done { command: UploadCommand::StoreAndSwap };

        let (payload, end) = decode(&frame(&up(Spoil::Intact), &file, &foreign).unwrap());
        assert_eq!((payload.as_slice(), end), (file.as_slice(), done));
        assert_eq!(verify(&payload, &tree.pk), Ok(&b"\x7fELF plugin body"[..]));

        let (_, end) = decode(&frame(&up(Spoil::FlipPayloadByte), &file, &foreign).unwrap());
        assert!(matches!(end, Event::Error(FrameError::BadCrc { .. })), "{end:?}");

        let (payload, end) = decode(&frame(&up(Spoil::StripSignature), &file, &foreign).unwrap());
        assert_eq!((payload.as_slice(), end), (&b"\x7fELF plugin body"[..], done));
        assert_eq!(verify(&payload, &tree.pk), Err(ElfError::Unsigned));

        let (payload, end) = decode(&frame(&up(Spoil::ForeignKey), &file, &foreign).unwrap());
        assert_eq!(end, done);
        assert_eq!(verify(&payload, &tree.pk), Err(ElfError::BadSignature));
        assert!(verify(&payload, &foreign.pk).is_ok());

        let (_, end) = decode(&frame(&up(Spoil::DamagedOnce), &file, &foreign).unwrap());
        assert!(matches!(end, Event::Error(FrameError::BadCrc { .. })), "{end:?}");
        let (_, end) = decode(&frame(&up(Spoil::UnknownCommand), &file, &foreign).unwrap());
        assert_eq!(end, Event::Error(FrameError::UnknownCommand(7)));

        let e = frame(&up(Spoil::StripSignature), b"never signed", &foreign).unwrap_err().to_string();
        assert!(e.contains("plugins/p-1.0.0.mvp"), "{e}");
    }

    #[test]
    fn uploads_follow_the_steps() {
        let tree = KeyPair::from_seed(ed25519_compact::Seed::new([1; 32]));
        let read = |path: &str| Ok(signing::sign(path.as_bytes(), &tree));
        let prepared = prepare(UP, read, &tree).unwrap();
        let firsts: Vec<Vec<u8>> = prepared
            .iter()
            .map(|p| match p {
                Prepared::Upload { first, .. } => decode(first).0,
                Prepared::Burst { .. } => panic!("upload-session has no burst"),
            })
            .collect();
        assert_eq!(firsts.len(), 6);
        assert_eq!(firsts[0], signing::sign(b"plugins/counter-plugin-2.0.0.mvp", &tree));
        assert_eq!(firsts[2], b"plugins/counter-plugin-2.0.0.mvp");
        assert_eq!(firsts[4], signing::sign(b"plugins/counter-plugin-3.0.0.mvp", &tree));
        // A guest file goes unsigned, after its name.
        let guest = signing::sign(b"guests/hello.elf", &tree);
        assert_eq!(firsts[5], [&[9u8][..], b"hello.elf", &guest].concat());
        // A flipped byte is not sent again; an intact frame is, unchanged.
        assert!(matches!(&prepared[1], Prepared::Upload { again: None, .. }));
        assert!(matches!(&prepared[0], Prepared::Upload { first, again: Some(a) } if a == first));
        let missing = |path: &str| Err(build::Error::Environment(format!("no {path}")).into());
        assert_eq!(prepare(UP, missing, &tree).unwrap_err().to_string(), "no plugins/counter-plugin-2.0.0.mvp");
        assert!(prepare(S, missing, &tree).unwrap().is_empty());
    }

    #[test]
    fn bursts_decode_to_their_answers_in_order() {
        use loader_core::plugin::upload::{Byte, Limits, Output, Receiver};
        use plugins::upload::MAX_PAYLOAD;
        let tree = KeyPair::from_seed(ed25519_compact::Seed::new([1; 32]));
        let read = |path: &str| Ok(signing::sign(&path.as_bytes().repeat(300), &tree));
        let burst = SCENARIOS.iter().find(|s| s.name == "upload-burst").unwrap();
        let limits = Limits { max_len: MAX_PAYLOAD, timeout_us: 1 };
        for (p, step) in prepare(burst, read, &tree)
            .unwrap()
            .iter()
            .zip(burst.steps.iter().filter(|s| matches!(s.input, Input::Upload(_) | Input::Write(_))))
        {
            let Prepared::Burst { bytes, answers } = p else { continue };
            let Input::Write(pieces) = step.input else { panic!("prepared a burst for another step") };
            // The loader's receiver on the same bytes, with a quiet line after.
            let mut rx = Receiver::new(limits, 0);
            let mut input = bytes.iter().map(|&b| Byte::clean(b));
            let mut out: Vec<Output> = Vec::new();
            while let Some(o) = rx.next(&mut || input.next(), || 0).or_else(|| rx.idle(10)) {
                out.push(o);
            }
            let answered: Vec<&Output> = out.iter().filter(|o| !matches!(o, Output::Skipped { .. })).collect();
            assert_eq!(answered.len(), *answers, "{pieces:?}");
            let answering = pieces.iter().filter(|p| p.expect().is_some());
            for (o, piece) in answered.iter().zip(answering) {
                let sound = matches!(piece, Piece::Frame(u, _) if u.spoil != Spoil::FlipPayloadByte && u.spoil != Spoil::UnknownCommand);
                assert_eq!(matches!(o, Output::Frame { .. }), sound, "{} gave {o:?}", piece.describe());
            }
        }
    }
}
