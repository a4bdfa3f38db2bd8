//! Plugin exception tables: pairs of (instruction that may fault, where to
//! resume), which a plugin hands the loader so that its probes (e.g. a
//! VMXOFF that may find no VMX operation) fault safely. A table must not
//! send a fault anywhere outside its own plugin.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// Empty, misaligned, or not inside the plugin's image.
    Outside,
    /// An address in it lies outside the plugin's image.
    BadEntry { index: usize, address: u64 },
    /// The plugin has a table already, or every slot is taken.
    NoSlot,
}

impl core::fmt::Display for TableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TableError::Outside => write!(f, "the exception table is empty, misaligned or outside the plugin's image"),
            TableError::BadEntry { index, address } => {
                write!(f, "exception table entry {index} points outside the plugin's image ({address:#x})")
            }
            TableError::NoSlot => write!(f, "the plugin has an exception table already, or every slot is taken"),
        }
    }
}

/// Where a table of `pairs` entries at `start` ends, if it lies 8-byte
/// aligned inside the image `[base, base + size)`.
pub fn table_end(start: u64, pairs: u64, base: u64, size: u64) -> Result<u64, TableError> {
    let end = pairs.checked_mul(16).and_then(|n| start.checked_add(n)).ok_or(TableError::Outside)?;
    if pairs == 0 || !start.is_multiple_of(8) || start < base || end > base.saturating_add(size) {
        return Err(TableError::Outside);
    }
    Ok(end)
}

/// Every address of `table` (faulting instruction, resume point) lies in
/// the image.
pub fn check_entries(table: &[u64], base: u64, size: u64) -> Result<(), TableError> {
    match table.iter().position(|&a| a < base || a - base >= size) {
        Some(index) => Err(TableError::BadEntry { index: index / 2, address: table[index] }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_must_lie_in_the_image() {
        let (base, size) = (0x20_0000, 0x4000);
        assert_eq!(table_end(base + 0x100, 2, base, size), Ok(base + 0x120));
        assert_eq!(table_end(base + size - 16, 1, base, size), Ok(base + size));
        assert_eq!(table_end(base + size - 8, 1, base, size), Err(TableError::Outside));
        assert_eq!(table_end(base - 16, 1, base, size), Err(TableError::Outside));
        assert_eq!(table_end(base + 4, 1, base, size), Err(TableError::Outside));
        assert_eq!(table_end(base, 0, base, size), Err(TableError::Outside));
        assert_eq!(table_end(u64::MAX - 8, 1, base, size), Err(TableError::Outside));
        assert_eq!(table_end(base, u64::MAX, base, size), Err(TableError::Outside));
    }

    #[test]
    fn entries_must_point_into_the_image() {
        let (base, size) = (0x20_0000, 0x4000);
        assert_eq!(check_entries(&[base + 0x10, base + 0x20], base, size), Ok(()));
        assert_eq!(
            check_entries(&[base + 0x10, base + 0x20, base + 0x30, base + size], base, size),
            Err(TableError::BadEntry { index: 1, address: base + size })
        );
        assert_eq!(check_entries(&[0, base], base, size), Err(TableError::BadEntry { index: 0, address: 0 }));
    }
}
