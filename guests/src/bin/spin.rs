//! `spin`: every vCPU says so, masks interrupts and spins on one jump
//! forever, never exiting to the VMM: the VMM must still be able to stop
//! and kill the VM.
#![cfg_attr(target_os = "none", no_std, no_main)]

use test_guests::{cpu, println, Start};

test_guests::guest!(spin);

fn spin(start: &Start) -> u32 {
    println!("spin: vcpu {} of {} spinning with interrupts off", start.vcpu, start.count);
    cpu::cli();
    cpu::spin_forever()
}
