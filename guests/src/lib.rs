//! modvisor's test guests and their small runtime.
//!
//! Each `src/bin/<name>.rs` is one guest: a static x86_64 executable that
//! vmx-plugin runs as a VM, built by the runner (`images/src/build/guest_build.rs`)
//! and shipped in every image's initrd as `guests/<name>.elf`. This library
//! is what they share: the entry (`guest!`), console output, exit, an IDT
//! with exception and interrupt hooks, x2APIC and CPUID helpers and a spin
//! barrier.
//!
//! # The guest ABI
//!
//! vmx-plugin implements the other side of this; the numbers are in
//! [`abi`]. Change them on both sides or not at all.
//!
//! - **Image.** A static ELF64 x86_64 executable (`ET_EXEC`, not PIE) whose
//!   `PT_LOAD` segments have `p_paddr == p_vaddr`, all at or above
//!   [`abi::LOAD_BASE`] (1 MiB) and below the VMM's limit, a few MiB above
//!   2 MiB. These guests are linked at 1 MiB and keep below
//!   [`abi::LOAD_LIMIT`] (2 MiB, at most 1 MiB each), which the runner
//!   checks. The VMM copies each segment to its guest-physical
//!   address and zeroes `p_memsz` beyond `p_filesz` (these guests have no
//!   such tail: `link.ld` keeps `.bss` in the file). Entry: `e_entry`, in
//!   64-bit code.
//! - **vCPU state at the entry**, the same on every vCPU: long mode with
//!   CR0 = PE|NE|ET|PG, CR4 = PAE (no OSFXSR/OSXMMEXCPT, so no SSE:
//!   `x86_64-unknown-none` is soft-float), EFER = LME|LMA (NXE allowed).
//!   Paging identity-maps guest-physical [0, 1 GiB) with 2 MiB pages from
//!   tables the VMM built at 0x1000 (PML4), 0x2000 (PDPT) and 0x3000 (PD).
//!   A flat GDT at 0x500: 0x08 is 64-bit code, 0x10 data; CS = 0x08,
//!   DS/ES/SS/FS/GS = 0x10. RFLAGS = 0x2 (interrupts off). No IDT (IDTR
//!   limit 0): a guest that wants exceptions or interrupts loads its own
//!   ([`idt::install`]). RSP = RAM top - vcpu id * 64 KiB (16-byte
//!   aligned; each vCPU's stack is the 64 KiB below). RDI = vcpu id
//!   (0..n), RSI = vCPU count n, RDX = guest RAM size in bytes (at most
//!   1 GiB, the identity map). Every vCPU starts at the entry at once; there
//!   is no INIT/SIPI.
//! - **Console.** `out dx, al` to port 0xE9: one byte of output. The VMM
//!   prints whole lines prefixed with the VM's name.
//! - **Exit.** `out dx, eax` to port 0xF4 (32 bits): the guest is done and
//!   the VM stops with that status; any vCPU may write it. The statuses
//!   these guests use are in [`status`].
//! - **x2APIC.** The local APIC is in x2APIC mode (IA32_APIC_BASE bits 10
//!   and 11 set) and its registers are the MSRs 0x800-0x8FF (ICR 0x830,
//!   EOI 0x80B, LVT timer 0x832, initial count 0x838, current count 0x839,
//!   divide 0x83E) and IA32_TSC_DEADLINE (0x6E0), as the Intel SDM
//!   (Vol. 3A, 11.12) describes them. A vCPU's x2APIC id is its vcpu id.
//! - **CPUID.** Leaf 0x40000000: EAX = the highest hypervisor leaf, EBX,
//!   ECX = "modv", "isor" (the signature is these 8 bytes; EDX is not part
//!   of it). Leaf 0x40000010: EAX = TSC kHz, EBX = APIC timer kHz (at
//!   divide-by-1). Leaf 1: ECX bit 31 (hypervisor) set, bit 5 (VMX) clear.
//!
//! What the guests themselves add: the `counter` guest's words at
//! [`abi::COUNTER_BASE`] + 8 * vcpu and its stop word at
//! [`abi::COUNTER_STOP`] (a VMM test may read the first and write the
//! second), the `unmapped` guest's read of [`abi::UNMAPPED`], and the
//! `timing` guest's figures at [`abi::TIMING_BASE`] (a VMM bench reads
//! them once the guest exited 0).
//!
//! # Host builds
//!
//! The crate is a workspace member outside `default-members`. On the host
//! (`cargo clippy --workspace`, `cargo test -p test-guests`) the library
//! is an ordinary std crate whose pure parts have tests, and each guest
//! binary is a stub `main` that only names its guest function, so that
//! both are checked; the instructions run only inside a VM.
#![cfg_attr(target_os = "none", no_std)]

pub mod abi;
pub mod check;
pub mod console;
pub mod cpu;
pub mod hv;
pub mod idt;
pub mod simd;
pub mod smp;
pub mod stats;
pub mod x2apic;

/// What the VMM passes at the entry (RDI, RSI, RDX).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    /// This vCPU's id, 0..count.
    pub vcpu: u32,
    /// How many vCPUs the VM has.
    pub count: u32,
    /// Guest RAM in bytes, from guest-physical 0.
    pub ram: u64,
}

