//! The physical frame allocator: one bit per 4 KiB frame, set when the frame
//! is in use or is not RAM the allocator manages.
//!
//! The bitmap covers frames `0 .. top of the highest usable range`, so a bit
//! index is the frame number and alignment is physical alignment. Its
//! storage is handed in: the kernel places it with [`place_bitmap`] in
//! usable RAM and removes those frames from the set it manages.
//!
//! Allocation is lowest-address first fit. Besides being simple to reason
//! about, it keeps early allocations (page tables built while only the boot
//! map's first 4 GiB are reachable) low; [`FrameAllocator::alloc_below`]
//! states that requirement explicitly.

use crate::memory::memmap::{Range, RangeSet};
use core::fmt;

pub const PAGE_SIZE: u64 = 4096;
const BITS: u64 = u64::BITS as u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No run of `requested` free frames with the requested alignment (and
    /// below the requested limit) exists.
    OutOfMemory { requested: u64 },
    /// A count of zero, or an alignment that is not a power of two.
    BadRequest { count: u64, align_pages: u64 },
    /// An address handed to `free` is not page aligned.
    Unaligned { addr: u64 },
    /// Frames handed to `free` do not lie inside one managed range: the
    /// allocator never handed them out.
    NotManaged { addr: u64, count: u64 },
    /// A frame handed to `free` is already free (a double free, or a frame
    /// that was never allocated).
    NotAllocated { addr: u64 },
    /// The bitmap storage is smaller than [`bitmap_words`] says it must be.
    BitmapTooSmall { needed_words: usize, given_words: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::OutOfMemory { requested } => write!(
                f,
                "out of physical memory: no free run of {requested} contiguous 4 KiB frame(s) \
                 ({} KiB); give the machine more RAM or free memory first",
                requested * 4
            ),
            Error::BadRequest { count, align_pages } => write!(
                f,
                "bad frame request: {count} frame(s) aligned to {align_pages} frame(s) \
                 (the count must be at least 1 and the alignment a power of two)"
            ),
            Error::Unaligned { addr } => {
                write!(f, "cannot free frames at {addr:#x}: the address is not 4 KiB aligned")
            }
            Error::NotManaged { addr, count } => write!(
                f,
                "cannot free {count} frame(s) at {addr:#x}: the frame allocator never handed \
                 out that memory"
            ),
            Error::NotAllocated { addr } => write!(
                f,
                "cannot free the frame at {addr:#x}: it is already free (double free, or it \
                 was never allocated)"
            ),
            Error::BitmapTooSmall { needed_words, given_words } => {
                write!(f, "the frame bitmap needs {needed_words} words but only {given_words} were given")
            }
        }
    }
}

/// Words of bitmap needed to manage `usable` (after shrinking it to whole
/// pages).
pub fn bitmap_words(usable: &RangeSet) -> usize {
    let top = usable.iter().map(|r| r.page_aligned_inside()).filter(|r| !r.is_empty()).map(|r| r.end).max();
    (top.unwrap_or(0) / PAGE_SIZE).div_ceil(BITS) as usize
}

/// Where the bitmap for `usable` goes: the start of the first usable range
/// that holds it whole and ends at or below `limit` (memory the caller can
/// already write). Returns the page-rounded range it occupies.
pub fn place_bitmap(usable: &RangeSet, limit: u64) -> Option<Range> {
    let bytes = (bitmap_words(usable) as u64 * 8).next_multiple_of(PAGE_SIZE);
    usable
        .iter()
        .map(|r| r.page_aligned_inside())
        .find(|r| r.len() >= bytes && r.start + bytes <= limit)
        .map(|r| Range::new(r.start, r.start + bytes))
}

pub struct FrameAllocator<'a> {
    /// Bit `n` set: frame `n` is allocated or not managed.
    bitmap: &'a mut [u64],
    /// The managed frames, page aligned.
    managed: RangeSet,
    /// Number of frames the bitmap describes.
    frames: u64,
    total: u64,
    free: u64,
    /// Every frame below this one is in use: the search starts here.
    lowest_free: u64,
}

