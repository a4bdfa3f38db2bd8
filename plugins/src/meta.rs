//! Plugin metadata: an ELF note (owner `modvisor`, type [`NOTE_TYPE`]) in
//! the section [`NOTE_SECTION`], readable without running plugin code. Its
//! descriptor is the ABI fingerprint (8 bytes, little endian), the ABI's
//! items (a u32 count, then per item the hash of its name and its own
//! hash, u32 each: see [`crate::abi`]), then UTF-8 lines; an interface line
//! gives the interface, the size in bytes of its table type (provides: the
//! table's; requires: the one the plugin was built against) and the
//! version (provides) or semver range (requires):
//!
//! ```text
//! name=counter-plugin
//! version=1.0.0
//! provides=counter 16 1.0.0
//! requires=log 8 ^1.0
//! needs=vmx
//! ```
//!
//! A `needs` line names the CPU features ([`cpu`]) without which the
//! plugin cannot run; the loader refuses it on a CPU that lacks one, and
//! the store manifest repeats the set so that the refusal comes before the
//! file is even hashed.

use crate::abi::{name_hash, Item};
use crate::ffi::ITEM_COUNT;
use crate::Interface;

pub const NOTE_SECTION: &str = ".note.modvisor";
pub const NOTE_OWNER: &[u8] = b"modvisor";
pub const NOTE_TYPE: u32 = 0x4d56_0001;
pub const MAX_LINKS: usize = 8;

/// CPU features a plugin can need, as a bit set.
pub mod cpu {
    /// VMX (CPUID.1:ECX bit 5).
    pub const VMX: u32 = 1 << 0;
    /// Every feature by its `needs=` name.
    pub const NAMES: &[(&str, u32)] = &[("vmx", VMX)];

    /// The names of the features in `set`, space-separated (bits without a
    /// name are shown as a hexadecimal remainder).
    pub struct Names(pub u32);

    impl core::fmt::Display for Names {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            let mut left = self.0;
            let mut sep = "";
            for &(name, bit) in NAMES.iter().filter(|(_, bit)| self.0 & bit != 0) {
                write!(f, "{sep}{name}")?;
                left &= !bit;
                sep = " ";
            }
            if left != 0 {
                write!(f, "{sep}{left:#x}")?;
            }
            Ok(())
        }
    }
}

/// Bytes of the descriptor before the text: fingerprint, item count,
/// items.
pub const HEADER_LEN: usize = 8 + 4 + 8 * ITEM_COUNT;

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
    item_count: [u8; 4],
    items: [[u8; 8]; ITEM_COUNT],
    text: [u8; N],
}

/// Room for `len` bytes of note text, rounded up to the note alignment.
pub const fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// One interface line of a note, before it is written: what
/// `plugins::plugin!` makes of a `provides` or `requires` entry.
#[derive(Clone, Copy, Debug)]
pub struct LinkSpec {
    pub interface: &'static str,
    pub table_size: usize,
    /// A version (provides) or a semver range (requires).
    pub version: &'static str,
}

impl LinkSpec {
    /// Interface `T` at `version` (or range).
    pub const fn of<T: Interface>(version: &'static str) -> LinkSpec {
        LinkSpec { interface: T::NAME, table_size: core::mem::size_of::<T>(), version }
    }
}

/// What a note's text says, before it is written.
#[derive(Clone, Copy, Debug)]
pub struct NoteText<'a> {
    pub name: &'static str,
    pub version: &'static str,
    pub provides: &'a [LinkSpec],
    pub requires: &'a [LinkSpec],
    /// CPU features ([`cpu`]) the plugin cannot run without.
    pub needs: u32,
}

