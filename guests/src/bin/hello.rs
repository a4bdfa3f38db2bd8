//! `hello`: every vCPU prints `hello from vcpu N of M`; vCPU 0 waits until
//! all have, then exits 0.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::hint::spin_loop;
use core::sync::atomic::{AtomicU32, Ordering};

use test_guests::{println, status, Start};

test_guests::guest!(hello);

/// vCPUs that have printed their line.
static SAID: AtomicU32 = AtomicU32::new(0);

fn hello(start: &Start) -> u32 {
    println!("hello from vcpu {} of {}", start.vcpu, start.count);
    SAID.fetch_add(1, Ordering::AcqRel);
    if start.vcpu != 0 {
        test_guests::park();
    }
    while SAID.load(Ordering::Acquire) < start.count {
        spin_loop();
    }
    println!("hello: all {} vcpus said hello", start.count);
    status::PASS
}