impl Start {
    /// The start values as the registers hold them, or why they cannot be.
    pub fn from_registers(vcpu: u64, count: u64, ram: u64) -> Result<Start, &'static str> {
        let count = u32::try_from(count).map_err(|_| "the vCPU count (RSI) does not fit 32 bits")?;
        let vcpu = u32::try_from(vcpu).map_err(|_| "the vcpu id (RDI) does not fit 32 bits")?;
        if count == 0 || vcpu >= count {
            return Err("the vcpu id (RDI) is not below the vCPU count (RSI)");
        }
        if !(abi::LOAD_LIMIT..=abi::IDENTITY_MAP_END).contains(&ram) {
            return Err("the RAM size (RDX) is below 2 MiB or above the 1 GiB identity map");
        }
        if ram.saturating_sub(u64::from(count) * abi::STACK_SIZE) < abi::LOAD_LIMIT {
            return Err("the vCPUs' 64 KiB stacks below the RAM top (RDX) reach into the guest image");
        }
        Ok(Start { vcpu, count, ram })
    }
}

/// The exit statuses the guests write to [`abi::EXIT_PORT`].
pub mod status {
    /// Everything the guest checked held.
    pub const PASS: u32 = 0;
    /// A check failed (the console says which).
    pub const FAILED: u32 = 1;
    /// The guest cannot run on this VM (too few vCPUs, a missing feature).
    pub const UNSUPPORTED: u32 = 2;
    /// An exception or interrupt nobody expected.
    pub const UNEXPECTED_TRAP: u32 = 3;
    /// The guest panicked.
    pub const PANIC: u32 = 4;
    /// RDI/RSI/RDX broke the ABI.
    pub const BAD_START: u32 = 5;
}

/// Ends the VM with `status` (any vCPU may), then halts this vCPU in
/// case the VMM lets it run on.
pub fn exit(status: u32) -> ! {
    cpu::out32(abi::EXIT_PORT, status);
    park()
}

/// Halts this vCPU for good, with interrupts off (another vCPU exits).
pub fn park() -> ! {
    loop {
        cpu::cli();
        cpu::hlt();
    }
}

/// The Rust side of the entry: checks the start registers, runs the
/// guest's function and exits with its status.
#[doc(hidden)]
pub fn run(vcpu: u64, count: u64, ram: u64, guest: fn(&Start) -> u32) -> ! {
    match Start::from_registers(vcpu, count, ram) {
        Ok(start) => exit(guest(&start)),
        Err(why) => {
            crate::println!("guest: bad start (rdi {vcpu:#x}, rsi {count:#x}, rdx {ram:#x}): {why}");
            exit(status::BAD_START)
        }
    }
}

/// Declares a guest: `guest!(hello)` makes `fn hello(&Start) -> u32` the
/// guest's function, run on every vCPU; it returns the exit status (or
/// parks, on the vCPUs that do not decide it).
///
/// For the guest's own target it defines the ELF entry `_start`, which
/// calls the function with the stack as the SysV ABI wants it (RSP is
/// 16-byte aligned at the entry, so a `call` makes it right) and RDI, RSI,
/// RDX passed on as they are. On the host it defines a stub `main` (see
/// the crate's "Host builds").
#[macro_export]
macro_rules! guest {
    ($guest:path) => {
        #[cfg(target_os = "none")]
        #[unsafe(naked)]
        #[no_mangle]
        #[link_section = ".text.start"]
        extern "C" fn _start() -> ! {
            ::core::arch::naked_asm!("xor ebp, ebp", "call {entry}", "ud2", entry = sym __guest_entry)
        }

        #[cfg(target_os = "none")]
        extern "C" fn __guest_entry(vcpu: u64, count: u64, ram: u64) -> ! {
            $crate::run(vcpu, count, ram, $guest)
        }

        #[cfg(not(target_os = "none"))]
        fn main() {
            let _: fn(&$crate::Start) -> u32 = $guest;
        }
    };
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    console::print_fatal(format_args!("panic: {info}"));
    exit(status::PANIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_registers() {
        assert_eq!(Start::from_registers(1, 2, 64 << 20), Ok(Start { vcpu: 1, count: 2, ram: 64 << 20 }));
        assert!(Start::from_registers(2, 2, 64 << 20).is_err());
        assert!(Start::from_registers(0, 0, 64 << 20).is_err());
        assert!(Start::from_registers(0, 1 << 32, 64 << 20).is_err());
        assert!(Start::from_registers(0, 1, 1 << 20).is_err());
        assert!(Start::from_registers(0, 1, (1 << 30) + 1).is_err());
        assert!(Start::from_registers(0, 1, 1 << 30).is_ok());
        assert!(Start::from_registers(0, 32, 4 << 20).is_ok(), "32 stacks fill 2 MiB above the image");
        assert!(Start::from_registers(0, 33, 4 << 20).is_err(), "33 reach into it");
        assert!(Start::from_registers(0, u64::from(u32::MAX), 1 << 30).is_err());
    }
}
