//! The store manifest: one signed file in the initrd that lists the plugin
//! files beside it with a hash of each, so that the loader checks one
//! ed25519 signature at boot instead of one per plugin file, and a load
//! from the initrd costs a hash of the file instead of a signature check.
//!
//! The runner writes it (`images/src/build/plugin_build.rs`) and signs it
//! like a plugin file (`sig`: body, 64-byte signature, trailer magic); the
//! loader's `loader_core::plugin::store` verifies and indexes it. Body:
//!
//! ```text
//! magic   8 bytes   MAGIC
//! count   u32 LE    number of entries
//! entry   count times:
//!   len   u8        length of the file name
//!   name  len bytes UTF-8 file name under plugins/ (`counter-plugin-1.0.0.mvp`)
//!   hash  32 bytes  BLAKE3 of the whole store file (its own signature trailer included)
//!   needs u32 LE    the CPU features the plugin's metadata says it needs (`meta::cpu`)
//! ```
//!
//! The format holds what the runner read; which hash and what a match
//! means are the loader's decision. `needs` lets the loader refuse a plugin
//! that cannot run on this CPU before it spends a hash on the file.

pub const MAGIC: [u8; 8] = *b"MVMANIF\x02";
pub const HASH_LEN: usize = 32;
/// The manifest's path in the initrd (beside the plugin files it lists).
pub const PATH: &str = "plugins/manifest.mvm";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The body does not start with [`MAGIC`].
    Magic,
    /// The body ends inside entry `index` (or inside the header).
    Truncated { index: u32 },
    /// Entry `index` has an empty or non-UTF-8 name.
    BadName { index: u32 },
    /// Bytes follow the last entry.
    Trailing,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Magic => write!(f, "not a store manifest (bad magic); rebuild the image"),
            Error::Truncated { index } => write!(f, "the manifest ends inside entry {index}; rebuild the image"),
            Error::BadName { index } => write!(f, "manifest entry {index} has an empty or non-UTF-8 name"),
            Error::Trailing => write!(f, "bytes follow the manifest's last entry"),
        }
    }
}

/// One listed file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub name: &'a str,
    pub hash: &'a [u8; HASH_LEN],
    /// CPU features ([`crate::meta::cpu`]) the plugin needs.
    pub needs: u32,
}

/// Writes the body for `entries` to `out`. Names longer than 255 bytes do
/// not fit the format: the caller checks (the runner refuses them).
pub fn encode<'e>(entries: &[Entry<'e>], out: &mut impl Extend<u8>) {
    out.extend(MAGIC);
    out.extend((entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend([e.name.len() as u8]);
        out.extend(e.name.bytes());
        out.extend(*e.hash);
        out.extend(e.needs.to_le_bytes());
    }
}

/// Checks the whole body and returns its entries, in file order.
pub fn parse(body: &[u8]) -> Result<Entries<'_>, Error> {
    let rest = body.strip_prefix(&MAGIC).ok_or(Error::Magic)?;
    let (count, rest) = rest.split_first_chunk::<4>().ok_or(Error::Truncated { index: 0 })?;
    let entries = Entries { rest, left: u32::from_le_bytes(*count), index: 0 };
    // Walk once so that a caller iterating later meets no error.
    let mut walk = entries.clone();
    while walk.left > 0 {
        walk.step()?;
    }
    if !walk.rest.is_empty() {
        return Err(Error::Trailing);
    }
    Ok(entries)
}

/// The entries of a checked body.
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    rest: &'a [u8],
    left: u32,
    index: u32,
}

impl<'a> Entries<'a> {
    fn step(&mut self) -> Result<Entry<'a>, Error> {
        let index = self.index;
        let truncated = Error::Truncated { index };
        let (&len, rest) = self.rest.split_first().ok_or(truncated)?;
        let (name, rest) = rest.split_at_checked(len as usize).ok_or(truncated)?;
        let (hash, rest) = rest.split_first_chunk::<HASH_LEN>().ok_or(truncated)?;
        let (needs, rest) = rest.split_first_chunk::<4>().ok_or(truncated)?;
        let name = core::str::from_utf8(name).ok().filter(|n| !n.is_empty()).ok_or(Error::BadName { index })?;
        self.rest = rest;
        self.left -= 1;
        self.index += 1;
        Ok(Entry { name, hash, needs: u32::from_le_bytes(*needs) })
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Entry<'a>;
    fn next(&mut self) -> Option<Entry<'a>> {
        // `parse` walked these bytes already, so `step` cannot fail here.
        (self.left > 0).then(|| self.step().ok()).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn body(entries: &[Entry]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(entries, &mut out);
        out
    }

    #[test]
    fn entries_round_trip_in_order() {
        let (h1, h2) = ([1; HASH_LEN], [2; HASH_LEN]);
        let list = [
            Entry { name: "a-plugin-1.0.0.mvp", hash: &h1, needs: 0 },
            Entry { name: "b-plugin-2.0.0.mvp", hash: &h2, needs: crate::meta::cpu::VMX },
        ];
        let b = body(&list);
        assert_eq!(&b[..8], &MAGIC);
        assert_eq!(parse(&b).unwrap().collect::<Vec<_>>(), list);
        assert_eq!(parse(&body(&[])).unwrap().count(), 0);
    }

    #[test]
    fn damaged_bodies_are_refused() {
        let h = [7; HASH_LEN];
        let b = body(&[Entry { name: "a", hash: &h, needs: 0 }, Entry { name: "bb", hash: &h, needs: 0 }]);
        // A manifest of the format before `needs`.
        assert_eq!(parse(b"MVMANIF\x01\0\0\0\0").unwrap_err(), Error::Magic);
        assert_eq!(parse(&b[..10]).unwrap_err(), Error::Truncated { index: 0 });
        assert_eq!(parse(&b[..b.len() - 1]).unwrap_err(), Error::Truncated { index: 1 });
        let mut long = b.clone();
        long.push(0);
        assert_eq!(parse(&long).unwrap_err(), Error::Trailing);
        let mut bad = b.clone();
        bad[13] = 0xff; // the first name's only byte
        assert_eq!(parse(&bad).unwrap_err(), Error::BadName { index: 0 });
        let mut empty = b;
        empty[12] = 0; // the first name's length: then its hash reads as the next entry
        assert!(parse(&empty).is_err());
    }
}
