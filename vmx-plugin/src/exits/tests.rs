//! The exit decoders against hand-computed field values (bit layouts from
//! the SDM tables cited in the module).

use super::*;
use std::format;
use std::string::ToString;
use std::vec::Vec;

#[test]
fn basic_reason_numbers_and_names() {
    let table = [
        (reason::EXCEPTION_OR_NMI, 0, "exception or NMI"),
        (reason::EXTERNAL_INTERRUPT, 1, "external interrupt"),
        (reason::TRIPLE_FAULT, 2, "triple fault"),
        (reason::INIT, 3, "INIT signal"),
        (reason::SIPI, 4, "start-up IPI"),
        (reason::INTERRUPT_WINDOW, 7, "interrupt window"),
        (reason::NMI_WINDOW, 8, "NMI window"),
        (reason::TASK_SWITCH, 9, "task switch"),
        (reason::CPUID, 10, "CPUID"),
        (reason::HLT, 12, "HLT"),
        (reason::INVD, 13, "INVD"),
        (reason::INVLPG, 14, "INVLPG"),
        (reason::RDPMC, 15, "RDPMC"),
        (reason::RDTSC, 16, "RDTSC"),
        (reason::VMCALL, 18, "VMCALL"),
        (reason::VMCLEAR, 19, "VMCLEAR"),
        (reason::VMRESUME, 24, "VMRESUME"),
        (reason::VMXON, 27, "VMXON"),
        (reason::CR_ACCESS, 28, "control-register access"),
        (reason::DR_ACCESS, 29, "MOV DR"),
        (reason::IO_INSTRUCTION, 30, "I/O instruction"),
        (reason::RDMSR, 31, "RDMSR"),
        (reason::WRMSR, 32, "WRMSR"),
        (reason::INVALID_GUEST_STATE, 33, "VM-entry failure: invalid guest state"),
        (reason::MSR_LOADING, 34, "VM-entry failure: MSR loading"),
        (reason::MWAIT, 36, "MWAIT"),
        (reason::MONITOR_TRAP_FLAG, 37, "monitor trap flag"),
        (reason::MONITOR, 39, "MONITOR"),
        (reason::PAUSE, 40, "PAUSE"),
        (reason::MACHINE_CHECK, 41, "VM-entry failure: machine-check event"),
        (reason::TPR_BELOW_THRESHOLD, 43, "TPR below threshold"),
        (reason::APIC_ACCESS, 44, "APIC access"),
        (reason::VIRTUALIZED_EOI, 45, "virtualized EOI"),
        (reason::EPT_VIOLATION, 48, "EPT violation"),
        (reason::EPT_MISCONFIG, 49, "EPT misconfiguration"),
        (reason::INVEPT, 50, "INVEPT"),
        (reason::PREEMPTION_TIMER, 52, "VMX-preemption timer expired"),
        (reason::INVVPID, 53, "INVVPID"),
        (reason::WBINVD, 54, "WBINVD or WBNOINVD"),
        (reason::XSETBV, 55, "XSETBV"),
        (reason::APIC_WRITE, 56, "APIC write"),
        (reason::PML_FULL, 62, "page-modification log full"),
        (reason::ENCLV, 70, "ENCLV"),
        (reason::ENQCMD_PASID_FAILURE, 72, "ENQCMD PASID translation failure"),
        (reason::TDCALL, 77, "TDCALL"),
    ];
    for (constant, number, name) in table {
        assert_eq!(constant, number);
        assert_eq!(reason_name(number), Some(name), "reason {number}");
    }
    for unassigned in [35, 38, 42, 71, 78, 1000, u16::MAX] {
        assert_eq!(reason_name(unassigned), None, "reason {unassigned}");
    }
    assert_eq!((0..REASONS as u16).filter_map(reason_name).count(), REASONS - 4);
}

