//! `triple`: vCPU 0 loads an IDT with limit 0 and executes `ud2`: the #UD
//! finds no gate, nor does the #DF after it, so the vCPU triple-faults and
//! the VMM must stop the VM and say so (the others park). The guest never
//! exits normally; if it runs on after the `ud2` it says so and exits 1.
#![cfg_attr(target_os = "none", no_std, no_main)]

use test_guests::{cpu, println, status, Start};

test_guests::guest!(triple_fault);

fn triple_fault(start: &Start) -> u32 {
    if start.vcpu != 0 {
        test_guests::park();
    }
    println!("triple: ud2 with an empty idt (limit 0): the vm must stop with a triple fault");
    // SAFETY: an empty IDT is the point: every exception from here on is
    // a triple fault, which ends the VM.
    unsafe { cpu::lidt(0, 0) };
    cpu::ud2();
    println!("triple: FAILED: still running after ud2 with an empty idt");
    status::FAILED
}
