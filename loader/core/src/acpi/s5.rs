//! The S5 (soft-off) sleep type from the DSDT's `\_S5_` package.
//!
//! No AML interpreter builds on stable Rust, and power-off needs exactly one
//! value: the first two integers of the package named `_S5_` (ACPI 6.5,
//! 7.4.2). This decodes just the encodings firmware uses for it: a NameOp
//! (0x08) for `_S5_` (optionally with a root `\` prefix), a PackageOp (0x12)
//! with a PkgLength, a NumElements byte, then integer data objects (ZeroOp,
//! OneOp, BytePrefix, WordPrefix).

/// SLP_TYPa and SLP_TYPb for S5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SleepType {
    pub a: u8,
    pub b: u8,
}

const NAME_OP: u8 = 0x08;
const PACKAGE_OP: u8 = 0x12;

pub fn find(aml: &[u8]) -> Option<SleepType> {
    let mut at = 0;
    while let Some(pos) = find_from(aml, at, NAME) {
        at = pos + 1;
        if let Some(s5) = at_name(aml, pos) {
            return Some(s5);
        }
    }
    None
}

/// The name `find` looks for.
pub const NAME: &[u8; 4] = b"_S5_";

/// The sleep type if `aml[pos..]` is the name of an `_S5_` package
/// declaration (for scanners that look for several things in one pass).
pub fn at_name(aml: &[u8], pos: usize) -> Option<SleepType> {
    if aml.get(pos..pos + 4)? != NAME {
        return None;
    }
    let name_op_ok =
        (pos >= 1 && aml[pos - 1] == NAME_OP) || (pos >= 2 && aml[pos - 1] == b'\\' && aml[pos - 2] == NAME_OP);
    if !name_op_ok {
        return None;
    }
    let mut p = pos + 4;
    if aml.get(p) != Some(&PACKAGE_OP) {
        return None;
    }
    p += 1;
    // PkgLength: bits 7-6 of the lead byte give the count of extra bytes.
    let lead = *aml.get(p)?;
    p += 1 + (lead >> 6) as usize;
    let elements = *aml.get(p)?;
    p += 1;
    if elements < 2 {
        return None;
    }
    let (a, len_a) = integer(aml.get(p..)?)?;
    let (b, _) = integer(aml.get(p + len_a..)?)?;
    Some(SleepType { a, b })
}

/// An integer data object small enough for a SLP_TYP field: value, length.
fn integer(aml: &[u8]) -> Option<(u8, usize)> {
    match *aml.first()? {
        0x00 => Some((0, 1)),
        0x01 => Some((1, 1)),
        0x0a => Some((*aml.get(1)?, 2)),
        0x0b => Some((*aml.get(1)?, 3)),
        // SLP_TYP is three bits; a bare byte is how some firmware writes it.
        v if v < 8 => Some((v, 1)),
        _ => None,
    }
}

fn find_from(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_style_package() {
        // Name (_S5, Package (0x04) { Zero, Zero, Zero, Zero })
        let aml = [0x10, 0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00];
        assert_eq!(find(&aml), Some(SleepType { a: 0, b: 0 }));
    }

    #[test]
    fn byte_prefixed_and_rooted() {
        // Name (\_S5, Package (0x02) { 0x07, 0x05 })
        let aml = [0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x08, 0x02, 0x0a, 0x07, 0x0a, 0x05];
        assert_eq!(find(&aml), Some(SleepType { a: 7, b: 5 }));
    }

    #[test]
    fn references_that_are_not_the_definition_are_skipped() {
        // A method calling _S5_ first, then the real definition.
        let aml = [0x14, b'_', b'S', b'5', b'_', 0x00, 0x08, b'_', b'S', b'5', b'_', 0x12, 0x05, 0x02, 0x01, 0x01];
        assert_eq!(find(&aml), Some(SleepType { a: 1, b: 1 }));
    }

    #[test]
    fn missing_or_truncated_gives_none() {
        assert_eq!(find(&[]), None);
        assert_eq!(find(&[0x08, b'_', b'S', b'5', b'_', 0x12]), None);
        assert_eq!(find(&[0x08, b'_', b'S', b'5', b'_', 0x12, 0x04, 0x02, 0x0a]), None);
    }
}