#[test]
fn exit_reason_field() {
    let failed = ExitReason(0x8000_0021);
    assert_eq!(failed.basic(), 33);
    assert!(failed.entry_failure() && !failed.pending_mtf() && !failed.from_vmx_root() && !failed.enclave());
    assert_eq!(failed.to_string(), "VM-entry failure: invalid guest state (33), VM entry failed");
    let ept = ExitReason(48);
    assert!(!ept.entry_failure());
    assert_eq!(ept.to_string(), "EPT violation (48)");
    let flags = ExitReason(0x3800_000c);
    assert_eq!(flags.basic(), reason::HLT);
    assert!(flags.pending_mtf() && flags.from_vmx_root() && flags.enclave() && !flags.entry_failure());
    assert_eq!(ExitReason(0x63).to_string(), "unknown exit reason (99)");
    // Bits 30:16 never leak into the basic reason.
    assert_eq!(ExitReason(0x7fff_0001).basic(), 1);
}

#[test]
fn io_qualifications() {
    let io = |port, size, direction, string, rep, immediate| IoExit { port, size, direction, string, rep, immediate };
    let cases = [
        // out dx, eax to the uhyve console port.
        (0x0880_0003, io(0x880, 4, IoDirection::Out, false, false, false), "out 4 bytes to port 0x880"),
        // in al, 0x60.
        (0x0060_0048, io(0x60, 1, IoDirection::In, false, false, true), "in 1 byte from port 0x60"),
        // in ax, dx from PCI config data.
        (0x0cfc_0009, io(0xcfc, 2, IoDirection::In, false, false, false), "in 2 bytes from port 0xcfc"),
        // rep outsb to COM1.
        (0x03f8_0030, io(0x3f8, 1, IoDirection::Out, true, true, false), "rep out 1 byte to port 0x3f8 (string)"),
        // High qualification bits are reserved and ignored.
        (0xffff_0000_ffff_0003, io(0xffff, 4, IoDirection::Out, false, false, false), "out 4 bytes to port 0xffff"),
    ];
    for (qual, expected, shown) in cases {
        assert_eq!(IoExit::decode(qual), Ok(expected), "{qual:#x}");
        assert_eq!(expected.to_string(), shown);
    }
    for size in [2, 4, 5, 6, 7] {
        assert_eq!(IoExit::decode(0x80_0000 | size), Err(ExitError::BadIoSize(size as u8)));
    }
}

#[test]
fn cr_access_qualifications() {
    let cases = [
        (0x004, CrAccess::MovTo { cr: 4, gpr: 0 }, "mov cr4 <- rax"),
        (0x313, CrAccess::MovFrom { cr: 3, gpr: 3 }, "mov rbx <- cr3"),
        (0xf00, CrAccess::MovTo { cr: 0, gpr: 15 }, "mov cr0 <- r15"),
        (0x108, CrAccess::MovTo { cr: 8, gpr: 1 }, "mov cr8 <- rcx"),
        (0x418, CrAccess::MovFrom { cr: 8, gpr: 4 }, "mov rsp <- cr8"),
        (0x020, CrAccess::Clts, "clts"),
        (0x0001_0030, CrAccess::Lmsw { source: 1, memory: false }, "lmsw 0x1"),
        (0x000f_0070, CrAccess::Lmsw { source: 0xf, memory: true }, "lmsw 0xf (memory operand)"),
    ];
    for (qual, expected, shown) in cases {
        assert_eq!(CrAccess::decode(qual), expected, "{qual:#x}");
        assert_eq!(expected.to_string(), shown);
    }
}

#[test]
fn events_encode_to_entry_interruption_information() {
    let cases = [
        // vector | type << 8 | deliver-error-code << 11 | valid << 31
        (Event::gp(0), 0x8000_0b0d, Some(0)),
        (Event::pf(0x6), 0x8000_0b0e, Some(6)),
        (Event::df(), 0x8000_0b08, Some(0)),
        (Event::ud(), 0x8000_0306, None),
        (Event::nmi(), 0x8000_0202, None),
        // The Hermit timer and wakeup vectors.
        (Event::external(0x7b), 0x8000_007b, None),
        (Event::external(0x79), 0x8000_0079, None),
        (Event::gp(0).in_real_mode(), 0x8000_030d, None),
    ];
    for (event, info, error_code) in cases {
        assert_eq!(event.info(), info, "{event}");
        assert_eq!(event.error_code, error_code);
        assert!(!event.needs_instruction_length());
        // Every constructor's event is one VM entry accepts in protected
        // mode, but the real-mode #GP (checked by `Event::new` as if in
        // protected mode).
        let checked = Event::new(event.kind, event.vector, event.error_code);
        match info {
            0x8000_030d => assert!(checked.is_err()),
            _ => assert_eq!(checked, Ok(event)),
        }
        assert_eq!(Event::decode(info, error_code.unwrap_or(0xdead)), Ok(Some(event)));
    }
    let int80 = Event::new(EventKind::SoftwareInterrupt, 0x80, None).unwrap();
    assert_eq!(int80.info(), 0x8000_0480);
    assert!(int80.needs_instruction_length());
    assert_eq!(Event::new(EventKind::Other, 0, None).unwrap().info(), 0x8000_0700);
    assert_eq!(Event::gp(0).to_string(), "hardware exception 13, error code 0x0");
}

