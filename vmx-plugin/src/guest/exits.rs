//! Exit counters per basic exit reason (SDM Vol. 3D, Appendix C).

pub const EXCEPTION_OR_NMI: u32 = 0;
pub const EXTERNAL_INTERRUPT: u32 = 1;
pub const TRIPLE_FAULT: u32 = 2;
pub const CPUID: u32 = 10;
pub const HLT: u32 = 12;
pub const IO: u32 = 30;
pub const RDMSR: u32 = 31;
pub const WRMSR: u32 = 32;
pub const INVALID_GUEST_STATE: u32 = 33;
pub const EPT_VIOLATION: u32 = 48;

/// Reasons this VMM counts by name; the rest share one slot.
const NAMED: [(u32, &str); 10] = [
    (EXCEPTION_OR_NMI, "exception-or-nmi"),
    (EXTERNAL_INTERRUPT, "external-interrupt"),
    (TRIPLE_FAULT, "triple-fault"),
    (CPUID, "cpuid"),
    (HLT, "hlt"),
    (IO, "io"),
    (RDMSR, "rdmsr"),
    (WRMSR, "wrmsr"),
    (INVALID_GUEST_STATE, "invalid-guest-state"),
    (EPT_VIOLATION, "ept-violation"),
];

#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    named: [u64; NAMED.len()],
    other: u64,
}

impl Counts {
    pub fn count(&mut self, reason: u32) {
        match NAMED.iter().position(|(r, _)| *r == reason) {
            Some(i) => self.named[i] += 1,
            None => self.other += 1,
        }
    }

    pub fn total(&self) -> u64 {
        self.named.iter().sum::<u64>() + self.other
    }

    /// (name, count) of every reason seen.
    pub fn seen(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        NAMED.iter().zip(self.named).map(|((_, n), c)| (*n, c)).chain([("other", self.other)]).filter(|(_, c)| *c > 0)
    }
}
