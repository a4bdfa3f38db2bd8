//! Damaged files: truncations, flipped bytes and hostile header fields
//! must give an error or a plan that keeps the kernel's invariants, never
//! a panic.

use super::*;

/// xorshift64: deterministic, so a failure names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Parses `file`; a plan that comes out must be usable without panicking
/// and keep the invariants the kernel relies on.
fn exercise(file: &[u8]) -> bool {
    let Ok(plan) = Plan::parse(file) else { return false };
    assert!(plan.size <= MAX_IMAGE_SIZE && plan.size % PAGE_SIZE == 0);
    let mut end = 0;
    for r in plan.regions() {
        assert_eq!(r.offset, end, "regions are contiguous");
        assert!(r.len > 0 && r.len % PAGE_SIZE == 0);
        end += r.len;
    }
    assert_eq!(end, plan.size, "regions cover the image");
    assert!(plan.descriptor + DESCRIPTOR_SIZE <= plan.size);
    let mut image = vec![0; plan.size as usize];
    plan.lay_out(&mut image);
    let _ = plan.relocate(&mut image, 0x7000_0000, |_| Some(0x1234));
    let _ = plan.check_descriptor(&image);
    true
}

/// Values that break size and offset arithmetic.
fn nasty(rng: &mut Rng, len: u64) -> u64 {
    let values =
        [0, 1, 7, 8, PAGE_SIZE, len - 1, len, len + 1, 1 << 31, 1 << 32, u64::MAX, u64::MAX - 7, i64::MAX as u64];
    if rng.below(4) == 0 {
        rng.next()
    } else {
        values[rng.below(values.len())]
    }
}

#[test]
fn fuzz_truncations() {
    let file = valid();
    for cut in 0..file.len() {
        assert!(!exercise(&file[..cut]), "a file cut at {cut} bytes parsed");
    }
}

#[test]
fn fuzz_byte_flips() {
    let file = valid();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut buf = file.clone();
    let mut valid = 0;
    for _ in 0..20_000 {
        buf.copy_from_slice(&file);
        for _ in 0..1 + rng.below(8) {
            // Mostly the headers and tables, where a flip changes meaning.
            let at = if rng.below(4) == 0 { rng.below(buf.len()) } else { rng.below(0x400.min(buf.len())) };
            buf[at] ^= 1 << rng.below(8);
        }
        valid += usize::from(exercise(&buf));
    }
    // Both outcomes must be common, or the cases test little.
    assert!((2_000..18_000).contains(&valid), "{valid} of 20000 flipped files parsed");
}

#[test]
fn fuzz_header_fields() {
    let file = valid();
    let len = file.len() as u64;
    let shoff = u64::from_le_bytes(file[40..48].try_into().unwrap()) as usize;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut buf = file.clone();
    let mut valid = 0;
    for _ in 0..20_000 {
        buf.copy_from_slice(&file);
        for _ in 0..1 + rng.below(3) {
            let value = nasty(&mut rng, len);
            // An 8-byte aligned word in the file header, program headers,
            // section headers, or the tables of the read-only segment.
            let at = match rng.below(4) {
                0 => rng.below(8) * 8,
                1 => PHDRS + rng.below(3 * PHDR_SIZE / 8) * 8,
                2 => shoff + rng.below((file.len() - shoff) / 8) * 8,
                _ => rng.below(0x400 / 8) * 8,
            };
            let width = [2, 4, 8][rng.below(3)];
            let end = (at + width).min(buf.len());
            buf[at..end].copy_from_slice(&value.to_le_bytes()[..end - at]);
        }
        valid += usize::from(exercise(&buf));
    }
    assert!((1_000..19_000).contains(&valid), "{valid} of 20000 files with changed fields parsed");
}
