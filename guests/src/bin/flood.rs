//! `flood`: every vCPU executes CPUID (which always exits to the VMM) in
//! an endless loop; vCPU 0 prints a dot every 100000, 64 to a line. The
//! VMM must be able to kill the VM while its shell keeps answering.
#![cfg_attr(target_os = "none", no_std, no_main)]

use test_guests::{cpu, print, println, Start};

test_guests::guest!(flood);

const DOT_EVERY: u32 = 100_000;
const DOTS_A_LINE: u32 = 64;

fn flood(start: &Start) -> u32 {
    println!("flood: vcpu {} of {} executing cpuid in a loop", start.vcpu, start.count);
    let mut dots = 0u32;
    loop {
        for _ in 0..DOT_EVERY {
            cpu::cpuid(0, 0);
        }
        if start.vcpu == 0 {
            dots = dots.wrapping_add(1);
            if dots.is_multiple_of(DOTS_A_LINE) {
                println!(".");
            } else {
                print!(".");
            }
        }
    }
}
