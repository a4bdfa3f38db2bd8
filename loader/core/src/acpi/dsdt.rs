//! What the loader reads from the DSDT, found in one pass over its AML:
//! the `\_S5_` sleep type (power-off) and the I/O base of QEMU's CPU
//! hotplug block. Each search alone walks the whole table; the DSDT is
//! the largest table the loader reads.

use super::s5::{self, SleepType};
use plugins::acpihp;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Found {
    pub s5: Option<SleepType>,
    pub cpu_hotplug: Option<u16>,
}

/// Both findings, with the answers of `s5::find` and
/// `acpihp::find_in_dsdt`: the first `_S5_` package that decodes, and
/// the first PRST OperationRegion (which decodes or not).
pub fn scan(aml: &[u8]) -> Found {
    let mut found = Found::default();
    let mut prst_seen = false;
    for (pos, &byte) in aml.iter().enumerate() {
        match byte {
            b'_' if found.s5.is_none() => found.s5 = s5::at_name(aml, pos),
            0x5b if !prst_seen && aml[pos..].starts_with(&acpihp::PRST_HEAD) => {
                prst_seen = true;
                found.cpu_hotplug = acpihp::block_at(aml, pos);
            }
            _ => continue,
        }
        if found.s5.is_some() && prst_seen {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const S5: [u8; 13] = [0x10, 0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x00, 0x05, 0x00, 0x00];
    const PRST: [u8; 12] = [0x5b, 0x80, b'P', b'R', b'S', b'T', 0x01, 0x0b, 0xd8, 0x0c, 0x0a, 0x0c];

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.iter().flat_map(|p| p.iter().copied()).collect()
    }

    fn agrees_with_the_two_searches(aml: &[u8]) -> Found {
        let found = scan(aml);
        assert_eq!(found.s5, s5::find(aml), "{aml:x?}");
        assert_eq!(found.cpu_hotplug, acpihp::find_in_dsdt(aml), "{aml:x?}");
        found
    }

    #[test]
    fn finds_both_in_either_order() {
        let want = Found { s5: Some(SleepType { a: 0, b: 5 }), cpu_hotplug: Some(0x0cd8) };
        assert_eq!(agrees_with_the_two_searches(&cat(&[&S5, &PRST])), want);
        assert_eq!(agrees_with_the_two_searches(&cat(&[&[1, 2, 3], &PRST, &[0x5b, b'_'], &S5])), want);
    }

    #[test]
    fn finds_each_alone_and_none_in_nothing() {
        assert_eq!(agrees_with_the_two_searches(&S5).cpu_hotplug, None);
        assert_eq!(agrees_with_the_two_searches(&PRST).s5, None);
        assert_eq!(agrees_with_the_two_searches(&[]), Found::default());
    }

    #[test]
    fn a_bad_s5_is_skipped_and_a_bad_prst_counts() {
        // `_S5_` without a NameOp, then a good one; a short region first.
        let bad_s5 = [0x00, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x01, 0x01, 0x00, 0x00];
        let short_prst = [0x5b, 0x80, b'P', b'R', b'S', b'T', 0x01, 0x0b, 0xd8, 0x0c, 0x0a, 0x04];
        let found = agrees_with_the_two_searches(&cat(&[&bad_s5, &short_prst, &S5, &PRST]));
        assert_eq!(found, Found { s5: Some(SleepType { a: 0, b: 5 }), cpu_hotplug: None });
    }

    #[test]
    fn truncated_tables_are_no_panic() {
        let whole = cat(&[&S5, &PRST]);
        for end in 0..whole.len() {
            agrees_with_the_two_searches(&whole[..end]);
        }
    }
}
