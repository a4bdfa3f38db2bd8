//! `unmapped`: vCPU 0 reads guest-physical 1 GiB (`abi::UNMAPPED`), above
//! RAM, where the VMM's EPT maps nothing: the VMM must stop the VM with an
//! EPT-violation report (the others park). The VMM's identity map ends
//! just below that address, so the guest first maps it itself, one 2 MiB
//! page through PDPT entry 1, and the read passes the guest's paging and
//! reaches EPT. If the read returns, the guest says so and exits 1; with
//! RAM reaching 1 GiB there is nothing to read above it (exit 2).
#![cfg_attr(target_os = "none", no_std, no_main)]

use test_guests::abi::UNMAPPED;
use test_guests::{cpu, println, status, Start};

test_guests::guest!(read_unmapped);

/// Present, writable, accessed (the CPU need not set A itself).
const TABLE_FLAGS: u64 = 0x23;
/// Present, writable, accessed, dirty, 2 MiB page.
const PAGE_2M_FLAGS: u64 = 0xe3;
/// Bits 51:12 of a paging entry or CR3.
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;

/// The page directory for [1 GiB, 2 GiB): entry 0 maps `UNMAPPED`.
#[repr(C, align(4096))]
struct Table([u64; 512]);

static EXTRA_PD: Table = {
    let mut entries = [0; 512];
    entries[0] = UNMAPPED | PAGE_2M_FLAGS;
    Table(entries)
};

fn read_unmapped(start: &Start) -> u32 {
    if start.vcpu != 0 {
        test_guests::park();
    }
    if start.ram > UNMAPPED {
        println!("unmapped: RAM ({} MiB) reaches {UNMAPPED:#x}: nothing to read above it", start.ram >> 20);
        return status::UNSUPPORTED;
    }
    if let Err(why) = map_extra_page() {
        println!("unmapped: cannot map {UNMAPPED:#x}: {why}");
        return status::UNSUPPORTED;
    }
    println!(
        "unmapped: reading guest-physical {UNMAPPED:#x} (RAM ends at {:#x}): the vm must stop with an ept violation",
        start.ram
    );
    // SAFETY: the guest's page tables map the address now; the read is
    // meant to stop the VM at EPT.
    let value = unsafe { cpu::read_physical(UNMAPPED) };
    println!("unmapped: FAILED: the read of {UNMAPPED:#x} returned {value:#x} instead of stopping the vm");
    status::FAILED
}

/// Points PDPT entry 1 (guest-virtual [1 GiB, 2 GiB)) at `EXTRA_PD`.
fn map_extra_page() -> Result<(), &'static str> {
    let pml4 = cpu::read_cr3() & ADDRESS;
    // SAFETY: CR3 names the VMM's PML4, in guest RAM and identity-mapped.
    let pml4e = unsafe { core::ptr::read_volatile(core::ptr::with_exposed_provenance::<u64>(pml4 as usize)) };
    if pml4e & 1 == 0 {
        return Err("pml4 entry 0 is not present");
    }
    let slot = core::ptr::with_exposed_provenance_mut::<u64>(((pml4e & ADDRESS) + 8) as usize);
    // SAFETY: PDPT entry 1, in guest RAM and identity-mapped like the rest
    // of the VMM's tables.
    let pdpte = unsafe { core::ptr::read_volatile(slot) };
    if pdpte & 1 != 0 {
        return Err("pdpt entry 1 is already present");
    }
    let pd = &raw const EXTRA_PD as u64;
    // SAFETY: the entry was not present, so nothing used it; a not-present
    // entry made present needs no TLB invalidation, since not-present
    // entries are never cached (SDM Vol. 3A, 4.10.4.3).
    unsafe { core::ptr::write_volatile(slot, pd | TABLE_FLAGS) };
    Ok(())
}
