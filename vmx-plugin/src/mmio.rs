//! What an MMIO access did, from the faulting instruction's bytes: a small
//! decoder for the MOV forms compilers emit for device registers (88, 89,
//! 8A, 8B, C6 /0, C7 /0 with legacy prefixes, REX, ModRM, SIB and
//! displacements; SDM vol. 2, "MOV"), and how its register operand is
//! read and written. Anything else is refused, and the VM stops with the
//! bytes in its report. Only the operand matters: the address comes with
//! the EPT violation, so the ModRM addressing is decoded for its length.
//! Pure, tested on the host.

use core::fmt;

/// The longest x86 instruction.
pub const MAX_LEN: usize = 15;

/// The code segment's default sizes (CS.L, CS.D).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bits {
    B64,
    B32,
}

/// The register or immediate side of the access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    /// General register `index` (0 RAX, 1 RCX, 2 RDX, 3 RBX, 4 RSP, 5 RBP,
    /// 6 RSI, 7 RDI, 8..15 R8..R15); `high_byte`: AH, CH, DH or BH
    /// (`index` is then 0..3).
    Reg { index: u8, high_byte: bool },
    /// The value a MOV of an immediate stores (sign-extended to the size).
    Imm(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// The instruction's length.
    pub len: usize,
    /// Bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// A store to the MMIO range (else a load into the register).
    pub write: bool,
    pub operand: Operand,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Not one of the MOV forms (opcode byte at `at`).
    Unsupported { at: usize },
    /// The bytes end before the instruction does.
    Truncated,
    /// A register operand: no memory access at all.
    NotMemory,
    /// 16-bit addressing (real mode, or a 67 prefix in 32-bit code).
    Addressing16,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Unsupported { at } => write!(f, "byte {at} is no MOV to or from memory modvisor decodes"),
            Error::Truncated => write!(f, "the instruction is longer than its bytes"),
            Error::NotMemory => write!(f, "the MOV has no memory operand"),
            Error::Addressing16 => write!(f, "16-bit addressing is not decoded"),
        }
    }
}

/// Reads bytes one by one, refusing to run past the end.
struct Bytes<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Bytes<'_> {
    fn next(&mut self) -> Result<u8, Error> {
        let b = *self.bytes.get(self.at).ok_or(Error::Truncated)?;
        self.at += 1;
        Ok(b)
    }

    fn skip(&mut self, n: usize) -> Result<(), Error> {
        if self.at + n > self.bytes.len() {
            return Err(Error::Truncated);
        }
        self.at += n;
        Ok(())
    }

    fn imm(&mut self, n: usize) -> Result<u64, Error> {
        (0..n).try_fold(0u64, |v, i| Ok(v | (self.next()? as u64) << (8 * i)))
    }
}

/// Decodes the MOV at the start of `bytes`.
pub fn decode(bytes: &[u8], bits: Bits) -> Result<Access, Error> {
    let bytes = &bytes[..bytes.len().min(MAX_LEN)];
    let mut b = Bytes { bytes, at: 0 };
    let (mut opsize16, mut addr16) = (false, false);
    let mut op = b.next()?;
    loop {
        match op {
            0x66 => opsize16 = true,
            0x67 => addr16 = true,
            0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 => {}
            _ => break,
        }
        op = b.next()?;
    }
    let rex = if bits == Bits::B64 && op & 0xf0 == 0x40 {
        let r = op;
        op = b.next()?;
        Some(r)
    } else {
        None
    };
    let rex_bit = |n: u8| rex.is_some_and(|r| r & (1 << n) != 0);
    let opcode_at = b.at - 1;
    let (write, byte, imm) = match op {
        0x88 => (true, true, false),
        0x89 => (true, false, false),
        0x8a => (false, true, false),
        0x8b => (false, false, false),
        0xc6 => (true, true, true),
        0xc7 => (true, false, true),
        _ => return Err(Error::Unsupported { at: opcode_at }),
    };
    let modrm = b.next()?;
    let reg = (modrm >> 3) & 7;
    if imm && reg != 0 {
        return Err(Error::Unsupported { at: opcode_at });
    }
    // In 64-bit code a 67 prefix means 32-bit addressing, whose ModRM is
    // the same shape; in 32-bit code it means 16-bit addressing.
    if addr16 && bits == Bits::B32 {
        return Err(Error::Addressing16);
    }
    skip_address(&mut b, modrm)?;
    let size = match (byte, rex_bit(3), opsize16) {
        (true, _, _) => 1,
        (false, true, _) => 8,
        (false, false, true) => 2,
        (false, false, false) => 4,
    };
    let operand = if imm {
        let n = size.min(4) as usize;
        let raw = b.imm(n)?;
        let shift = 64 - 8 * n as u32;
        Operand::Imm((((raw << shift) as i64) >> shift) as u64 & mask(size))
    } else {
        let index = reg | (rex_bit(2) as u8) << 3;
        let high_byte = byte && rex.is_none() && (4..8).contains(&index);
        Operand::Reg { index: if high_byte { index - 4 } else { index }, high_byte }
    };
    Ok(Access { len: b.at, size, write, operand })
}

/// Steps over the SIB byte and displacement that ModRM `modrm` (32- or
/// 64-bit addressing) has.
fn skip_address(b: &mut Bytes<'_>, modrm: u8) -> Result<(), Error> {
    let (md, rm) = (modrm >> 6, modrm & 7);
    if md == 3 {
        return Err(Error::NotMemory);
    }
    let sib_base = if rm == 4 { Some(b.next()? & 7) } else { None };
    let disp = match (md, rm, sib_base) {
        (0, 5, None) | (0, _, Some(5)) => 4,
        (0, _, _) => 0,
        (1, _, _) => 1,
        _ => 4,
    };
    b.skip(disp)
}

/// The low `size` bytes.
pub fn mask(size: u8) -> u64 {
    match size {
        8 => u64::MAX,
        n => (1u64 << (8 * n as u32)) - 1,
    }
}

/// What a store writes from register value `reg`.
pub fn read_reg(reg: u64, size: u8, high_byte: bool) -> u64 {
    if high_byte {
        (reg >> 8) & 0xff
    } else {
        reg & mask(size)
    }
}

/// Register value `reg` after a load of `value`: 4-byte loads clear the
/// upper half (as every 32-bit register write does in 64-bit mode), 1- and
/// 2-byte loads keep the other bytes.
pub fn write_reg(reg: u64, value: u64, size: u8, high_byte: bool) -> u64 {
    match (size, high_byte) {
        (_, true) => (reg & !0xff00) | (value & 0xff) << 8,
        (4, _) => value & 0xffff_ffff,
        (8, _) => value,
        (n, _) => (reg & !mask(n)) | (value & mask(n)),
    }
}

#[cfg(test)]
mod tests;