impl<'a> FrameAllocator<'a> {
    /// Manages the whole pages of `usable`, every frame free. `storage` must
    /// hold at least [`bitmap_words`] words and must not lie in `usable`.
    pub fn new(storage: &'a mut [u64], usable: &RangeSet) -> Result<Self, Error> {
        let mut managed = usable.clone();
        managed.page_align();
        let needed_words = bitmap_words(&managed);
        if storage.len() < needed_words {
            return Err(Error::BitmapTooSmall { needed_words, given_words: storage.len() });
        }
        let bitmap = &mut storage[..needed_words];
        bitmap.fill(u64::MAX);
        let mut a =
            FrameAllocator { bitmap, frames: needed_words as u64 * BITS, total: 0, free: 0, lowest_free: 0, managed };
        for r in a.managed.clone().iter() {
            let (start, end) = (r.start / PAGE_SIZE, r.end / PAGE_SIZE);
            a.clear_bits(start, end);
            a.total += end - start;
        }
        a.free = a.total;
        Ok(a)
    }

    /// `count` contiguous frames whose first frame number is a multiple of
    /// `align_pages`; returns the physical address of the first.
    pub fn alloc(&mut self, count: u64, align_pages: u64) -> Result<u64, Error> {
        self.alloc_below(count, align_pages, u64::MAX)
    }

    /// Like [`alloc`](Self::alloc), but every frame ends at or below the
    /// physical address `limit`.
    pub fn alloc_below(&mut self, count: u64, align_pages: u64, limit: u64) -> Result<u64, Error> {
        if count == 0 || !align_pages.is_power_of_two() {
            return Err(Error::BadRequest { count, align_pages });
        }
        let end = self.frames.min(limit / PAGE_SIZE);
        let first_free = self.first_clear_from(self.lowest_free);
        self.lowest_free = first_free.unwrap_or(self.frames);
        let mut i = self.lowest_free;
        loop {
            i = self.first_clear_from(i).ok_or(Error::OutOfMemory { requested: count })?;
            i = i.next_multiple_of(align_pages);
            if i.checked_add(count).is_none_or(|e| e > end) {
                return Err(Error::OutOfMemory { requested: count });
            }
            match self.first_set_in(i, i + count) {
                // Any other aligned start below `used + 1` would include
                // frame `used`, so none of them can fit either.
                Some(used) => i = used + 1,
                None => break,
            }
        }
        self.set_bits(i, i + count);
        self.free -= count;
        if i == self.lowest_free {
            self.lowest_free = i + count;
        }
        Ok(i * PAGE_SIZE)
    }

    /// Returns `count` frames starting at `addr`. Nothing changes unless all
    /// of them are currently allocated.
    pub fn free(&mut self, addr: u64, count: u64) -> Result<(), Error> {
        if count == 0 {
            return Err(Error::BadRequest { count, align_pages: 1 });
        }
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Unaligned { addr });
        }
        let end = count.checked_mul(PAGE_SIZE).and_then(|b| addr.checked_add(b));
        let inside = end.is_some_and(|end| self.managed.iter().any(|r| r.start <= addr && end <= r.end));
        if !inside {
            return Err(Error::NotManaged { addr, count });
        }
        let (first, last) = (addr / PAGE_SIZE, addr / PAGE_SIZE + count);
        if let Some(f) = self.first_clear_in(first, last) {
            return Err(Error::NotAllocated { addr: f * PAGE_SIZE });
        }
        self.clear_bits(first, last);
        self.free += count;
        self.lowest_free = self.lowest_free.min(first);
        Ok(())
    }

    /// Frames managed (usable RAM minus what was reserved before).
    pub fn total_frames(&self) -> u64 {
        self.total
    }

    pub fn free_frames(&self) -> u64 {
        self.free
    }

    pub fn used_frames(&self) -> u64 {
        self.total - self.free
    }

    /// The first clear bit at or after `i`.
    fn first_clear_from(&self, i: u64) -> Option<u64> {
        let mut w = i / BITS;
        // Bits below `i` in its word count as set.
        let mut word = self.bitmap.get(w as usize)? | low_mask(i % BITS);
        loop {
            if word != u64::MAX {
                return Some(w * BITS + word.trailing_ones() as u64);
            }
            w += 1;
            word = *self.bitmap.get(w as usize)?;
        }
    }

    /// The first set bit in `[start, end)`.
    fn first_set_in(&self, start: u64, end: u64) -> Option<u64> {
        self.first_in(start, end, |w| w)
    }

    /// The first clear bit in `[start, end)`.
    fn first_clear_in(&self, start: u64, end: u64) -> Option<u64> {
        self.first_in(start, end, |w| !w)
    }

    /// The first bit in `[start, end)` that is set in `view(word)`.
    fn first_in(&self, start: u64, end: u64, view: impl Fn(u64) -> u64) -> Option<u64> {
        let mut i = start;
        while i < end {
            let bit = i % BITS;
            let span = (BITS - bit).min(end - i);
            let bits = (view(self.bitmap[(i / BITS) as usize]) >> bit) & span_mask(span);
            if bits != 0 {
                return Some(i + bits.trailing_zeros() as u64);
            }
            i += span;
        }
        None
    }

    fn set_bits(&mut self, start: u64, end: u64) {
        self.update_bits(start, end, |w, m| w | m);
    }

    fn clear_bits(&mut self, start: u64, end: u64) {
        self.update_bits(start, end, |w, m| w & !m);
    }

    fn update_bits(&mut self, start: u64, end: u64, op: impl Fn(u64, u64) -> u64) {
        let mut i = start;
        while i < end {
            let bit = i % BITS;
            let span = (BITS - bit).min(end - i);
            let word = &mut self.bitmap[(i / BITS) as usize];
            *word = op(*word, span_mask(span) << bit);
            i += span;
        }
    }
}

