use super::*;
use alloc::string::ToString;
use alloc::vec;
use ed25519_compact::{KeyPair, Seed};
use plugins::manifest::Entry as Listed;

fn pair(seed: u8) -> KeyPair {
    KeyPair::from_seed(Seed::new([seed; 32]))
}

fn signed(body: &[u8], key: &KeyPair) -> Vec<u8> {
    let mut f = body.to_vec();
    f.extend_from_slice(key.sk.sign(body, None).as_ref());
    f.extend_from_slice(&plugins::sig::TRAILER_MAGIC);
    f
}

/// A signed manifest listing `files` (name, file bytes) by their hashes.
fn manifest_of(files: &[(&str, &[u8])], key: &KeyPair) -> Vec<u8> {
    let hashes: Vec<_> = files.iter().map(|(_, f)| file_hash(f)).collect();
    let listed: Vec<_> = files.iter().zip(&hashes).map(|((name, _), hash)| Listed { name, hash, needs: 0 }).collect();
    let mut body = Vec::new();
    plugins::manifest::encode(&listed, &mut body);
    signed(&body, key)
}

/// A signed manifest of one entry.
fn manifest_listing(entry: Listed, key: &KeyPair) -> Vec<u8> {
    let mut body = Vec::new();
    plugins::manifest::encode(&[entry], &mut body);
    signed(&body, key)
}

fn path(name: &str) -> String {
    alloc::format!("plugins/{name}")
}

#[test]
fn a_listed_file_opens_by_its_hash() {
    let tree = pair(1);
    let a = signed(b"ELF a", &tree);
    let m = manifest_of(&[("a-plugin-1.0.0.mvp", &a)], &tree);
    let files = [(path("a-plugin-1.0.0.mvp"), &a[..]), (manifest::PATH.into(), &m[..])];
    let (mut index, problem) = Index::build(files.iter().map(|(p, f)| (p.as_str(), *f)), &tree.pk);
    assert_eq!(problem, None);
    assert_eq!(index.entries().len(), 1, "the manifest is no plugin");
    assert_eq!(index.entries()[0].trust, Trust::Listed { hash: file_hash(&a), needs: 0 });
    let i = index.find("a-plugin", None).unwrap();
    assert_eq!(index.open(i, 0), Ok(&b"ELF a"[..]));
    assert_eq!(index.open(i, 0), Ok(&b"ELF a"[..]), "again, from the check made before");
}

#[test]
fn a_file_that_differs_from_its_manifest_hash_is_refused() {
    let tree = pair(1);
    let built = signed(b"ELF a", &tree);
    // Signed with the tree's own key, so only the manifest can catch it.
    let changed = signed(b"ELF b", &tree);
    let m = manifest_of(&[("a-plugin-1.0.0.mvp", &built)], &tree);
    let files = [(path("a-plugin-1.0.0.mvp"), &changed[..]), (manifest::PATH.into(), &m[..])];
    let (mut index, problem) = Index::build(files.iter().map(|(p, f)| (p.as_str(), *f)), &tree.pk);
    assert_eq!(problem, None);
    let err = index.open(0, 0).unwrap_err();
    assert_eq!(err, Error::HashMismatch { file: "a-plugin-1.0.0.mvp".into() });
    assert_eq!(index.open(0, 0).unwrap_err(), err, "a refusal is not remembered as a pass");
}

#[test]
fn a_manifest_from_another_tree_lists_nothing() {
    let (tree, other) = (pair(1), pair(2));
    let ours = signed(b"ELF a", &tree);
    let foreign = signed(b"ELF b", &other);
    // The other tree's manifest vouches for its own plugin: ignored.
    let m = manifest_of(&[("a-plugin-1.0.0.mvp", &ours), ("b-plugin-1.0.0.mvp", &foreign)], &other);
    let files = [
        (path("a-plugin-1.0.0.mvp"), &ours[..]),
        (path("b-plugin-1.0.0.mvp"), &foreign[..]),
        (manifest::PATH.into(), &m[..]),
    ];
    let (mut index, problem) = Index::build(files.iter().map(|(p, f)| (p.as_str(), *f)), &tree.pk);
    assert_eq!(problem, Some(Error::ManifestSignature));
    assert!(index.entries().iter().all(|e| e.trust == Trust::Signature));
    assert_eq!(index.open(index.find("a-plugin", None).unwrap(), 0), Ok(&b"ELF a"[..]), "its own signature");
    let b = index.find("b-plugin", None).unwrap();
    assert_eq!(index.open(b, 0), Err(Error::File(elf::Error::BadSignature)));
}