/// Writes text into a fixed buffer in const context; measures it when the
/// buffer is empty.
struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Writer<'_> {
    const fn str(&mut self, s: &str) {
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if self.len < self.buf.len() {
                self.buf[self.len] = b[i];
            }
            self.len += 1;
            i += 1;
        }
    }

    const fn number(&mut self, mut v: usize) {
        let mut digits = [0u8; 20];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        while n > 0 {
            n -= 1;
            if self.len < self.buf.len() {
                self.buf[self.len] = digits[n];
            }
            self.len += 1;
        }
    }

    const fn links(&mut self, key: &str, links: &[LinkSpec]) {
        let mut i = 0;
        while i < links.len() {
            self.str(key);
            self.str(links[i].interface);
            self.str(" ");
            self.number(links[i].table_size);
            self.str(" ");
            self.str(links[i].version);
            self.str("\n");
            i += 1;
        }
    }

    const fn text(&mut self, t: &NoteText) {
        self.str("name=");
        self.str(t.name);
        self.str("\nversion=");
        self.str(t.version);
        self.str("\n");
        self.links("provides=", t.provides);
        self.links("requires=", t.requires);
        if t.needs != 0 {
            self.str("needs=");
            let mut i = 0;
            let mut first = true;
            while i < cpu::NAMES.len() {
                if t.needs & cpu::NAMES[i].1 != 0 {
                    if !first {
                        self.str(" ");
                    }
                    self.str(cpu::NAMES[i].0);
                    first = false;
                }
                i += 1;
            }
            self.str("\n");
        }
    }
}

impl NoteText<'_> {
    /// The text's length in bytes, once written.
    pub const fn written_len(&self) -> usize {
        let mut w = Writer { buf: &mut [], len: 0 };
        w.text(self);
        w.len
    }
}

impl<const N: usize> Note<N> {
    pub const fn new(abi: u64, items: &[Item; ITEM_COUNT], text: &NoteText) -> Self {
        let len = text.written_len();
        assert!(padded(len) == N, "Note<N> needs N == padded(text.written_len())");
        let mut t = [0u8; N];
        Writer { buf: &mut t, len: 0 }.text(text);
        let mut owner = [0u8; 12];
        let mut j = 0;
        while j < NOTE_OWNER.len() {
            owner[j] = NOTE_OWNER[j];
            j += 1;
        }
        let mut listed = [[0u8; 8]; ITEM_COUNT];
        let mut k = 0;
        while k < ITEM_COUNT {
            let (name, hash) = (name_hash(items[k].name).to_le_bytes(), items[k].hash.to_le_bytes());
            listed[k] = [name[0], name[1], name[2], name[3], hash[0], hash[1], hash[2], hash[3]];
            k += 1;
        }
        Note {
            namesz: NOTE_OWNER.len() as u32 + 1,
            descsz: (HEADER_LEN + len) as u32,
            ty: NOTE_TYPE,
            owner,
            abi: abi.to_le_bytes(),
            item_count: (ITEM_COUNT as u32).to_le_bytes(),
            items: listed,
            text: t,
        }
    }
}

/// An interface a plugin provides (`version`) or requires (`range`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link<'a> {
    pub interface: &'a str,
    /// Bytes of the table: the provider's, or the one the consumer was
    /// built against (it calls nothing beyond them).
    pub table_size: u64,
    /// A version (provides) or a semver range (requires), unparsed.
    pub version: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata<'a> {
    pub abi: u64,
    /// The ABI items the plugin was built with, 8 bytes each.
    items: &'a [u8],
    pub name: &'a str,
    pub version: &'a str,
    provides: [Option<Link<'a>>; MAX_LINKS],
    requires: [Option<Link<'a>>; MAX_LINKS],
    /// CPU features ([`cpu`]) the plugin cannot run without.
    pub needs: u32,
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
            Error::TooShort => write!(
                f,
                "metadata note shorter than its ABI fingerprint and item list: the plugin was built with another \
                 SDK; rebuild it with this tree's"
            ),
            Error::NotUtf8 => write!(f, "metadata note is not UTF-8"),
            Error::BadLine(l) => write!(f, "metadata line `{l}` is not `key=value` with a known key"),
            Error::Missing(k) => write!(f, "metadata has no `{k}=` line"),
            Error::Duplicate(k) => write!(f, "metadata has two `{k}=` lines"),
            Error::TooMany(k) => write!(f, "metadata has more than {MAX_LINKS} `{k}=` lines"),
        }
    }
}