/// The lowest `n` bits (n < 64).
fn low_mask(n: u64) -> u64 {
    (1u64 << n) - 1
}

/// The lowest `n` bits (1 <= n <= 64).
fn span_mask(n: u64) -> u64 {
    u64::MAX >> (BITS - n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    const P: u64 = PAGE_SIZE;

    fn set(ranges: &[(u64, u64)]) -> RangeSet {
        let mut s = RangeSet::default();
        for &(a, b) in ranges {
            s.insert(Range::new(a, b)).unwrap();
        }
        s
    }

    fn storage(usable: &RangeSet) -> Vec<u64> {
        vec![0; bitmap_words(usable)]
    }

    #[test]
    fn counters_start_full_and_track_alloc_and_free() {
        let usable = set(&[(0x10_0000, 0x20_0000), (0x30_0000, 0x30_8000)]);
        let mut st = storage(&usable);
        let mut a = FrameAllocator::new(&mut st, &usable).unwrap();
        assert_eq!(a.total_frames(), 256 + 8);
        assert_eq!(a.free_frames(), 264);
        let x = a.alloc(3, 1).unwrap();
        assert_eq!(x, 0x10_0000);
        assert_eq!((a.free_frames(), a.used_frames()), (261, 3));
        a.free(x, 3).unwrap();
        assert_eq!((a.free_frames(), a.used_frames()), (264, 0));
    }

    #[test]
    fn partial_pages_are_not_managed() {
        let usable = set(&[(0x1800, 0x5800)]);
        let mut st = storage(&usable);
        let mut a = FrameAllocator::new(&mut st, &usable).unwrap();
        assert_eq!(a.total_frames(), 3);
        assert_eq!(a.alloc(1, 1), Ok(0x2000));
        assert_eq!(a.free(0x1000, 1), Err(Error::NotManaged { addr: 0x1000, count: 1 }));
    }

    #[test]
    fn alignment_is_physical() {
        // Starts one page above a 2 MiB boundary.
        let usable = set(&[(0x20_1000, 0x80_0000)]);
        let mut st = storage(&usable);
        let mut a = FrameAllocator::new(&mut st, &usable).unwrap();
        let x = a.alloc(1, 512).unwrap();
        assert_eq!(x, 0x40_0000);
        let y = a.alloc(4, 4).unwrap();
        assert_eq!(y % (4 * P), 0);
        assert_eq!(y, 0x20_4000, "the lowest 4-aligned run, below the 2 MiB one");
        let z = a.alloc(1, 1).unwrap();
        assert_eq!(z, 0x20_1000, "single frames fill the gap left by alignment");
    }

    #[test]
    fn holes_between_ranges_are_never_handed_out() {
        let usable = set(&[(0x1000, 0x3000), (0x5000, 0x8000)]);
        let mut st = storage(&usable);
        let mut a = FrameAllocator::new(&mut st, &usable).unwrap();
        // Three contiguous frames only exist in the second range.
        assert_eq!(a.alloc(3, 1), Ok(0x5000));
        assert_eq!(a.alloc(2, 1), Ok(0x1000));
        assert_eq!(a.alloc(1, 1), Err(Error::OutOfMemory { requested: 1 }));
        assert_eq!(a.free(0x3000, 1), Err(Error::NotManaged { addr: 0x3000, count: 1 }));
        // A run straddling the hole is refused even though both ends are managed.
        assert_eq!(a.free(0x2000, 4), Err(Error::NotManaged { addr: 0x2000, count: 4 }));
    }

    #[test]
    fn fragmentation_needs_a_contiguous_run() {
        let usable = set(&[(0, 16 * P)]);
        let mut st = storage(&usable);
        let mut a = FrameAllocator::new(&mut st, &usable).unwrap();
        let frames: Vec<u64> = (0..16).map(|_| a.alloc(1, 1).unwrap()).collect();
        for f in frames.iter().step_by(2) {
            a.free(*f, 1).unwrap();
        }
        assert_eq!(a.free_frames(), 8);
        assert_eq!(a.alloc(2, 1), Err(Error::OutOfMemory { requested: 2 }));
        a.free(frames[5], 1).unwrap();
        assert_eq!(a.alloc(3, 1), Ok(4 * P));
        assert_eq!(a.alloc(1, 1), Ok(0));
    }

    #[test]
    fn exhaustion_then_recovery() {
        let usable = set(&[(0x10_0000, 0x10_0000 + 200 * P)]);
        let mut st = storage(&usable);
        let mut a = FrameAllocator::new(&mut st, &usable).unwrap();
        let mut got = Vec::new();
        while let Ok(x) = a.alloc(1, 1) {
            got.push(x);
        }
        assert_eq!(got.len(), 200);
        assert_eq!(a.free_frames(), 0);
        assert_eq!(a.alloc(1, 1), Err(Error::OutOfMemory { requested: 1 }));
        for x in got {
            a.free(x, 1).unwrap();
        }
        assert_eq!(a.free_frames(), 200);
        assert_eq!(a.alloc(200, 1), Ok(0x10_0000));
        assert_eq!(a.alloc(1, 1), Err(Error::OutOfMemory { requested: 1 }));
    }

    #[test]
    fn double_free_and_never_allocated_are_errors() {
        let usable = set(&[(0, 64 * P)]);
        let mut st = storage(&usable);
        let mut a = FrameAllocator::new(&mut st, &usable).unwrap();
        let x = a.alloc(4, 1).unwrap();
        assert_eq!(a.free(x + 8 * P, 1), Err(Error::NotAllocated { addr: x + 8 * P }));
        a.free(x, 4).unwrap();
        assert_eq!(a.free(x, 4), Err(Error::NotAllocated { addr: x }));
        // A partly allocated run is refused whole: nothing is freed.
        let y = a.alloc(2, 1).unwrap();
        assert_eq!(a.free(y, 3), Err(Error::NotAllocated { addr: y + 2 * P }));
        assert_eq!(a.used_frames(), 2);
        assert_eq!(a.free(y + 1, 1), Err(Error::Unaligned { addr: y + 1 }));
        assert_eq!(a.free(y, 0), Err(Error::BadRequest { count: 0, align_pages: 1 }));
        assert_eq!(a.free(!(P - 1), 2), Err(Error::NotManaged { addr: !(P - 1), count: 2 }));
    }

    #[test]
    fn bad_requests_are_refused() {
        let usable = set(&[(0, 64 * P)]);
        let mut st = storage(&usable);
        let mut a = FrameAllocator::new(&mut st, &usable).unwrap();
        assert_eq!(a.alloc(0, 1), Err(Error::BadRequest { count: 0, align_pages: 1 }));
        assert_eq!(a.alloc(1, 3), Err(Error::BadRequest { count: 1, align_pages: 3 }));
        assert_eq!(a.alloc(1, 0), Err(Error::BadRequest { count: 1, align_pages: 0 }));
        assert_eq!(a.alloc(u64::MAX, 1), Err(Error::OutOfMemory { requested: u64::MAX }));
        assert_eq!(a.free_frames(), 64);
        // Frame 0 is aligned to everything; frame 1 to nothing above 1.
        assert_eq!(a.alloc(1, 1 << 63), Ok(0));
        assert_eq!(a.alloc(1, 1 << 63), Err(Error::OutOfMemory { requested: 1 }));
    }

    #[test]
    fn alloc_below_respects_the_limit() {
        let usable = set(&[(0x1000, 0x4000), (0x1_0000_0000, 0x1_0001_0000)]);
        let mut st = storage(&usable);
        let mut a = FrameAllocator::new(&mut st, &usable).unwrap();
        assert_eq!(a.alloc_below(3, 1, 0x4000), Ok(0x1000));
        assert_eq!(a.alloc_below(1, 1, 0x1_0000_0000), Err(Error::OutOfMemory { requested: 1 }));
        assert_eq!(a.alloc(1, 1), Ok(0x1_0000_0000));
    }

    #[test]
    fn small_storage_is_refused() {
        let usable = set(&[(0, 65 * 64 * P)]);
        let mut st = vec![0; 64];
        assert_eq!(
            FrameAllocator::new(&mut st, &usable).err(),
            Some(Error::BitmapTooSmall { needed_words: 65, given_words: 64 })
        );
    }

    #[test]
    fn bitmap_placement() {
        // 1 GiB of frames needs 32 KiB of bitmap.
        let usable = set(&[(0x1000, 0x5000), (0x10_0000, 0x4000_0000)]);
        assert_eq!(bitmap_words(&usable), 0x4000_0000 / P as usize / 64);
        assert_eq!(place_bitmap(&usable, u64::MAX), Some(Range::new(0x10_0000, 0x10_8000)));
        assert_eq!(place_bitmap(&usable, 0x10_7000), None);
        // Page-rounded: a single word still takes a whole page.
        let small = set(&[(0, 8 * P)]);
        assert_eq!(place_bitmap(&small, u64::MAX), Some(Range::new(0, P)));
        assert_eq!(place_bitmap(&RangeSet::default(), u64::MAX), None);
    }

    #[test]
    fn errors_explain_themselves() {
        use std::string::ToString;
        let oom = Error::OutOfMemory { requested: 512 }.to_string();
        assert!(oom.contains("512") && oom.contains("2048 KiB"), "{oom}");
        assert!(Error::NotAllocated { addr: 0x5000 }.to_string().contains("double free"));
    }

    /// Random alloc/free against a model that knows, frame by frame, what
    /// is free: the allocator must return exactly the lowest aligned free
    /// run, fail exactly when none exists, and keep its counters right.
    #[test]
    fn matches_a_model_under_random_operations() {
        struct XorShift(u64);
        impl XorShift {
            fn next(&mut self) -> u64 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0
            }
        }
        for seed in 1..=40u64 {
            let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            // A few ranges with holes, some not word aligned.
            let usable = set(&[(3 * P, 70 * P), (90 * P, 200 * P), (256 * P, 300 * P)]);
            let mut st = storage(&usable);
            let mut a = FrameAllocator::new(&mut st, &usable).unwrap();
            let managed: Vec<bool> =
                (0..300).map(|f| usable.iter().any(|r| r.start <= f * P && f * P < r.end)).collect();
            // `model[f]`: frame f is free.
            let mut model = managed.clone();
            let mut live: Vec<(u64, u64)> = Vec::new();
            for _ in 0..3000 {
                if live.is_empty() || !rng.next().is_multiple_of(3) {
                    let count = 1 + rng.next() % 12;
                    let align = 1 << (rng.next() % 5);
                    let limit = if rng.next().is_multiple_of(4) { (rng.next() % 300) * P } else { u64::MAX };
                    let expect = (0..300u64).step_by(align as usize).find(|&s| {
                        s + count <= 300 && (s + count) * P <= limit && (s..s + count).all(|f| model[f as usize])
                    });
                    let got = a.alloc_below(count, align, limit);
                    match expect {
                        Some(s) => {
                            assert_eq!(got, Ok(s * P), "seed {seed}: {count} frames aligned {align}");
                            (s..s + count).for_each(|f| model[f as usize] = false);
                            live.push((s * P, count));
                        }
                        None => assert_eq!(got, Err(Error::OutOfMemory { requested: count })),
                    }
                } else {
                    let (addr, count) = live.swap_remove((rng.next() % live.len() as u64) as usize);
                    // Sometimes free one frame too many first: when that
                    // frame is free or not managed, the whole call must be
                    // refused and change nothing.
                    let next = (addr / P + count) as usize;
                    let next_allocated = next < 300 && managed[next] && !model[next];
                    if rng.next().is_multiple_of(4) && !next_allocated {
                        let free_before = a.free_frames();
                        let expect = if next < 300 && model[next] {
                            Error::NotAllocated { addr: next as u64 * P }
                        } else {
                            Error::NotManaged { addr, count: count + 1 }
                        };
                        assert_eq!(a.free(addr, count + 1), Err(expect));
                        assert_eq!(a.free_frames(), free_before);
                    }
                    a.free(addr, count).unwrap();
                    let first = (addr / P) as usize;
                    (first..first + count as usize).for_each(|f| model[f] = true);
                    assert_eq!(a.free(addr, 1), Err(Error::NotAllocated { addr }), "double free of {addr:#x}");
                }
                let free = model.iter().filter(|f| **f).count() as u64;
                assert_eq!(a.free_frames(), free, "seed {seed}");
                assert_eq!(a.used_frames(), a.total_frames() - free);
            }
        }
    }
}