#[test]
fn unlisted_files_are_checked_by_their_signature() {
    let (tree, other) = (pair(1), pair(2));
    let a = signed(b"ELF a", &tree);
    let foreign = signed(b"ELF b", &other);
    let m = manifest_of(&[("a-plugin-1.0.0.mvp", &a)], &tree);
    let files = [
        (path("b-plugin-1.0.0.mvp"), &foreign[..]),
        (path("c-plugin-1.0.0.mvp"), &b"unsigned"[..]),
        (manifest::PATH.into(), &m[..]),
    ];
    let (mut index, problem) = Index::build(files.iter().map(|(p, f)| (p.as_str(), *f)), &tree.pk);
    assert_eq!(problem, None, "listing a file the initrd lacks is no problem");
    assert_eq!(index.open(0, 0), Err(Error::File(elf::Error::BadSignature)));
    assert_eq!(index.open(1, 0), Err(Error::File(elf::Error::Unsigned)));
}

#[test]
fn a_broken_manifest_is_reported_and_lists_nothing() {
    let tree = pair(1);
    let a = signed(b"ELF a", &tree);
    let twice = {
        let h = file_hash(&a);
        let l = [
            Listed { name: "a-plugin-1.0.0.mvp", hash: &h, needs: 0 },
            Listed { name: "a-plugin-1.0.0.mvp", hash: &h, needs: 0 },
        ];
        let mut body = Vec::new();
        plugins::manifest::encode(&l, &mut body);
        signed(&body, &tree)
    };
    let cases: [(Vec<u8>, Error); 3] = [
        (b"no trailer".to_vec(), Error::ManifestUnsigned),
        (signed(b"not a manifest", &tree), Error::Manifest(manifest::Error::Magic)),
        (twice, Error::ManifestDuplicate("a-plugin-1.0.0.mvp".into())),
    ];
    for (m, want) in cases {
        let files = [(path("a-plugin-1.0.0.mvp"), &a[..]), (manifest::PATH.into(), &m[..])];
        let (index, problem) = Index::build(files.iter().map(|(p, f)| (p.as_str(), *f)), &tree.pk);
        assert_eq!(problem, Some(want));
        assert_eq!(index.entries()[0].trust, Trust::Signature);
    }
}

#[test]
fn find_takes_the_asked_or_highest_version() {
    let files = [
        (path("a-plugin-1.0.0.mvp"), vec![1u8]),
        (path("a-plugin-2.0.0.mvp"), vec![2]),
        (path("a-plugin-1.5.0.mvp"), vec![3]),
        ("image.txt".into(), vec![4]),
    ];
    let (index, problem) = Index::build(files.iter().map(|(p, f)| (p.as_str(), f.as_slice())), &[0; 32]);
    assert_eq!(problem, None, "no manifest is no problem");
    assert_eq!(index.entries().len(), 3);
    assert_eq!(index.find("a-plugin", None), Some(1));
    assert_eq!(index.find("a-plugin", Some(&Version::new(1, 5, 0))), Some(2));
    assert_eq!(index.find("a-plugin", Some(&Version::new(3, 0, 0))), None);
    assert_eq!(index.find("b-plugin", None), None);
}

#[test]
fn the_hash_is_blake3() {
    // The BLAKE3 paper's test vector for the empty input.
    let empty = file_hash(b"");
    assert_eq!(empty[..4], [0xaf, 0x13, 0x49, 0xb9]);
}

#[test]
fn a_listed_plugin_this_cpu_cannot_run_is_refused_before_its_hash() {
    use plugins::meta::cpu::VMX;
    let tree = pair(1);
    let built = signed(b"ELF v", &tree);
    let hash = file_hash(&built);
    let m = manifest_listing(Listed { name: "v-plugin-1.0.0.mvp", hash: &hash, needs: VMX }, &tree);
    // Bytes the hash would refuse: the needs are looked at first.
    let changed = signed(b"ELF w", &tree);
    let files = [(path("v-plugin-1.0.0.mvp"), &changed[..]), (manifest::PATH.into(), &m[..])];
    let (mut index, _) = Index::build(files.iter().map(|(p, f)| (p.as_str(), *f)), &tree.pk);
    assert_eq!(index.entries()[0].trust, Trust::Listed { hash, needs: VMX });
    let err = index.open(0, 0).unwrap_err();
    assert_eq!(err, Error::CpuLacks { plugin: "v-plugin".into(), missing: VMX });
    assert_eq!(err.to_string(), "v-plugin needs vmx, which this CPU does not have");
    assert_eq!(index.open(0, VMX), Err(Error::HashMismatch { file: "v-plugin-1.0.0.mvp".into() }));
    let files = [(path("v-plugin-1.0.0.mvp"), &built[..]), (manifest::PATH.into(), &m[..])];
    let (mut index, _) = Index::build(files.iter().map(|(p, f)| (p.as_str(), *f)), &tree.pk);
    assert_eq!(index.open(0, VMX), Ok(&b"ELF v"[..]));
    assert_eq!(lacking("v-plugin", VMX, VMX), Ok(()));
    assert_eq!(lacking("v-plugin", 0, 0), Ok(()));
}
