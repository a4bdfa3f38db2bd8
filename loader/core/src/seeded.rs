//! A seeded random source for the in-image tests that make random choices
//! (`seed=` on the command line): the same seed makes the same choices, so
//! a failed run replays. splitmix64: small, and every seed (0 included)
//! gives a full-period stream.

#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub const fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0; the slight bias of `%` does not
    /// matter for a test's choices).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A non-empty subset of `0..n` as a bitmap (`n` in 1..=64).
    pub fn subset(&mut self, n: u32) -> u64 {
        let all = if n >= 64 { u64::MAX } else { (1 << n) - 1 };
        loop {
            let bits = self.next_u64() & all;
            if bits != 0 {
                return bits;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_choices() {
        let (mut a, mut b, mut c) = (Rng::new(7), Rng::new(7), Rng::new(8));
        let xs: std::vec::Vec<u64> = (0..16).map(|_| a.next_u64()).collect();
        let ys: std::vec::Vec<u64> = (0..16).map(|_| b.next_u64()).collect();
        let zs: std::vec::Vec<u64> = (0..16).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert_ne!(Rng::new(0).next_u64(), 0);
    }

    #[test]
    fn choices_stay_in_range_and_cover_it() {
        let mut r = Rng::new(1);
        let mut seen = [false; 5];
        for _ in 0..200 {
            let n = r.below(5);
            assert!(n < 5);
            seen[n as usize] = true;
        }
        assert!(seen.iter().all(|s| *s), "{seen:?}");
        let mut union = 0;
        for _ in 0..200 {
            let s = r.subset(6);
            assert!(s != 0 && s < 1 << 6, "{s:#x}");
            union |= s;
        }
        assert_eq!(union, 0b11_1111);
        assert_eq!(r.subset(1), 1);
        assert_ne!(r.subset(64), 0);
    }
}
