//! Accesses that may fault, and report the fault instead of crashing:
//! each faulting instruction has an entry in the `.extable` section naming
//! where to resume, and the exception handler resumes there after recording
//! the fault in the per-CPU area (the same idea as Linux's exception tables).

use crate::cpu::percpu::{self, Fault};
use core::sync::atomic::{AtomicU64, Ordering};
use loader_core::interrupts::extable::{self, TableError};

core::arch::global_asm!(
    r#"
.section .text.probe, "ax"
.global probe_read_u64
probe_read_u64:                 /* (addr) -> rax value, rdx 0 or 1 (faulted) */
    xor %edx, %edx
1:  mov (%rdi), %rax
    ret
2:  mov $1, %edx
    xor %eax, %eax
    ret

.global probe_write_u64
probe_write_u64:                /* (addr, value) -> rax 0 or 1 */
    xor %eax, %eax
3:  mov %rsi, (%rdi)
    ret
4:  mov $1, %eax
    ret

.global probe_ud2
probe_ud2:                      /* () -> rax 0 or 1 */
    xor %eax, %eax
5:  ud2
    ret
6:  mov $1, %eax
    ret

.global probe_rdmsr
probe_rdmsr:                    /* (msr) -> rax value, rdx 0 or 1 */
    mov %edi, %ecx
7:  rdmsr
    shl $32, %rdx
    or %rdx, %rax
    xor %edx, %edx
    ret
8:  mov $1, %edx
    xor %eax, %eax
    ret

.global probe_vmptrst
probe_vmptrst:                  /* () -> rax current-VMCS pointer, rdx 0 or 1 (faulted) */
    push %rax
9:  vmptrst (%rsp)
    pop %rax
    xor %edx, %edx
    ret
10: pop %rax
    mov $1, %edx
    xor %eax, %eax
    ret

.section .extable, "a"
.balign 8
    .quad 1b, 2b
    .quad 3b, 4b
    .quad 5b, 6b
    .quad 7b, 8b
    .quad 9b, 10b
"#,
    options(att_syntax)
);

#[repr(C)]
#[cfg(feature = "ktest")]
struct ValueOrFault {
    value: u64,
    faulted: u64,
}

extern "C" {
    #[cfg(feature = "ktest")]
    fn probe_read_u64(addr: u64) -> ValueOrFault;
    #[cfg(feature = "ktest")]
    fn probe_write_u64(addr: u64, value: u64) -> u64;
    #[cfg(feature = "ktest")]
    fn probe_ud2() -> u64;
    #[cfg(feature = "ktest")]
    fn probe_rdmsr(msr: u32) -> ValueOrFault;
    #[cfg(feature = "ktest")]
    fn probe_vmptrst() -> ValueOrFault;
    static __extable_start: [u64; 0];
    static __extable_end: [u64; 0];
}

/// Where to resume after a fault at `rip`, if `rip` is a probe: the
/// loader's own, or one in a plugin's table.
pub fn fixup(rip: u64) -> Option<u64> {
    let start = (&raw const __extable_start).cast::<u64>();
    let len = ((&raw const __extable_end).addr() - start.addr()) / size_of::<u64>();
    // SAFETY: the linker script brackets the table with these symbols, and
    // the table holds pairs of addresses.
    let table = unsafe { core::slice::from_raw_parts(start, len) };
    table.chunks_exact(2).find(|e| e[0] == rip).map(|e| e[1]).or_else(|| {
        PLUGIN_TABLES.iter().find_map(|t| {
            let (start, pairs) = (t.start.load(Ordering::Acquire), t.pairs.load(Ordering::Acquire));
            if start == 0 {
                return None;
            }
            // SAFETY: `register_plugin_table` checked that the pairs lie
            // in the owner's image, which stays mapped until
            // `drop_plugin_table` has cleared the slot.
            let table = unsafe { core::slice::from_raw_parts(start as *const u64, pairs as usize * 2) };
            table.chunks_exact(2).find(|e| e[0] == rip).map(|e| e[1])
        })
    })
}

/// A plugin's exception table: (faulting address, resume address) pairs
/// in its own image, for the faults its code probes for (e.g. VMXOFF
/// where VMX operation is uncertain). Read by the exception handler, so
/// lock-free: a slot is live while `start` is not 0.
struct PluginTable {
    owner: AtomicU64,
    start: AtomicU64,
    pairs: AtomicU64,
}

