//! The firmware memory map, normalised: what is RAM the loader may hand out,
//! after taking away everything that is already in use at boot.

/// A half-open physical address range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    pub const fn new(start: u64, end: u64) -> Self {
        Range { start, end }
    }
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }
    /// The largest page-aligned range inside `self`.
    pub const fn page_aligned_inside(&self) -> Range {
        Range::new(align_up(self.start, 4096), self.end & !4095)
    }
}

pub const fn align_up(x: u64, a: u64) -> u64 {
    (x + a - 1) & !(a - 1)
}

/// The most usable ranges the loader tracks; firmware maps seen here have
/// fewer than ten.
pub const MAX_RANGES: usize = 64;

#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    TooManyRanges,
}

/// A set of disjoint, sorted physical ranges.
#[derive(Clone, Debug)]
pub struct RangeSet {
    ranges: [Range; MAX_RANGES],
    len: usize,
}

impl Default for RangeSet {
    fn default() -> Self {
        RangeSet { ranges: [Range::new(0, 0); MAX_RANGES], len: 0 }
    }
}

impl RangeSet {
    pub fn iter(&self) -> impl Iterator<Item = Range> + '_ {
        self.ranges[..self.len].iter().copied()
    }

    pub fn total(&self) -> u64 {
        self.iter().map(|r| r.len()).sum()
    }

    /// Adds `r`, merging with neighbours it touches or overlaps.
    pub fn insert(&mut self, r: Range) -> Result<(), Error> {
        if r.is_empty() {
            return Ok(());
        }
        let mut merged = r;
        let mut out = RangeSet::default();
        for x in self.iter() {
            if x.end < merged.start || x.start > merged.end {
                out.push(x)?;
            } else {
                merged = Range::new(merged.start.min(x.start), merged.end.max(x.end));
            }
        }
        out.push(merged)?;
        out.ranges[..out.len].sort_unstable_by_key(|x| x.start);
        *self = out;
        Ok(())
    }

    /// Takes `r` out of the set, splitting ranges it cuts through.
    pub fn remove(&mut self, r: Range) -> Result<(), Error> {
        if r.is_empty() {
            return Ok(());
        }
        let mut out = RangeSet::default();
        for x in self.iter() {
            if x.end <= r.start || x.start >= r.end {
                out.push(x)?;
                continue;
            }
            if x.start < r.start {
                out.push(Range::new(x.start, r.start))?;
            }
            if x.end > r.end {
                out.push(Range::new(r.end, x.end))?;
            }
        }
        *self = out;
        Ok(())
    }

    /// Shrinks every range to whole pages and drops what is left empty.
    pub fn page_align(&mut self) {
        let mut out = RangeSet::default();
        for x in self.iter().map(|x| x.page_aligned_inside()).filter(|x| !x.is_empty()) {
            out.ranges[out.len] = x;
            out.len += 1;
        }
        *self = out;
    }

    fn push(&mut self, r: Range) -> Result<(), Error> {
        if self.len == MAX_RANGES {
            return Err(Error::TooManyRanges);
        }
        self.ranges[self.len] = r;
        self.len += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn v(s: &RangeSet) -> Vec<(u64, u64)> {
        s.iter().map(|r| (r.start, r.end)).collect()
    }

    #[test]
    fn insert_merges_and_sorts() {
        let mut s = RangeSet::default();
        s.insert(Range::new(0x5000, 0x6000)).unwrap();
        s.insert(Range::new(0x1000, 0x2000)).unwrap();
        s.insert(Range::new(0x2000, 0x3000)).unwrap();
        assert_eq!(v(&s), [(0x1000, 0x3000), (0x5000, 0x6000)]);
        s.insert(Range::new(0x2800, 0x5800)).unwrap();
        assert_eq!(v(&s), [(0x1000, 0x6000)]);
    }

    #[test]
    fn remove_splits() {
        let mut s = RangeSet::default();
        s.insert(Range::new(0, 0x10000)).unwrap();
        s.remove(Range::new(0x2000, 0x3000)).unwrap();
        s.remove(Range::new(0xf000, 0x20000)).unwrap();
        s.remove(Range::new(0, 0x1000)).unwrap();
        assert_eq!(v(&s), [(0x1000, 0x2000), (0x3000, 0xf000)]);
        assert_eq!(s.total(), 0x1000 + 0xc000);
    }

    #[test]
    fn page_align_drops_fragments() {
        let mut s = RangeSet::default();
        s.insert(Range::new(0x100, 0x1100)).unwrap();
        s.insert(Range::new(0x1fff, 0x5001)).unwrap();
        s.page_align();
        assert_eq!(v(&s), [(0x2000, 0x5000)]);
    }

    #[test]
    fn too_many_ranges_is_an_error() {
        let mut s = RangeSet::default();
        for i in 0..MAX_RANGES as u64 {
            s.insert(Range::new(i * 0x2000, i * 0x2000 + 0x1000)).unwrap();
        }
        assert_eq!(s.insert(Range::new(0x100_0000, 0x100_1000)), Err(Error::TooManyRanges));
    }
}
