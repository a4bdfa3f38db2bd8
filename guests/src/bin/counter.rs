//! `counter`: every vCPU increments its own u64 at guest-physical
//! `abi::COUNTER_BASE` + 8 * vcpu (0x9000, 0x9008, ...) and checks that
//! memory still holds what it wrote last, printing its count every 2^20
//! increments: a VMM test moves the vCPUs between physical CPUs and reads
//! the counters or the lines to see them go on. It runs until killed, or
//! until the u64 at `abi::COUNTER_STOP` (0x8ff8) is made non-zero: then
//! each vCPU prints its count and vCPU 0 exits 0 once all have. A counter
//! that changed under its vCPU exits 1; more vCPUs than the counter page
//! holds (512) exits 2.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::hint::spin_loop;
use core::ptr;
use core::sync::atomic::{AtomicU32, Ordering};

use test_guests::abi::{COUNTER_BASE, COUNTER_STOP, COUNTER_VCPUS};
use test_guests::{println, status, Start};

test_guests::guest!(count);

const PROGRESS_EVERY: u64 = 1 << 20;
/// How often the stop word is read.
const STOP_EVERY: u64 = 1 << 12;

static STOPPED: AtomicU32 = AtomicU32::new(0);

fn count(start: &Start) -> u32 {
    if start.count > COUNTER_VCPUS {
        if start.vcpu == 0 {
            println!("counter: {} vcpus, but the counter page holds {COUNTER_VCPUS}", start.count);
            return status::UNSUPPORTED;
        }
        test_guests::park();
    }
    let address = COUNTER_BASE + 8 * u64::from(start.vcpu);
    let slot = ptr::with_exposed_provenance_mut::<u64>(address as usize);
    let stop = ptr::with_exposed_provenance::<u64>(COUNTER_STOP as usize);
    // SAFETY: the counter page is guest RAM below the guest's image, and
    // this vCPU's word is its own; the VMM may read it at any time.
    unsafe { ptr::write_volatile(slot, 0) };
    println!("counter: vcpu {} counts at {address:#x}", start.vcpu);
    let mut n = 0u64;
    loop {
        // SAFETY: as above.
        let seen = unsafe { ptr::read_volatile(slot) };
        if seen != n {
            println!("counter: FAILED: vcpu {}: {address:#x} holds {seen}, but it wrote {n}", start.vcpu);
            return status::FAILED;
        }
        n += 1;
        // SAFETY: as above.
        unsafe { ptr::write_volatile(slot, n) };
        if n.is_multiple_of(PROGRESS_EVERY) {
            println!("counter: vcpu {} at {n}", start.vcpu);
        }
        // SAFETY: the stop word is guest RAM that only the VMM writes.
        if n.is_multiple_of(STOP_EVERY) && unsafe { ptr::read_volatile(stop) } != 0 {
            break;
        }
    }
    println!("counter: vcpu {} stopped at {n}", start.vcpu);
    STOPPED.fetch_add(1, Ordering::AcqRel);
    if start.vcpu != 0 {
        test_guests::park();
    }
    while STOPPED.load(Ordering::Acquire) < start.count {
        spin_loop();
    }
    println!("counter: all {} vcpus stopped", start.count);
    status::PASS
}