static PLUGIN_TABLES: [PluginTable; 8] =
    [const { PluginTable { owner: AtomicU64::new(0), start: AtomicU64::new(0), pairs: AtomicU64::new(0) } }; 8];
/// Serialises registrations (the exception handler only reads).
static TABLES_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Registers `owner`'s table of `pairs` entries at `start`, which must lie
/// 8-byte aligned inside `image` (base, size). Every resume address must
/// lie in the image too: a bad table must not send a fault anywhere.
pub fn register_plugin_table(owner: u64, start: u64, pairs: u64, image: (u64, u64)) -> Result<(), TableError> {
    let (base, size) = image;
    extable::table_end(start, pairs, base, size)?;
    // SAFETY: checked above: inside the owner's mapped image.
    let table = unsafe { core::slice::from_raw_parts(start as *const u64, pairs as usize * 2) };
    extable::check_entries(table, base, size)?;
    let _one = TABLES_LOCK.lock();
    if PLUGIN_TABLES.iter().any(|t| t.owner.load(Ordering::Acquire) == owner) {
        return Err(TableError::NoSlot);
    }
    let slot = PLUGIN_TABLES.iter().find(|t| t.start.load(Ordering::Acquire) == 0).ok_or(TableError::NoSlot)?;
    slot.owner.store(owner, Ordering::Release);
    slot.pairs.store(pairs, Ordering::Release);
    slot.start.store(start, Ordering::Release);
    Ok(())
}

/// Forgets `owner`'s table (before its image goes).
pub fn drop_plugin_table(owner: u64) {
    let _one = TABLES_LOCK.lock();
    for t in PLUGIN_TABLES.iter().filter(|t| t.owner.load(Ordering::Acquire) == owner) {
        t.start.store(0, Ordering::Release);
        t.owner.store(0, Ordering::Release);
    }
}

#[cfg(feature = "ktest")]
fn last_fault() -> Fault {
    // SAFETY: written by this CPU's exception handler during the probe that
    // just returned; nothing else touches it.
    unsafe { *percpu::current().last_fault.get() }
}

/// Records a fault for the probe that caused it (exception handler only).
pub fn record(fault: Fault) {
    // SAFETY: only this CPU uses its `last_fault`, and the probe that reads
    // it is suspended in the exception right now.
    unsafe { *percpu::current().last_fault.get() = fault };
}

/// Reads a u64 at virtual address `addr`.
#[cfg(feature = "ktest")]
pub fn read_u64(addr: u64) -> Result<u64, Fault> {
    // SAFETY: the probe only reads; a fault is caught and reported.
    let r = unsafe { probe_read_u64(addr) };
    if r.faulted != 0 {
        Err(last_fault())
    } else {
        Ok(r.value)
    }
}

/// Writes a u64 at `addr`. On success the write happened: callers probe
/// only memory where that is harmless (or where it must fail).
#[cfg(feature = "ktest")]
pub fn write_u64(addr: u64, value: u64) -> Result<(), Fault> {
    // SAFETY: as above; the caller picks an address where a write is harmless.
    if unsafe { probe_write_u64(addr, value) } != 0 {
        Err(last_fault())
    } else {
        Ok(())
    }
}

/// Executes `ud2`; always returns the resulting #UD.
#[cfg(feature = "ktest")]
pub fn ud2() -> Result<(), Fault> {
    // SAFETY: the #UD is caught and reported.
    if unsafe { probe_ud2() } != 0 {
        Err(last_fault())
    } else {
        Ok(())
    }
}

/// RDMSR that returns the #GP of an MSR this CPU does not have.
#[cfg(feature = "ktest")]
pub fn rdmsr(msr: u32) -> Result<u64, Fault> {
    // SAFETY: reading an MSR has no side effects on the MSRs this loader
    // reads; a #GP is caught and reported.
    let r = unsafe { probe_rdmsr(msr) };
    if r.faulted != 0 {
        Err(last_fault())
    } else {
        Ok(r.value)
    }
}

/// VMPTRST, which only VMX operation executes (elsewhere it raises #UD):
/// the proof that this CPU is in VMX operation. The current-VMCS pointer
/// (all ones when none is loaded), or the fault.
#[cfg(feature = "ktest")]
pub fn vmptrst() -> Result<u64, Fault> {
    // SAFETY: VMPTRST only stores the pointer into the probe's own stack
    // slot; a #UD is caught and reported.
    let r = unsafe { probe_vmptrst() };
    if r.faulted != 0 {
        Err(last_fault())
    } else {
        Ok(r.value)
    }
}
