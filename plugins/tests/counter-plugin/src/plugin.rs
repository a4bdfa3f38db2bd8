//! The plugin itself: one `version` module per feature.

use core::sync::atomic::{AtomicU64, Ordering};
use counter_api::Counter;

static VALUE: AtomicU64 = AtomicU64::new(0);

#[cfg(feature = "v1")]
mod version {
    use super::*;
    pub const GENERATION: u32 = 1;
    pub const STEP: u64 = 1;
    pub const LAYOUT: u32 = 1;

    /// Layout 1: the value as a little-endian u32.
    pub fn export(buf: &mut [u8]) -> Result<usize, i32> {
        let v = u32::try_from(VALUE.load(Ordering::SeqCst)).map_err(|_| 2)?;
        buf.get_mut(..4).ok_or(1)?.copy_from_slice(&v.to_le_bytes());
        Ok(4)
    }

    pub fn import(layout: u32, buf: &[u8]) -> Result<(), i32> {
        match layout {
            1 => VALUE.store(u32::from_le_bytes(buf.try_into().map_err(|_| 3)?) as u64, Ordering::SeqCst),
            2 => VALUE.store(u64::from_le_bytes(buf.get(..8).ok_or(3)?.try_into().map_err(|_| 3)?), Ordering::SeqCst),
            _ => return Err(4),
        }
        Ok(())
    }
}

#[cfg(feature = "v2")]
mod version {
    use super::*;
    pub const GENERATION: u32 = 2;
    pub const STEP: u64 = 2;
    pub const LAYOUT: u32 = 2;
    static SWAPS: AtomicU64 = AtomicU64::new(0);

    /// Layout 2: the value as a little-endian u64, then the swap count.
    pub fn export(buf: &mut [u8]) -> Result<usize, i32> {
        let out = buf.get_mut(..16).ok_or(1)?;
        out[..8].copy_from_slice(&VALUE.load(Ordering::SeqCst).to_le_bytes());
        out[8..].copy_from_slice(&SWAPS.load(Ordering::SeqCst).to_le_bytes());
        Ok(16)
    }

    pub fn import(layout: u32, buf: &[u8]) -> Result<(), i32> {
        let value = match layout {
            1 => u32::from_le_bytes(buf.try_into().map_err(|_| 3)?) as u64,
            2 => {
                let swaps = u64::from_le_bytes(buf.get(8..16).ok_or(3)?.try_into().map_err(|_| 3)?);
                SWAPS.store(swaps, Ordering::SeqCst);
                u64::from_le_bytes(buf.get(..8).ok_or(3)?.try_into().map_err(|_| 3)?)
            }
            _ => return Err(4),
        };
        SWAPS.fetch_add(1, Ordering::SeqCst);
        VALUE.store(value, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(feature = "v3")]
mod version {
    use super::*;
    pub const GENERATION: u32 = 3;
    pub const STEP: u64 = 3;
    pub const LAYOUT: u32 = 3;

    /// Layout 3: the value as a little-endian u64.
    pub fn export(buf: &mut [u8]) -> Result<usize, i32> {
        buf.get_mut(..8).ok_or(1)?.copy_from_slice(&VALUE.load(Ordering::SeqCst).to_le_bytes());
        Ok(8)
    }

    /// Layouts 2 and 3 only: a swap straight from 1.x (a u32 counter) must
    /// fail at this step and leave the old version running.
    pub fn import(layout: u32, buf: &[u8]) -> Result<(), i32> {
        let value = buf.get(..8).ok_or(3)?.try_into().map_err(|_| 3)?;
        match layout {
            2 | 3 => VALUE.store(u64::from_le_bytes(value), Ordering::SeqCst),
            _ => return Err(4),
        }
        Ok(())
    }
}

extern "C" fn next() -> u64 {
    VALUE.fetch_add(version::STEP, Ordering::SeqCst) + version::STEP
}

extern "C" fn generation() -> u32 {
    version::GENERATION
}

static TABLE: Counter = Counter { next, generation };

fn show(_: &str) -> Result<(), i32> {
    plugins::println!("counter {} (generation {})", VALUE.load(Ordering::SeqCst), version::GENERATION);
    Ok(())
}

fn init() -> Result<(), i32> {
    plugins::register_command!("counter", "show the counter's value and version", show)?;
    plugins::info!("counter generation {} ready", version::GENERATION);
    Ok(())
}

#[cfg(feature = "v1")]
plugins::plugin! {
    name: "counter-plugin", version: "1.0.0",
    init: init, fini: || {},
    provides: [(Counter, &TABLE)],
    requires: [],
    state: Some((version::LAYOUT, version::export, version::import)),
}

#[cfg(feature = "v2")]
plugins::plugin! {
    name: "counter-plugin", version: "2.0.0",
    init: init, fini: || {},
    provides: [(Counter as "2.0.0", &TABLE)],
    requires: [],
    state: Some((version::LAYOUT, version::export, version::import)),
}

#[cfg(feature = "v3")]
plugins::plugin! {
    name: "counter-plugin", version: "3.0.0",
    init: init, fini: || {},
    provides: [(Counter as "3.0.0", &TABLE)],
    requires: [],
    state: Some((version::LAYOUT, version::export, version::import)),
}