#[test]
fn events_vm_entry_would_refuse() {
    use EventKind::*;
    let refused = [
        (Nmi, 3, None, ExitError::BadVector { kind: Nmi, vector: 3 }),
        (HardwareException, 32, None, ExitError::BadVector { kind: HardwareException, vector: 32 }),
        (Other, 1, None, ExitError::BadVector { kind: Other, vector: 1 }),
        (HardwareException, 13, None, ExitError::ErrorCodeMismatch { kind: HardwareException, vector: 13 }),
        (HardwareException, 6, Some(0), ExitError::ErrorCodeMismatch { kind: HardwareException, vector: 6 }),
        (External, 0x79, Some(1), ExitError::ErrorCodeMismatch { kind: External, vector: 0x79 }),
        (SoftwareException, 3, Some(0), ExitError::ErrorCodeMismatch { kind: SoftwareException, vector: 3 }),
    ];
    for (kind, vector, error_code, error) in refused {
        assert_eq!(Event::new(kind, vector, error_code), Err(error));
    }
    let shown: Vec<_> = refused.iter().map(|r| r.3.to_string()).collect();
    assert_eq!(shown[0], "vector 3 is not valid for an NMI");
    assert_eq!(shown[3], "a hardware exception with vector 13 must have an error code");
    assert_eq!(shown[5], "an external interrupt with vector 121 must not have an error code");
    assert_eq!(shown[4], "a hardware exception with vector 6 must not have an error code");
}

#[test]
fn exit_interruption_information() {
    assert_eq!(Event::decode(0x0000_0b0e, 6), Ok(None), "valid bit clear");
    assert_eq!(Event::decode(0x8000_010e, 0), Err(ExitError::ReservedEventType));
    // #BP from INT3 as a software exception, with the NMI-unblocking bit.
    let bp = Event::decode(0x8000_1603, 0).unwrap().unwrap();
    assert_eq!(bp, Event { vector: 3, kind: EventKind::SoftwareException, error_code: None });
    assert!(nmi_unblocking(0x8000_1603));
    assert!(!nmi_unblocking(0x8000_0603));
    assert!(!nmi_unblocking(0x0000_1603), "only a valid field says anything");
}

#[test]
fn counts_by_reason() {
    let mut counts = ExitCounts::new();
    assert_eq!(counts.iter().count(), 0);
    assert_eq!(counts.to_string(), "0 exits");
    for raw in [10, 30, 10, 0x8000_0021, 35, 200, 30, 30] {
        counts.record(ExitReason(raw));
    }
    assert_eq!(counts.total(), 8);
    assert_eq!(counts.count(reason::CPUID), 2);
    assert_eq!(counts.count(reason::INVALID_GUEST_STATE), 1);
    assert_eq!(counts.count(35), 0);
    let listed: Vec<_> = counts.iter().collect();
    assert_eq!(
        listed,
        [("CPUID", 2), ("I/O instruction", 3), ("VM-entry failure: invalid guest state", 1), ("other", 2)]
    );
    let mut vm = ExitCounts::default();
    vm.merge(&counts);
    vm.merge(&counts);
    assert_eq!(vm.total(), 16);
    assert_eq!(vm.count(reason::IO_INSTRUCTION), 6);
    let mut one = ExitCounts::new();
    one.record(ExitReason(12));
    assert_eq!(one.to_string(), "1 exit: HLT 1");
    assert_eq!(
        format!("{counts}"),
        "8 exits: CPUID 2, I/O instruction 3, VM-entry failure: invalid guest state 1, other 2"
    );
}
