//! The MOV decoder against encodings from the SDM's tables (checked with
//! an assembler by hand), and the register merge rules.

use super::*;

fn reg(index: u8) -> Operand {
    Operand::Reg { index, high_byte: false }
}

fn ok(bytes: &[u8], bits: Bits) -> Access {
    decode(bytes, bits).unwrap_or_else(|e| panic!("{bytes:02x?}: {e}"))
}

#[test]
fn loads_and_stores_of_every_size() {
    // mov eax, [rbx]
    assert_eq!(ok(&[0x8b, 0x03], Bits::B64), Access { len: 2, size: 4, write: false, operand: reg(0) });
    // mov [rdi], rcx
    assert_eq!(ok(&[0x48, 0x89, 0x0f], Bits::B64), Access { len: 3, size: 8, write: true, operand: reg(1) });
    // mov [rsi], dx
    assert_eq!(ok(&[0x66, 0x89, 0x16], Bits::B64), Access { len: 3, size: 2, write: true, operand: reg(2) });
    // mov r9b, [rax]
    assert_eq!(ok(&[0x44, 0x8a, 0x08], Bits::B64), Access { len: 3, size: 1, write: false, operand: reg(9) });
    // mov [rax], ah (no REX: AH) and mov [rax], spl (REX: SPL)
    let ah = Operand::Reg { index: 0, high_byte: true };
    assert_eq!(ok(&[0x88, 0x20], Bits::B64).operand, ah);
    assert_eq!(ok(&[0x40, 0x88, 0x20], Bits::B64).operand, reg(4));
    // mov r15, [r8]
    assert_eq!(ok(&[0x4d, 0x8b, 0x38], Bits::B64).operand, reg(15));
}

#[test]
fn addressing_lengths() {
    // mov eax, [0xfee00030] (SIB, no base: disp32)
    assert_eq!(ok(&[0x8b, 0x04, 0x25, 0x30, 0, 0xe0, 0xfe], Bits::B64).len, 7);
    // mov eax, [rip + 0x100]
    assert_eq!(ok(&[0x8b, 0x05, 0, 1, 0, 0], Bits::B64).len, 6);
    // mov eax, [rbx + 8]
    assert_eq!(ok(&[0x8b, 0x43, 0x08], Bits::B64).len, 3);
    // mov eax, [rbx + rcx*4 + 0x1000]
    assert_eq!(ok(&[0x8b, 0x84, 0x8b, 0, 0x10, 0, 0], Bits::B64).len, 7);
    // mov eax, [rbp + 0] (mod 1: a disp8 even when 0)
    assert_eq!(ok(&[0x8b, 0x45, 0x00], Bits::B64).len, 3);
    // prefixes before REX: fs, 67
    assert_eq!(ok(&[0x64, 0x67, 0x48, 0x8b, 0x00], Bits::B64).len, 5);
}

#[test]
fn immediates_are_sign_extended_to_the_size() {
    // mov byte [rax], 0x5a
    assert_eq!(
        ok(&[0xc6, 0x00, 0x5a], Bits::B64),
        Access { len: 3, size: 1, write: true, operand: Operand::Imm(0x5a) }
    );
    // mov word [rax], 0x1234
    assert_eq!(ok(&[0x66, 0xc7, 0x00, 0x34, 0x12], Bits::B64).operand, Operand::Imm(0x1234));
    // mov dword [rax+4], 0xdeadbeef
    let d = ok(&[0xc7, 0x40, 0x04, 0xef, 0xbe, 0xad, 0xde], Bits::B64);
    assert_eq!((d.len, d.size, d.operand), (7, 4, Operand::Imm(0xdead_beef)));
    // mov qword [rax], -2
    let q = ok(&[0x48, 0xc7, 0x00, 0xfe, 0xff, 0xff, 0xff], Bits::B64);
    assert_eq!((q.size, q.operand), (8, Operand::Imm(u64::MAX - 1)));
}

#[test]
fn thirty_two_bit_code() {
    // 0x48 is DEC EAX there, not REX.
    assert_eq!(decode(&[0x48, 0x8b, 0x00], Bits::B32), Err(Error::Unsupported { at: 0 }));
    assert_eq!(ok(&[0x8b, 0x00], Bits::B32).size, 4);
    assert_eq!(decode(&[0x67, 0x8b, 0x00], Bits::B32), Err(Error::Addressing16));
}

#[test]
fn refusals() {
    // movzx eax, byte [rax]; mov eax, ebx; c7 /1; rep movsb; lock
    assert_eq!(decode(&[0x0f, 0xb6, 0x00], Bits::B64), Err(Error::Unsupported { at: 0 }));
    assert_eq!(decode(&[0x8b, 0xc3], Bits::B64), Err(Error::NotMemory));
    assert_eq!(decode(&[0xc7, 0x08, 0, 0, 0, 0], Bits::B64), Err(Error::Unsupported { at: 0 }));
    assert_eq!(decode(&[0xf3, 0xa4], Bits::B64), Err(Error::Unsupported { at: 0 }));
    assert_eq!(decode(&[0xf0, 0x89, 0x00], Bits::B64), Err(Error::Unsupported { at: 0 }));
    assert_eq!(decode(&[0x8b, 0x04], Bits::B64), Err(Error::Truncated));
    assert_eq!(decode(&[0xc7, 0x00, 1, 2], Bits::B64), Err(Error::Truncated));
    assert_eq!(decode(&[0x66; 20], Bits::B64), Err(Error::Truncated));
    assert_eq!(decode(&[], Bits::B64), Err(Error::Truncated));
}

#[test]
fn register_merges() {
    let r = 0x1122_3344_5566_7788;
    assert_eq!(write_reg(r, 0xaabb_ccdd, 4, false), 0xaabb_ccdd);
    assert_eq!(write_reg(r, 0xeeff, 2, false), 0x1122_3344_5566_eeff);
    assert_eq!(write_reg(r, 0x99, 1, false), 0x1122_3344_5566_7799);
    assert_eq!(write_reg(r, 0x99, 1, true), 0x1122_3344_5566_9988);
    assert_eq!(write_reg(r, 5, 8, false), 5);
    assert_eq!(read_reg(r, 1, true), 0x77);
    assert_eq!(read_reg(r, 2, false), 0x7788);
    assert_eq!(read_reg(r, 8, false), r);
}
