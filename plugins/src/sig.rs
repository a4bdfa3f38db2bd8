//! Signed plugin files: the ELF image followed by a 64-byte ed25519
//! signature over the image and an 8-byte trailer magic. The signing key is
//! made per tree on the first build (never committed); the loader has the
//! public key built in.

pub const TRAILER_MAGIC: [u8; 8] = *b"MVSIG\x01\0\0";
pub const SIGNATURE_LEN: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No trailer: the file was never signed (or was cut short).
    Unsigned,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Unsigned => write!(f, "the file has no modvisor signature trailer (unsigned or truncated)"),
        }
    }
}

/// Splits a signed file into the ELF image and its signature.
pub fn split(file: &[u8]) -> Result<(&[u8], &[u8; SIGNATURE_LEN]), Error> {
    let body_len = file.len().checked_sub(SIGNATURE_LEN + TRAILER_MAGIC.len()).ok_or(Error::Unsigned)?;
    let (body, rest) = file.split_at(body_len);
    let (sig, magic) = rest.split_at(SIGNATURE_LEN);
    if magic != TRAILER_MAGIC {
        return Err(Error::Unsigned);
    }
    Ok((body, sig.try_into().map_err(|_| Error::Unsigned)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_finds_body_and_signature() {
        let mut f = b"ELFDATA".to_vec();
        f.extend_from_slice(&[7; SIGNATURE_LEN]);
        f.extend_from_slice(&TRAILER_MAGIC);
        let (body, sig) = split(&f).unwrap();
        assert_eq!(body, b"ELFDATA");
        assert_eq!(sig, &[7; SIGNATURE_LEN]);
    }

    #[test]
    fn unsigned_or_cut_files_are_refused() {
        assert_eq!(split(b"short"), Err(Error::Unsigned));
        let f = std::vec![0u8; 200];
        assert_eq!(split(&f), Err(Error::Unsigned));
        let mut g = std::vec![0u8; 100];
        g.extend_from_slice(&TRAILER_MAGIC[..7]);
        assert_eq!(split(&g), Err(Error::Unsigned));
    }
}
