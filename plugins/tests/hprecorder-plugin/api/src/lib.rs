//! The `hprecorder` interface: what hprecorder-plugin recorded of cpuhp's
//! callbacks, and the switches that make them fail, for the in-image cpuhp
//! suite. A crate of its own, so that a caller depends on the interface,
//! not on the plugin's code.
#![no_std]

/// The recorder's slots, one cpuhp state each: 0 prepare, 1 starting,
/// 2 online. A record is `slot << 1 | direction` (0 up, 1 down).
pub const SLOTS: usize = 3;

/// The error the recorder's callbacks fail with when told to.
pub const REFUSED: i32 = -77;

/// The `hprecorder` interface table.
#[repr(C)]
pub struct Recorder {
    /// Copies `cpu`'s records (up to `cap`) into `buf`, clears them and
    /// returns how many there were (more than `cap`: some were lost).
    pub take: extern "C" fn(cpu: u32, buf: *mut u32, cap: usize) -> usize,
    /// The cpuhp state ids of the three slots.
    pub state_id: extern "C" fn(slot: u32) -> u32,
    /// Makes callback (slot, direction) fail (`on` 1) or work (`on` 0).
    pub set_fail: extern "C" fn(slot: u32, dir: u32, on: u32) -> i32,
}

// SAFETY: `Recorder` is the `hprecorder` table.
unsafe impl plugins::Interface for Recorder {
    const NAME: &'static str = "hprecorder";
    const VERSION: &'static str = "1.0.0";
}
