//! Waiting: a spin barrier for the vCPUs, and halting until an interrupt
//! handler made a condition true.

use core::hint::spin_loop;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::cpu;

/// A reusable spin barrier: the last of `parties` to arrive releases the
/// others by bumping the generation.
pub struct Barrier {
    arrived: AtomicU32,
    generation: AtomicU32,
}

impl Barrier {
    pub const fn new() -> Barrier {
        Barrier { arrived: AtomicU32::new(0), generation: AtomicU32::new(0) }
    }

    /// Waits until `parties` vCPUs (the same number at every call) called it.
    pub fn wait(&self, parties: u32) {
        // Read before arriving: the generation cannot move on until this
        // vCPU has arrived.
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == parties {
            // Reset before the release, so nobody arrives at the next
            // round before the count is back at zero.
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.store(generation.wrapping_add(1), Ordering::Release);
        } else {
            while self.generation.load(Ordering::Acquire) == generation {
                spin_loop();
            }
        }
    }
}

impl Default for Barrier {
    fn default() -> Self {
        Barrier::new()
    }
}

/// Halts (`sti; hlt`) until `done()` holds, checking it with interrupts
/// off so that a wake-up between the check and the HLT is not lost.
/// Returns with interrupts off.
pub fn halt_until(mut done: impl FnMut() -> bool) {
    loop {
        cpu::cli();
        if done() {
            return;
        }
        cpu::sti_hlt();
    }
}

/// Spins with interrupts on for `ticks` TSC ticks (timer checks that
/// nothing more fires). Returns with interrupts off.
pub fn spin_for(ticks: u64) {
    let start = cpu::rdtsc();
    cpu::sti();
    while cpu::rdtsc().wrapping_sub(start) < ticks {
        spin_loop();
    }
    cpu::cli();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    #[test]
    fn nobody_leaves_a_round_before_all_arrived() {
        const PARTIES: u32 = 3;
        const ROUNDS: u64 = 50;
        let barrier = Arc::new(Barrier::new());
        let arrivals = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..PARTIES)
            .map(|_| {
                let (barrier, arrivals) = (barrier.clone(), arrivals.clone());
                std::thread::spawn(move || {
                    for round in 1..=ROUNDS {
                        arrivals.fetch_add(1, Ordering::SeqCst);
                        barrier.wait(PARTIES);
                        assert!(arrivals.load(Ordering::SeqCst) >= round * u64::from(PARTIES));
                        barrier.wait(PARTIES);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(arrivals.load(Ordering::SeqCst), ROUNDS * u64::from(PARTIES));
    }
}
