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
        select(reg);
        // SAFETY: 0x71 is the CMOS data port, showing the selected register.
        unsafe { Port::<u8>::new(0x71).read() }
    })
}

pub fn write(reg: u8, value: u8) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let _g = LOCK.lock();
        select(reg);
        // SAFETY: as in `read`; callers only write registers they own.
        unsafe { Port::<u8>::new(0x71).write(value) };
    })
}

/// Selects CMOS register `reg` for the data port, NMIs left enabled.
/// Callers hold LOCK with interrupts off up to their data port access.
fn select(reg: u8) {
    // SAFETY: 0x70 is the CMOS index port; with bit 7 clear, writing it
    // only chooses the register 0x71 reaches.
    unsafe { Port::<u8>::new(0x70).write(reg & 0x7f) };
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
