//! The `vm-api` suite's guests, hand-assembled (encodings from the SDM,
//! vol. 2): each jumps over a `fail` block at its start, to which its
//! checks branch back, so no forward references need fixing up.

use alloc::vec;
use alloc::vec::Vec;

/// The long-mode guest's layout (guest-physical = guest-virtual), none of
/// it where the test-guest ABI puts its structures.
pub const PML4: u64 = 0x20000;
pub const GDT: u64 = 0x24000;
pub const CODE: u64 = 0x30000;
pub const STACK: u64 = 0x2f000;
pub const CS: u16 = 0x10;
pub const DS: u16 = 0x18;
/// The MMIO page, above RAM, mapped by the guest's own tables; below 2
/// GiB, so that a sign-extended disp32 can name it.
pub const MMIO: u64 = 0x4000_0000;

/// The disp32 of `MMIO + offset` in a ModRM/SIB absolute address.
fn at(offset: u64) -> [u8; 4] {
    ((MMIO + offset) as u32).to_le_bytes()
}

/// `jne target`, back to an earlier offset.
fn jne_back(code: &mut Vec<u8>, target: usize) {
    let rel = target as isize - (code.len() as isize + 2);
    code.extend([0x75, rel as i8 as u8]);
}

/// At CS 0x100, IP 0: OUT, IN (checked) of 1, 2 and 4 bytes to the
/// handled ports, `1` to port 0x3f9 when every check held (`2` from
/// `fail`), then IN from port 0x60, which no handler has.
pub fn real_mode() -> Vec<u8> {
    // jmp short over fail; fail: mov dx, 0x3f9; mov al, 2; out dx, al; hlt
    let mut c = vec![0xeb, 0x07, 0xba, 0xf9, 0x03, 0xb0, 0x02, 0xee, 0xf4];
    let fail = 2;
    // mov dx, 0x3f8; mov al, 0x41; out dx, al; in al, dx; cmp al, 0x5a
    c.extend([0xba, 0xf8, 0x03, 0xb0, 0x41, 0xee, 0xec, 0x3c, 0x5a]);
    jne_back(&mut c, fail);
    // mov ax, 0x1234; out 0x80, ax; in ax, 0x81; cmp ax, 0xbeef
    c.extend([0xb8, 0x34, 0x12, 0xe7, 0x80, 0xe5, 0x81, 0x3d, 0xef, 0xbe]);
    jne_back(&mut c, fail);
    // mov eax, 0x12345678; out 0x82, eax (operand-size prefixes)
    c.extend([0x66, 0xb8, 0x78, 0x56, 0x34, 0x12, 0x66, 0xe7, 0x82]);
    // mov dx, 0x3f9; mov al, 1; out dx, al; in al, 0x60; hlt
    c.extend([0xba, 0xf9, 0x03, 0xb0, 0x01, 0xee, 0xe4, 0x60, 0xf4]);
    c
}

/// The long-mode guest's code: MMIO loads (checked) and stores of 1, 2, 4
/// and 8 bytes, RSI as `set_vcpu_state` gave it, an ignored IN (all ones,
/// checked) and OUT, then `1` to port 0x90 (`2` from `fail`).
fn long_code() -> Vec<u8> {
    // jmp short over fail; fail: mov al, 2; out 0x90, al; hlt
    let mut c = vec![0xeb, 0x05, 0xb0, 0x02, 0xe6, 0x90, 0xf4];
    let fail = 2;
    // mov eax, [MMIO]; cmp eax, 0xcafef00d
    c.extend([0x8b, 0x04, 0x25]);
    c.extend(at(0));
    c.extend([0x3d, 0x0d, 0xf0, 0xfe, 0xca]);
    jne_back(&mut c, fail);
    // mov rbx, 0x1122334455667788; mov [MMIO + 8], rbx
    c.extend([0x48, 0xbb, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
    c.extend([0x48, 0x89, 0x1c, 0x25]);
    c.extend(at(8));
    // mov byte [MMIO + 0x10], 0x5a
    c.extend([0xc6, 0x04, 0x25]);
    c.extend(at(0x10));
    c.push(0x5a);
    // mov cx, [MMIO + 0x12]; cmp cx, 0xbeef
    c.extend([0x66, 0x8b, 0x0c, 0x25]);
    c.extend(at(0x12));
    c.extend([0x66, 0x81, 0xf9, 0xef, 0xbe]);
    jne_back(&mut c, fail);
    // cmp rsi, 0x5151
    c.extend([0x48, 0x81, 0xfe, 0x51, 0x51, 0x00, 0x00]);
    jne_back(&mut c, fail);
    // in al, 0x61; cmp al, 0xff
    c.extend([0xe4, 0x61, 0x3c, 0xff]);
    jne_back(&mut c, fail);
    // out 0x62, al; mov al, 1; out 0x90, al; hlt
    c.extend([0xe6, 0x62, 0xb0, 0x01, 0xe6, 0x90, 0xf4]);
    c
}

fn words(entries: &[u64]) -> Vec<u8> {
    entries.iter().flat_map(|e| e.to_le_bytes()).collect()
}

/// What the long-mode guest needs in RAM: (guest-physical, bytes). Page
/// tables at [`PML4`]: the first 8 MiB and the MMIO page's 2 MiB mapped
/// one to one; a GDT of null, null, 64-bit code ([`CS`]), data ([`DS`]).
pub fn long_mode() -> Vec<(u64, Vec<u8>)> {
    let (pdpt, pd_low, pd_mmio) = (PML4 + 0x1000, PML4 + 0x2000, PML4 + 0x3000);
    let mut tables = vec![
        (PML4, words(&[pdpt | 3])),
        (pdpt, words(&[pd_low | 3])),
        (pd_low, words(&[0x83, 0x20_0083, 0x40_0083, 0x60_0083])),
        // The MMIO page's GiB has a PD of its own.
        (pdpt + (MMIO >> 30) * 8, words(&[pd_mmio | 3])),
        (pd_mmio + ((MMIO >> 21) % 512) * 8, words(&[MMIO | 0x83])),
    ];
    tables.push((GDT, words(&[0, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff])));
    tables.push((CODE, long_code()));
    tables
}

/// A long-mode guest whose first instruction is `movzx eax, byte [MMIO]`,
/// which the MMIO decoder does not take: the layout of [`long_mode`] with
/// this code at [`CODE`].
pub fn undecodable() -> Vec<(u64, Vec<u8>)> {
    let mut c = vec![0x0f, 0xb6, 0x04, 0x25];
    c.extend(at(0));
    c.push(0xf4);
    let mut all = long_mode();
    all.retain(|(gpa, _)| *gpa != CODE);
    all.push((CODE, c));
    all
}

/// Real mode at CS 0x100, IP 0: `mov dx, 0x3f8; outsb`, string port I/O.
pub fn string_out() -> Vec<u8> {
    vec![0xba, 0xf8, 0x03, 0x6e, 0xf4]
}
