//! The `consumer` interface of the test plugins: consumer-plugin provides
//! it, and the loader's `plugins` suite calls through it to see which
//! counter answers. A crate of its own, so that a caller depends on the
//! interface, not on consumer-plugin's code.
#![no_std]

/// The `consumer` interface table.
#[repr(C)]
pub struct Consumer {
    /// The counter's `next`, called through the `counter` handle.
    pub next: extern "C" fn() -> u64,
    /// The counter's `generation`, likewise.
    pub generation: extern "C" fn() -> u32,
}

// SAFETY: `Consumer` is the `consumer` table in every version.
unsafe impl plugins::Interface for Consumer {
    const NAME: &'static str = "consumer";
    const VERSION: &'static str = "1.0.0";
}
