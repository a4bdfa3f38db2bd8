//! Deliberately failing suites: the host runner boots them to prove that it
//! tells each way of ending apart.

use super::{Failure, Test};

pub static FAIL: &[Test] = &[
    Test { name: "passes", run: || Ok(()) },
    Test { name: "fails", run: || Err(Failure::new(format_args!("deliberate failure"))) },
];

pub static PANIC: &[Test] = &[Test { name: "panics", run: || panic!("deliberate panic") }];

pub static EXCEPTION: &[Test] = &[Test {
    name: "unexpected-page-fault",
    run: || {
        // An unmapped address far above any RAM this machine has.
        let p = 0x7fff_dead_b000 as *const u64;
        // SAFETY: not safe at all, on purpose: the fault must end the image
        // with the exception status.
        let v = unsafe { core::ptr::read_volatile(p) };
        Err(Failure::new(format_args!("read {v:#x} from an unmapped address")))
    },
}];

pub static HANG: &[Test] = &[Test {
    name: "spins-forever",
    run: || loop {
        core::hint::spin_loop();
    },
}];
