//! The feature words compared and their bits' names.

/// The compared words, in order: CPUID.1:ECX, CPUID.1:EDX, CPUID.7.0:EBX.
pub const WORDS: [&str; 3] = ["cpuid.1.ecx", "cpuid.1.edx", "cpuid.7.ebx"];

/// Bits that describe the CPU's current state rather than what it can do:
/// CPUID.1:ECX.OSXSAVE (27) mirrors CR4.OSXSAVE, which differs while a CPU
/// is still being set up.
pub const STATE_BITS: [u32; 3] = [1 << 27, 0, 0];

/// The feature words of one CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features(pub [u32; 3]);

/// Names of the bits (Intel SDM vol. 2A, CPUID; Linux's spelling).
const NAMES: [&[(u32, &str)]; 3] = [
    &[
        (0, "sse3"),
        (1, "pclmulqdq"),
        (3, "monitor"),
        (5, "vmx"),
        (9, "ssse3"),
        (12, "fma"),
        (13, "cx16"),
        (19, "sse4.1"),
        (20, "sse4.2"),
        (21, "x2apic"),
        (22, "movbe"),
        (23, "popcnt"),
        (25, "aes"),
        (26, "xsave"),
        (28, "avx"),
        (29, "f16c"),
        (30, "rdrand"),
        (31, "hypervisor"),
    ],
    &[
        (0, "fpu"),
        (3, "pse"),
        (4, "tsc"),
        (5, "msr"),
        (6, "pae"),
        (8, "cx8"),
        (9, "apic"),
        (11, "sep"),
        (12, "mtrr"),
        (13, "pge"),
        (15, "cmov"),
        (16, "pat"),
        (19, "clflush"),
        (23, "mmx"),
        (24, "fxsr"),
        (25, "sse"),
        (26, "sse2"),
        (28, "ht"),
    ],
    &[
        (0, "fsgsbase"),
        (3, "bmi1"),
        (5, "avx2"),
        (7, "smep"),
        (8, "bmi2"),
        (9, "erms"),
        (10, "invpcid"),
        (16, "avx512f"),
        (18, "rdseed"),
        (19, "adx"),
        (20, "smap"),
        (23, "clflushopt"),
        (29, "sha"),
    ],
];

/// A feature the CPU and the boot CPU disagree on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Difference {
    pub word: usize,
    pub bit: u32,
    /// True when the boot CPU has it and this CPU lacks it.
    pub missing: bool,
}

impl Difference {
    /// The error the ONLINE callback returns: -(1000 + word * 32 + bit),
    /// so the `failed` event's code alone says which feature it was.
    pub fn refusal_code(&self) -> i32 {
        -(1000 + self.word as i32 * 32 + self.bit as i32)
    }
}

impl core::fmt::Display for Difference {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match NAMES[self.word].iter().find(|(b, _)| *b == self.bit) {
            Some((_, name)) => write!(f, "{name}")?,
            None => write!(f, "{}[{}]", WORDS[self.word], self.bit)?,
        }
        write!(
            f,
            " ({} on this CPU, {} on the boot CPU)",
            self.word_state(!self.missing),
            self.word_state(self.missing)
        )
    }
}

impl Difference {
    fn word_state(&self, has: bool) -> &'static str {
        if has {
            "present"
        } else {
            "absent"
        }
    }
}

/// The first feature (lowest word, then lowest bit) `cpu` and `boot`
/// disagree on, state bits left out.
pub fn first_difference(boot: Features, cpu: Features) -> Option<Difference> {
    (0..WORDS.len()).find_map(|word| {
        let diff = (boot.0[word] ^ cpu.0[word]) & !STATE_BITS[word];
        (diff != 0).then(|| {
            let bit = diff.trailing_zeros();
            Difference { word, bit, missing: boot.0[word] & 1 << bit != 0 }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::ToString;

    #[test]
    fn equal_cpus_pass_and_state_bits_are_ignored() {
        let f = Features([0xfeda_3203, 0x0789_fbff, 0x0000_0209]);
        assert_eq!(first_difference(f, f), None);
        let mut g = f;
        g.0[0] ^= 1 << 27;
        assert_eq!(first_difference(f, g), None);
    }

    #[test]
    fn a_missing_feature_is_named() {
        let boot = Features([1 << 20 | 1 << 19, 1 << 26, 1 << 5]);
        let cpu = Features([1 << 19, 1 << 26, 0]);
        let d = first_difference(boot, cpu).unwrap();
        assert_eq!(d, Difference { word: 0, bit: 20, missing: true });
        assert_eq!(d.to_string(), "sse4.2 (absent on this CPU, present on the boot CPU)");
        assert_eq!(d.refusal_code(), -1020);
        let extra = first_difference(Features([0, 0, 0]), Features([0, 0, 1 << 5])).unwrap();
        assert_eq!(extra.to_string(), "avx2 (present on this CPU, absent on the boot CPU)");
        assert_eq!(extra.refusal_code(), -1069);
        let unnamed = first_difference(Features([0, 1 << 30, 0]), Features::default()).unwrap();
        assert_eq!(unnamed.to_string(), "cpuid.1.edx[30] (absent on this CPU, present on the boot CPU)");
    }
}
