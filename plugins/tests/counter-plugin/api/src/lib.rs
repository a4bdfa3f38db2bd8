//! The `counter` interface of the test plugins: counter-plugin provides
//! it (every version the same table), consumer-plugin calls it. A crate of
//! its own, so that a consumer depends on the interface, not on
//! counter-plugin's code.
#![no_std]

/// The `counter` interface table, the same in every version.
#[repr(C)]
pub struct Counter {
    /// Advances the counter and returns the new value.
    pub next: extern "C" fn() -> u64,
    /// The version of the code answering (1, 2 or 3).
    pub generation: extern "C" fn() -> u32,
}

// SAFETY: `Counter` is the `counter` table in every version.
unsafe impl plugins::Interface for Counter {
    const NAME: &'static str = "counter";
    const VERSION: &'static str = "1.0.0";
}