impl<'a> Metadata<'a> {
    /// Parses a note descriptor (fingerprint, items, text).
    pub fn parse(desc: &'a [u8]) -> Result<Metadata<'a>, Error<'a>> {
        let word = |at: usize| desc.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
        let abi = desc.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).ok_or(Error::TooShort)?;
        let count = word(8).ok_or(Error::TooShort)? as usize;
        let text_at = count.checked_mul(8).and_then(|n| n.checked_add(12)).filter(|&n| n <= desc.len());
        let text_at = text_at.ok_or(Error::TooShort)?;
        let text = core::str::from_utf8(&desc[text_at..]).map_err(|_| Error::NotUtf8)?;
        let items = &desc[12..text_at];
        let mut m = Metadata {
            abi,
            items,
            name: "",
            version: "",
            provides: [None; MAX_LINKS],
            requires: [None; MAX_LINKS],
            needs: 0,
        };
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
                    let (interface, rest) = value.split_once(' ').ok_or(Error::BadLine(line))?;
                    let (size, version) = rest.split_once(' ').ok_or(Error::BadLine(line))?;
                    let table_size = size.parse().map_err(|_| Error::BadLine(line))?;
                    if interface.is_empty() || version.trim().is_empty() {
                        return Err(Error::BadLine(line));
                    }
                    let link = Some(Link { interface, table_size, version: version.trim() });
                    let (list, n, what) = if key == "provides" {
                        (&mut m.provides, &mut np, "provides")
                    } else {
                        (&mut m.requires, &mut nr, "requires")
                    };
                    *list.get_mut(*n).ok_or(Error::TooMany(what))? = link;
                    *n += 1;
                }
                "needs" => {
                    if m.needs != 0 {
                        return Err(Error::Duplicate("needs"));
                    }
                    for word in value.split_whitespace() {
                        let bit = cpu::NAMES.iter().find(|(n, _)| *n == word).ok_or(Error::BadLine(line))?.1;
                        m.needs |= bit;
                    }
                    if m.needs == 0 {
                        return Err(Error::BadLine(line));
                    }
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

    /// The ABI items the plugin was built with: (name hash, item hash).
    pub fn items(&self) -> impl Iterator<Item = (u32, u32)> + Clone + 'a {
        self.items.chunks_exact(8).map(|c| {
            let word = |at: usize| u32::from_le_bytes([c[at], c[at + 1], c[at + 2], c[at + 3]]);
            (word(0), word(4))
        })
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
    use crate::ffi::ITEMS;
    use std::vec::Vec;

    /// A descriptor with two items, (1, 2) and (3, 4).
    fn desc(abi: u64, text: &str) -> Vec<u8> {
        let mut v = abi.to_le_bytes().to_vec();
        for word in [2u32, 1, 2, 3, 4] {
            v.extend_from_slice(&word.to_le_bytes());
        }
        v.extend_from_slice(text.as_bytes());
        v
    }

    #[test]
    fn parses_a_full_note() {
        let d = desc(
            7,
            "name=counter-plugin\nversion=1.2.0\nprovides=counter 16 1.2.0\nrequires=log 8 ^1.0\n\
             requires=cpuhp 200 >=1, <3\n",
        );
        let m = Metadata::parse(&d).unwrap();
        assert_eq!((m.abi, m.name, m.version), (7, "counter-plugin", "1.2.0"));
        assert_eq!(m.items().collect::<Vec<_>>(), [(1, 2), (3, 4)]);
        assert_eq!(m.provides().collect::<Vec<_>>(), [Link { interface: "counter", table_size: 16, version: "1.2.0" }]);
        assert_eq!(
            m.requires().map(|l| (l.table_size, l.version)).collect::<Vec<_>>(),
            [(8, "^1.0"), (200, ">=1, <3")]
        );
    }

    /// A table type for the note test: only its size matters.
    #[allow(dead_code)]
    struct Pair {
        a: extern "C" fn(),
        b: extern "C" fn(),
    }

    // SAFETY: a test type, never shared.
    unsafe impl Interface for Pair {
        const NAME: &'static str = "pair";
        const VERSION: &'static str = "1.0.0";
    }

    #[test]
    fn note_struct_matches_the_elf_note_layout() {
        const T: NoteText = NoteText {
            name: "a",
            version: "1.0.0",
            provides: &[LinkSpec::of::<Pair>(Pair::VERSION)],
            requires: &[LinkSpec::of::<Pair>(">=1.0.0, <2.0.0")],
            needs: cpu::VMX,
        };
        const TEXT: &str =
            "name=a\nversion=1.0.0\nprovides=pair 16 1.0.0\nrequires=pair 16 >=1.0.0, <2.0.0\nneeds=vmx\n";
        assert_eq!(T.written_len(), TEXT.len());
        let n = Note::<{ padded(T.written_len()) }>::new(0x1122, &ITEMS, &T);
        assert_eq!(core::mem::size_of_val(&n) % 4, 0);
        // SAFETY: `Note` is repr(C) plain data.
        let bytes = unsafe { core::slice::from_raw_parts(&n as *const _ as *const u8, core::mem::size_of_val(&n)) };
        assert_eq!(u32::from_le_bytes(bytes[0..4].try_into().unwrap()), 9);
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize, HEADER_LEN + TEXT.len());
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), NOTE_TYPE);
        assert_eq!(&bytes[12..21], b"modvisor\0");
        let desc = &bytes[24..24 + HEADER_LEN + TEXT.len()];
        assert_eq!(&desc[HEADER_LEN..], TEXT.as_bytes());
        let m = Metadata::parse(desc).unwrap();
        assert_eq!((m.abi, m.name), (0x1122, "a"));
        let listed: Vec<(u32, u32)> = ITEMS.iter().map(|i| (name_hash(i.name), i.hash)).collect();
        assert_eq!(m.items().collect::<Vec<_>>(), listed);
        assert_eq!(m.requires().next(), Some(Link { interface: "pair", table_size: 16, version: ">=1.0.0, <2.0.0" }));
        assert_eq!(m.needs, cpu::VMX);
    }

    #[test]
    fn needs_name_known_cpu_features_once() {
        assert_eq!(Metadata::parse(&desc(0, "name=a\nversion=1\nneeds=vmx\n")).unwrap().needs, cpu::VMX);
        assert_eq!(Metadata::parse(&desc(0, "name=a\nversion=1\n")).unwrap().needs, 0);
        assert_eq!(Metadata::parse(&desc(0, "name=a\nversion=1\nneeds=sgx\n")), Err(Error::BadLine("needs=sgx")));
        assert_eq!(Metadata::parse(&desc(0, "name=a\nversion=1\nneeds=\n")), Err(Error::BadLine("needs=")));
        let twice = "name=a\nversion=1\nneeds=vmx\nneeds=vmx\n";
        assert_eq!(Metadata::parse(&desc(0, twice)), Err(Error::Duplicate("needs")));
        assert_eq!(std::format!("{}", cpu::Names(cpu::VMX | 0x10)), "vmx 0x10");
    }

    #[test]
    fn bad_notes_are_refused_with_the_reason() {
        assert_eq!(Metadata::parse(&[1, 2]), Err(Error::TooShort));
        // A note from before the item list: its text is no item count.
        assert_eq!(Metadata::parse(b"\0\0\0\0\0\0\0\0name=a\nversion=1\n"), Err(Error::TooShort));
        assert_eq!(Metadata::parse(&desc(0, "version=1.0.0\n")), Err(Error::Missing("name")));
        assert_eq!(Metadata::parse(&desc(0, "name=a\n")), Err(Error::Missing("version")));
        assert_eq!(Metadata::parse(&desc(0, "name=a\nname=b\nversion=1\n")), Err(Error::Duplicate("name")));
        assert_eq!(Metadata::parse(&desc(0, "name=a\nweird\n")), Err(Error::BadLine("weird")));
        assert_eq!(Metadata::parse(&desc(0, "name=a\ncolour=red\n")), Err(Error::BadLine("colour=red")));
        assert_eq!(Metadata::parse(&desc(0, "name=a\nversion=1\nrequires=log\n")), Err(Error::BadLine("requires=log")));
        // An interface line without its table size.
        let unsized_ = "name=a\nversion=1\nrequires=log ^1.0\n";
        assert_eq!(Metadata::parse(&desc(0, unsized_)), Err(Error::BadLine("requires=log ^1.0")));
        let many: std::string::String = (0..9).map(|i| std::format!("provides=i{i} 8 1.0.0\n")).collect();
        assert_eq!(
            Metadata::parse(&desc(0, &std::format!("name=a\nversion=1\n{many}"))),
            Err(Error::TooMany("provides"))
        );
        let mut bad = desc(0, "name=a\n");
        bad.push(0xff);
        assert_eq!(Metadata::parse(&bad), Err(Error::NotUtf8));
    }
}
