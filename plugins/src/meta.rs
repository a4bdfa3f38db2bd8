//! Plugin metadata: an ELF note (owner `modvisor`, type [`NOTE_TYPE`]) in
//! the section [`NOTE_SECTION`], readable without running plugin code. Its
//! descriptor is the ABI fingerprint (8 bytes, little endian) followed by
//! UTF-8 lines:
//!
//! ```text
//! name=counter-plugin
//! version=1.0.0
//! provides=counter 1.0.0
//! requires=log ^1.0
//! ```

pub const NOTE_SECTION: &str = ".note.modvisor";
pub const NOTE_OWNER: &[u8] = b"modvisor";
pub const NOTE_TYPE: u32 = 0x4d56_0001;
pub const MAX_LINKS: usize = 8;

/// The note record as the plugin carries it (ELF note layout: namesz,
/// descsz, type, owner padded to 4, descriptor padded to 4). `N` is the
/// text length rounded up to a multiple of 4 ([`padded`]); the padding is
/// NULs, outside `descsz`.
#[repr(C, align(4))]
pub struct Note<const N: usize> {
    namesz: u32,
    descsz: u32,
    ty: u32,
    owner: [u8; 12],
    abi: [u8; 8],
    text: [u8; N],
}

/// Room for `len` bytes of note text, rounded up to the note alignment.
pub const fn padded(len: usize) -> usize {
    (len + 3) & !3
}

impl<const N: usize> Note<N> {
    pub const fn new(abi: u64, text: &str) -> Self {
        let mut t = [0u8; N];
        let b = text.as_bytes();
        assert!(padded(b.len()) == N, "Note<N> needs N == padded(text.len())");
        let mut i = 0;
        while i < b.len() {
            t[i] = b[i];
            i += 1;
        }
        let mut owner = [0u8; 12];
        let mut j = 0;
        while j < NOTE_OWNER.len() {
            owner[j] = NOTE_OWNER[j];
            j += 1;
        }
        Note {
            namesz: NOTE_OWNER.len() as u32 + 1,
            descsz: 8 + b.len() as u32,
            ty: NOTE_TYPE,
            owner,
            abi: abi.to_le_bytes(),
            text: t,
        }
    }
}

