//! The signature trailer, and the key the loader is built with.

use super::*;

#[test]
fn signatures() {
    let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([7; 32]));
    let key: [u8; 32] = *pair.pk;
    let elf = valid();
    let sign = |body: &[u8]| {
        let mut f = body.to_vec();
        f.extend_from_slice(pair.sk.sign(body, None).as_ref());
        f.extend_from_slice(&plugins::sig::TRAILER_MAGIC);
        f
    };
    let signed = sign(&elf);
    assert_eq!(verify(&signed, &key), Ok(&elf[..]));
    assert_eq!(verify(&elf, &key), Err(Error::Unsigned));
    assert_eq!(verify(&signed[..signed.len() - 1], &key), Err(Error::Unsigned));
    assert_eq!(verify(&signed[1..], &key), Err(Error::BadSignature), "a cut at the front");
    for at in [0, 100, elf.len() - 1, elf.len(), elf.len() + 63] {
        let mut bad = signed.clone();
        bad[at] ^= 1;
        assert_eq!(verify(&bad, &key), Err(Error::BadSignature), "byte {at} flipped");
    }
    let other = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([8; 32]));
    assert_eq!(verify(&signed, &other.pk), Err(Error::BadSignature));
}

/// The key built into the loader is the public half of the tree's key file.
#[test]
fn built_in_key_matches_the_key_file() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../keys/plugin-signing.key");
    let seed: [u8; 32] = std::fs::read(&path).unwrap().try_into().unwrap();
    let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
    assert_eq!(*pair.pk, SIGNING_KEY);
}
