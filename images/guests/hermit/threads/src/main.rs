//! Worker threads sharing one computation: the items 0..ITEMS are split
//! among N workers (N from the first argument, else the CPU count), each
//! item's value is folded in with a wrapping add, so the checksum is the
//! same for every N and every order the workers finish in. Every item
//! goes through f64 square roots, so a worker's SSE state must survive
//! the kernel's lazy FPU switching between threads. Exit 0 when the
//! checksum is the expected one, 1 otherwise.

use std::process::ExitCode;
use std::thread;
use std::time::Instant;

/// How many items the workers share.
const ITEMS: u64 = 200_000;

/// The checksum of 0..ITEMS, computed once on the host with this file's
/// `item` (it is plain Rust; IEEE f64 sqrt is exact, so every x86_64
/// gives the same bits).
const EXPECTED: u64 = 0x31ed_d773_16e2_74f8;

/// One item's value: a SplitMix64 scramble of its index (so neighbouring
/// items differ in every bit), then square roots in f64.
fn item(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let root = (z as f64).sqrt();
    z ^ root.to_bits() ^ root.sqrt().to_bits().rotate_left(17)
}

/// The folded value of the items `range`.
fn chunk(range: std::ops::Range<u64>) -> u64 {
    range.map(item).fold(0, u64::wrapping_add)
}

fn main() -> ExitCode {
    let workers = match std::env::args().nth(1) {
        Some(arg) => match arg.parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => {
                println!("threads: the argument is the number of workers (1 or more), not {arg:?}");
                return ExitCode::FAILURE;
            }
        },
        None => thread::available_parallelism().map_or(1, |n| n.get() as u64),
    };
    println!("threads: {workers} workers share {ITEMS} items");
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let range = ITEMS * w / workers..ITEMS * (w + 1) / workers;
            thread::spawn(move || {
                let len = range.end - range.start;
                let sum = chunk(range);
                (len, sum, start.elapsed())
            })
        })
        .collect();
    let mut checksum = 0u64;
    for (w, handle) in handles.into_iter().enumerate() {
        let Ok((len, sum, done)) = handle.join() else {
            println!("threads: worker {w} panicked");
            return ExitCode::FAILURE;
        };
        println!("threads: worker {w}: {len} items, done after {} ms", done.as_millis());
        checksum = checksum.wrapping_add(sum);
    }
    println!("threads: checksum {checksum:#018x} in {} ms", start.elapsed().as_millis());
    if checksum == EXPECTED {
        println!("threads: checksum ok");
        ExitCode::SUCCESS
    } else {
        println!("threads: checksum WRONG, expected {EXPECTED:#018x}");
        ExitCode::FAILURE
    }
}