/// An interface a plugin provides (`version`) or requires (`range`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link<'a> {
    pub interface: &'a str,
    /// A version (provides) or a semver range (requires), unparsed.
    pub version: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata<'a> {
    pub abi: u64,
    pub name: &'a str,
    pub version: &'a str,
    provides: [Option<Link<'a>>; MAX_LINKS],
    requires: [Option<Link<'a>>; MAX_LINKS],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error<'a> {
    TooShort,
    NotUtf8,
    BadLine(&'a str),
    Missing(&'static str),
    Duplicate(&'static str),
    TooMany(&'static str),
}

impl core::fmt::Display for Error<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::TooShort => write!(f, "metadata note shorter than its ABI fingerprint"),
            Error::NotUtf8 => write!(f, "metadata note is not UTF-8"),
            Error::BadLine(l) => write!(f, "metadata line `{l}` is not `key=value` with a known key"),
            Error::Missing(k) => write!(f, "metadata has no `{k}=` line"),
            Error::Duplicate(k) => write!(f, "metadata has two `{k}=` lines"),
            Error::TooMany(k) => write!(f, "metadata has more than {MAX_LINKS} `{k}=` lines"),
        }
    }
}

impl<'a> Metadata<'a> {
    /// Parses a note descriptor (fingerprint + text).
    pub fn parse(desc: &'a [u8]) -> Result<Metadata<'a>, Error<'a>> {
        let (abi, text) = desc.split_at_checked(8).ok_or(Error::TooShort)?;
        let abi = u64::from_le_bytes(abi.try_into().unwrap_or([0; 8]));
        let text = core::str::from_utf8(text).map_err(|_| Error::NotUtf8)?;
        let mut m = Metadata { abi, name: "", version: "", provides: [None; MAX_LINKS], requires: [None; MAX_LINKS] };
        let (mut np, mut nr) = (0, 0);
        for line in text.trim_end_matches('\0').lines().filter(|l| !l.is_empty()) {
            let (key, value) = line.split_once('=').ok_or(Error::BadLine(line))?;
            match key {
                "name" | "version" => {
                    let slot = if key == "name" { &mut m.name } else { &mut m.version };
                    if !slot.is_empty() {
                        return Err(Error::Duplicate(if key == "name" { "name" } else { "version" }));
                    }
                    if value.is_empty() || value.contains(char::is_whitespace) {
                        return Err(Error::BadLine(line));
                    }
                    *slot = value;
                }
                "provides" | "requires" => {
                    let (interface, version) = value.split_once(' ').ok_or(Error::BadLine(line))?;
                    if interface.is_empty() || version.trim().is_empty() {
                        return Err(Error::BadLine(line));
                    }
                    let link = Some(Link { interface, version: version.trim() });
                    let (list, n, what) = if key == "provides" {
                        (&mut m.provides, &mut np, "provides")
                    } else {
                        (&mut m.requires, &mut nr, "requires")
                    };
                    *list.get_mut(*n).ok_or(Error::TooMany(what))? = link;
                    *n += 1;
                }
                _ => return Err(Error::BadLine(line)),
            }
        }
        if m.name.is_empty() {
            return Err(Error::Missing("name"));
        }
        if m.version.is_empty() {
            return Err(Error::Missing("version"));
        }
        Ok(m)
    }

    pub fn provides(&self) -> impl Iterator<Item = Link<'a>> + '_ {
        self.provides.iter().flatten().copied()
    }

    pub fn requires(&self) -> impl Iterator<Item = Link<'a>> + '_ {
        self.requires.iter().flatten().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn desc(abi: u64, text: &str) -> Vec<u8> {
        let mut v = abi.to_le_bytes().to_vec();
        v.extend_from_slice(text.as_bytes());
        v
    }

    #[test]
    fn parses_a_full_note() {
        let d = desc(
            7,
            "name=counter-plugin\nversion=1.2.0\nprovides=counter 1.2.0\nrequires=log ^1.0\nrequires=cpuhp >=1, <3\n",
        );
        let m = Metadata::parse(&d).unwrap();
        assert_eq!((m.abi, m.name, m.version), (7, "counter-plugin", "1.2.0"));
        assert_eq!(m.provides().collect::<Vec<_>>(), [Link { interface: "counter", version: "1.2.0" }]);
        assert_eq!(m.requires().map(|l| l.version).collect::<Vec<_>>(), ["^1.0", ">=1, <3"]);
    }

    #[test]
    fn note_struct_matches_the_elf_note_layout() {
        const T: &str = "name=a\nversion=1.0.0\n";
        let n = Note::<{ padded(T.len()) }>::new(0x1122, T);
        assert_eq!(core::mem::size_of_val(&n) % 4, 0);
        // SAFETY: `Note` is repr(C) plain data.
        let bytes = unsafe { core::slice::from_raw_parts(&n as *const _ as *const u8, core::mem::size_of_val(&n)) };
        assert_eq!(u32::from_le_bytes(bytes[0..4].try_into().unwrap()), 9);
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize, 8 + T.len());
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), NOTE_TYPE);
        assert_eq!(&bytes[12..21], b"modvisor\0");
        let m = Metadata::parse(&bytes[24..24 + 8 + T.len()]).unwrap();
        assert_eq!((m.abi, m.name), (0x1122, "a"));
    }

    #[test]
    fn bad_notes_are_refused_with_the_reason() {
        assert_eq!(Metadata::parse(&[1, 2]), Err(Error::TooShort));
        assert_eq!(Metadata::parse(&desc(0, "version=1.0.0\n")), Err(Error::Missing("name")));
        assert_eq!(Metadata::parse(&desc(0, "name=a\n")), Err(Error::Missing("version")));
        assert_eq!(Metadata::parse(&desc(0, "name=a\nname=b\nversion=1\n")), Err(Error::Duplicate("name")));
        assert_eq!(Metadata::parse(&desc(0, "name=a\nweird\n")), Err(Error::BadLine("weird")));
        assert_eq!(Metadata::parse(&desc(0, "name=a\ncolour=red\n")), Err(Error::BadLine("colour=red")));
        assert_eq!(Metadata::parse(&desc(0, "name=a\nversion=1\nrequires=log\n")), Err(Error::BadLine("requires=log")));
        let many: std::string::String = (0..9).map(|i| std::format!("provides=i{i} 1.0.0\n")).collect();
        assert_eq!(
            Metadata::parse(&desc(0, &std::format!("name=a\nversion=1\n{many}"))),
            Err(Error::TooMany("provides"))
        );
        assert_eq!(Metadata::parse(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff]), Err(Error::NotUtf8));
    }
}
