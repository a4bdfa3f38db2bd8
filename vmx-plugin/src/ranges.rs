//! A VM's port and MMIO handler ranges: registered once, never
//! overlapping, looked up at each exit. Pure, tested on the host.

use alloc::vec::Vec;
use core::fmt;

/// `[start, end)` with what handles it.
#[derive(Clone, Debug)]
pub struct Ranges<T> {
    items: Vec<(u64, u64, T)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    Empty,
    /// The range wraps past the end of the address space.
    Wraps {
        start: u64,
        len: u64,
    },
    /// `[start, end)` overlaps the range registered before.
    Overlaps {
        start: u64,
        end: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Empty => write!(f, "a range has at least one address"),
            Error::Wraps { start, len } => write!(f, "{len:#x} from {start:#x} runs past the end"),
            Error::Overlaps { start, end } => write!(f, "it overlaps {start:#x}..{end:#x}, registered before"),
        }
    }
}

impl<T: Copy> Ranges<T> {
    pub const fn new() -> Self {
        Ranges { items: Vec::new() }
    }

    /// Adds `[start, start + len)` for `what`, if it overlaps nothing.
    pub fn insert(&mut self, start: u64, len: u64, what: T) -> Result<(), Error> {
        if len == 0 {
            return Err(Error::Empty);
        }
        let end = start.checked_add(len).ok_or(Error::Wraps { start, len })?;
        if let Some(&(s, e, _)) = self.items.iter().find(|(s, e, _)| start < *e && *s < end) {
            return Err(Error::Overlaps { start: s, end: e });
        }
        self.items.push((start, end, what));
        Ok(())
    }

    /// The range holding `addr`: its start and handler.
    pub fn find(&self, addr: u64) -> Option<(u64, T)> {
        self.items.iter().find(|(s, e, _)| (*s..*e).contains(&addr)).map(|&(s, _, t)| (s, t))
    }
}

impl<T: Copy> Default for Ranges<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlaps_are_refused_and_neighbours_taken() {
        let mut r = Ranges::new();
        r.insert(0xe9, 1, 'c').unwrap();
        r.insert(0x3f8, 8, 'u').unwrap();
        assert_eq!(r.insert(0x3f0, 9, 'x'), Err(Error::Overlaps { start: 0x3f8, end: 0x400 }));
        assert_eq!(r.insert(0x3ff, 1, 'x'), Err(Error::Overlaps { start: 0x3f8, end: 0x400 }));
        r.insert(0x400, 1, 'n').unwrap();
        r.insert(0x3f0, 8, 'b').unwrap();
        assert_eq!(r.insert(5, 0, 'x'), Err(Error::Empty));
        assert_eq!(r.insert(u64::MAX, 2, 'x'), Err(Error::Wraps { start: u64::MAX, len: 2 }));
        assert_eq!(r.find(0x3fa), Some((0x3f8, 'u')));
        assert_eq!(r.find(0x400), Some((0x400, 'n')));
        assert_eq!(r.find(0x3f7), Some((0x3f0, 'b')));
        assert_eq!(r.find(0xe8), None);
        let msg = std::format!("{}", Error::Overlaps { start: 0xe9, end: 0xea });
        assert_eq!(msg, "it overlaps 0xe9..0xea, registered before");
    }
}
