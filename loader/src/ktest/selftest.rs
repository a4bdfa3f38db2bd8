//! Deliberately failing suites: the host runner boots them to prove that it
//! tells each way of ending apart.

use super::{Failure, Test};

crate::suite!(SUITE_SELFTEST_FAIL, "selftest-fail", FAIL, crate::ktest::InAll::OnlyWhenNamed);
static FAIL: &[Test] = &[
    Test { name: "passes", run: || Ok(()) },
    Test { name: "fails", run: || Err(Failure::new(format_args!("deliberate failure"))) },
];

crate::suite!(SUITE_SELFTEST_PANIC, "selftest-panic", PANIC, crate::ktest::InAll::OnlyWhenNamed);
static PANIC: &[Test] = &[Test { name: "panics", run: || panic!("deliberate panic") }];

crate::suite!(SUITE_SELFTEST_EXCEPTION, "selftest-exception", EXCEPTION, crate::ktest::InAll::OnlyWhenNamed);
static EXCEPTION: &[Test] = &[Test {
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

crate::suite!(SUITE_SELFTEST_HANG, "selftest-hang", HANG, crate::ktest::InAll::OnlyWhenNamed);
static HANG: &[Test] = &[Test {
    name: "spins-forever",
    run: || loop {
        core::hint::spin_loop();
    },
}];
