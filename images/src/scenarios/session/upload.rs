//! The uploads a session pushes over COM2, and the frames that carry
//! them, damaged on purpose as a step asks.

use ed25519_compact::KeyPair;
use plugins::upload::HEADER_LEN;

use super::data::{Input, Scenario, Spoil, Upload};
use crate::build::{self, signing};
use crate::link::com2;
use crate::scenarios::Result;

/// The frame that carries `upload`'s `file` (signed with the tree's key),
/// spoiled; `foreign` signs for [`Spoil::ForeignKey`].
pub fn frame(upload: &Upload, file: &[u8], foreign: &KeyPair) -> Result<Vec<u8>> {
    let unsigned = || {
        plugins::sig::split(file)
            .map(|(body, _)| body)
            .map_err(|e| build::Error::Recipe(format!("{}: {e}", upload.store_path())))
    };
    Ok(match upload.spoil {
        Spoil::Intact => com2::frame(upload.command, file)?,
        Spoil::StripSignature => com2::frame(upload.command, unsigned()?)?,
        Spoil::ForeignKey => com2::frame(upload.command, &signing::sign(unsigned()?, foreign))?,
        Spoil::FlipPayloadByte => {
            let mut f = com2::frame(upload.command, file)?;
            // Inside the payload, so the header still parses and only
            // the CRC can tell.
            f[HEADER_LEN + file.len() / 2] ^= 0x01;
            f
        }
    })
}

/// The frames of `scenario`'s uploads, in step order: `read` gives a store
/// file's bytes, and one throwaway key signs every foreign upload.
pub fn frames(scenario: &Scenario, read: impl Fn(&str) -> Result<Vec<u8>>, foreign: &KeyPair) -> Result<Vec<Vec<u8>>> {
    scenario
        .steps
        .iter()
        .filter_map(|s| match s.input {
            Input::Upload(u) => Some(u),
            Input::Keys(_) => None,
        })
        .map(|u| frame(&u, &read(&u.store_path())?, foreign))
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

        let e = frame(&up(Spoil::StripSignature), b"never signed", &foreign).unwrap_err().to_string();
        assert!(e.contains("plugins/p-1.0.0.mvp"), "{e}");
    }

    #[test]
    fn frames_follow_the_upload_steps() {
        let tree = KeyPair::from_seed(ed25519_compact::Seed::new([1; 32]));
        let read = |path: &str| Ok(signing::sign(path.as_bytes(), &tree));
        let payloads: Vec<Vec<u8>> = frames(UP, read, &tree).unwrap().iter().map(|f| decode(f).0).collect();
        assert_eq!(payloads.len(), 5);
        assert_eq!(payloads[0], signing::sign(b"plugins/counter-plugin-2.0.0.mvp", &tree));
        assert_eq!(payloads[2], b"plugins/counter-plugin-2.0.0.mvp");
        assert_eq!(payloads[4], signing::sign(b"plugins/counter-plugin-3.0.0.mvp", &tree));
        let missing = |path: &str| Err(build::Error::Environment(format!("no {path}")).into());
        assert_eq!(frames(UP, missing, &tree).unwrap_err().to_string(), "no plugins/counter-plugin-2.0.0.mvp");
        assert!(frames(S, missing, &tree).unwrap().is_empty());
    }
}
