//! The CMOS real-time clock and its battery-backed RAM (MC146818).

use spin::Mutex;
use x86_64::instructions::port::Port;

/// Serialises the index/data port pair.
static LOCK: Mutex<()> = Mutex::new(());

/// Reads CMOS register `reg`. Bit 7 of the index port is left clear, which
/// keeps NMIs enabled.
pub fn read(reg: u8) -> u8 {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let _g = LOCK.lock();
        // SAFETY: 0x70/0x71 are the CMOS index and data ports.
        unsafe {
            Port::<u8>::new(0x70).write(reg & 0x7f);
            Port::<u8>::new(0x71).read()
        }
    })
}

pub fn write(reg: u8, value: u8) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let _g = LOCK.lock();
        // SAFETY: as in `read`; callers only write registers they own.
        unsafe {
            Port::<u8>::new(0x70).write(reg & 0x7f);
            Port::<u8>::new(0x71).write(value);
        }
    })
}

pub const SECONDS: u8 = 0x00;
pub const STATUS_A: u8 = 0x0a;
pub const STATUS_B: u8 = 0x0b;
pub const STATUS_C: u8 = 0x0c;

/// A byte of CMOS RAM that firmware of QEMU and Bochs leaves alone; the
/// reboot test keeps its stage there because it survives a reset.
pub const SCRATCH: u8 = 0x7e;

/// Spins until the seconds register changes and returns the TSC right
/// after. `None` if it did not change within `max_tsc` ticks.
pub fn wait_second_edge(max_tsc: u64) -> Option<u64> {
    let start = crate::time::rdtsc();
    let s0 = read(SECONDS);
    loop {
        let now = crate::time::rdtsc();
        if read(SECONDS) != s0 {
            return Some(now);
        }
        if now - start > max_tsc {
            return None;
        }
    }
}
