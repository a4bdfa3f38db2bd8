//! Sleeping threads: SLEEPERS threads (spread by Hermit over the cores)
//! start together and sleep for different times, shortest last-spawned,
//! so the order they wake in comes from the timers alone, not from the
//! order they were started. Checks, with std::time::Instant, that each
//! slept at least as long as it asked, that they woke shortest first,
//! and that they slept at the same time (the whole run takes about the
//! longest sleep, not the sum). Exit 0 when all hold, 1 otherwise.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const SLEEPERS: u64 = 4;
/// Sleeper i sleeps (SLEEPERS - i) steps: far enough apart that timer
/// and scheduling latency cannot swap two of them.
const STEP: Duration = Duration::from_millis(100);

/// What one sleeper saw: how long it asked for, how long it took, and
/// its place in the order of waking up.
struct Woke {
    asked: Duration,
    slept: Duration,
    place: usize,
}

fn main() -> ExitCode {
    let order = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(SLEEPERS as usize));
    let began = Instant::now();
    let sleepers: Vec<_> = (0..SLEEPERS)
        .map(|i| {
            let (order, start) = (order.clone(), start.clone());
            let asked = STEP * (SLEEPERS - i) as u32;
            thread::spawn(move || {
                start.wait();
                let t = Instant::now();
                thread::sleep(asked);
                let slept = t.elapsed();
                Woke { asked, slept, place: order.fetch_add(1, Ordering::SeqCst) }
            })
        })
        .collect();
    let mut ok = true;
    for (i, sleeper) in sleepers.into_iter().enumerate() {
        let Ok(w) = sleeper.join() else {
            println!("timers: sleeper {i} panicked");
            return ExitCode::FAILURE;
        };
        // The longest sleeper (i = 0) must wake last.
        let place = SLEEPERS as usize - 1 - i;
        let verdict = if w.slept < w.asked {
            "WOKE EARLY"
        } else if w.place != place {
            "OUT OF ORDER"
        } else {
            "ok"
        };
        ok &= verdict == "ok";
        println!(
            "timers: sleeper {i} asked {} ms, slept {} ms, woke {} of {SLEEPERS} (expected {}): {verdict}",
            w.asked.as_millis(),
            w.slept.as_millis(),
            w.place + 1,
            place + 1
        );
    }
    let total = began.elapsed();
    let longest = STEP * SLEEPERS as u32;
    // Slept one after another they would need 1+2+..+SLEEPERS steps; at
    // the same time, the longest plus latency, well under twice it.
    let together = total < longest * 2;
    println!(
        "timers: all woke after {} ms (longest sleep {} ms): {}",
        total.as_millis(),
        longest.as_millis(),
        if together { "slept at the same time" } else { "NOT CONCURRENT" }
    );
    if ok && together {
        println!("timers: ok");
        ExitCode::SUCCESS
    } else {
        println!("timers: FAILED");
        ExitCode::FAILURE
    }
}
