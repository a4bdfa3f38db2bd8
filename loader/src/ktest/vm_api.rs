//! The `vm-api` suite (Bochs): the `vm` 1.1 table driven the way a
//! boot-protocol or device plugin would drive it. Guests are written into
//! RAM with `write` (hand-assembled, `vm_api_code.rs`), vCPUs are created
//! one by one and given their first state: a real-mode guest (unrestricted
//! guest) and a long-mode one on its own page tables and GDT. Port and
//! MMIO handlers see the guests' accesses and answer their reads, which
//! the guests check; unhandled ports stop the VM or are ignored; the
//! counter guest pauses and resumes; the hooks see every VM and vCPU event
//! in order, refuse a vCPU, and see the ipi guest's ICR writes. Every
//! refusal's message is checked in the console output.

use super::cpuhp::boot_aps;
use super::guests::{destroy, finish, start, state, vm, wait};
use super::vm_api_code as code;
use super::vmx::fresh;
use crate::console::capture;
use crate::ktest::{Failure, Test};
use crate::{check, check_eq, failure};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use plugins::StrRef;
use spin::Mutex;
use vmx_api::{code as rc, port_policy, vcpu_mode, vm_state, VcpuInit, VmHooks};

crate::suite!(SUITE_VM_API, "vm-api", TESTS, crate::ktest::InAll::OnlyWhenNamed);
static TESTS: &[Test] = &[
    Test { name: "real-mode-guest-and-port-handlers", run: real_mode },
    Test { name: "long-mode-guest-mmio-and-ignored-ports", run: long_mode },
    Test { name: "undecodable-mmio-and-string-io-stop-with-reports", run: unsupported },
    Test { name: "pause-and-resume-the-counter", run: pause_resume },
    Test { name: "hooks-in-order-and-a-refused-vcpu", run: hooks },
    Test { name: "icr-writes-reach-the-hook", run: icr_hook },
];

/// Runs `f`, which must be refused with `code`, and checks that the
/// console got a message containing `says`.
fn refused(what: &str, code: i64, says: &str, f: impl FnOnce() -> Result<i64, Failure>) -> Result<(), Failure> {
    capture::start();
    let got = f();
    let text = capture::text();
    capture::stop();
    check_eq!(got?, code, "{what}: the code");
    check!(text.contains(says), "{what}: no `{says}` in the log: {text:?}");
    Ok(())
}

/// A VM with RAM only (no vCPUs); its id.
fn bare_vm(name: &str) -> Result<u32, Failure> {
    let id = vm(|t| (t.create)(StrRef::borrowed(name), 8, 0, core::ptr::null(), 0))?;
    check!(id > 0, "create {name} without vCPUs: {id}");
    Ok(id as u32)
}

/// A CPU with VMX other than the boot CPU where there is one.
fn vcpu_cpu() -> u32 {
    boot_aps().first().map_or(0, |&c| c as u32)
}

fn write(id: u32, gpa: u64, bytes: &[u8]) -> Result<(), Failure> {
    check_eq!(vm(|t| (t.write)(id, gpa, bytes.as_ptr(), bytes.len()))?, 0, "write {} bytes at {gpa:#x}", bytes.len());
    Ok(())
}

/// What the handlers saw: (port or address, size, write, value).
static ACCESSES: Mutex<Vec<(u64, u8, bool, u64)>> = Mutex::new(Vec::new());

fn seen() -> Vec<(u64, u8, bool, u64)> {
    core::mem::take(&mut *ACCESSES.lock())
}

/// The context the handlers are registered with, which they check.
const CTX: usize = 0x5eed;

extern "C" fn on_port(ctx: usize, _vm: u32, _vcpu: u32, port: u16, size: u8, write: bool, value: *mut u32) -> i32 {
    if ctx != CTX {
        return 9;
    }
    // SAFETY: vmx-plugin passes a live u32.
    let v = unsafe { &mut *value };
    if !write {
        *v = match port {
            0x3f8 => 0x5a,
            0x81 => 0xbeef,
            _ => 0,
        };
    }
    ACCESSES.lock().push((port as u64, size, write, *v as u64));
    0
}

extern "C" fn on_mmio(ctx: usize, _vm: u32, _vcpu: u32, gpa: u64, size: u8, write: bool, value: *mut u64) -> i32 {
    if ctx != CTX {
        return 9;
    }
    // SAFETY: vmx-plugin passes a live u64.
    let v = unsafe { &mut *value };
    if !write {
        *v = match gpa {
            code::MMIO => 0xcafe_f00d,
            a if a == code::MMIO + 0x12 => 0xbeef,
            _ => 0,
        };
    }
    ACCESSES.lock().push((gpa, size, write, *v));
    0
}

fn real_mode() -> Result<(), Failure> {
    fresh()?;
    let id = bare_vm("real")?;
    let init = VcpuInit { mode: vcpu_mode::REAL, cs: 0x100, rip: 0, ss: 0x200, rsp: 0xfffe, ..VcpuInit::default() };
    let set = |i: &VcpuInit| vm(|t| (t.set_vcpu_state)(id, 0, i) as i64);
    refused("state of a missing vCPU", rc::REFUSED as i64, "has no vCPU 0", || set(&init))?;
    refused("start without vCPUs", rc::REFUSED as i64, "it has no vCPUs", || vm(|t| (t.start)(id) as i64))?;
    let cpu = vcpu_cpu();
    refused("vCPU id 16", rc::REFUSED as i64, "vCPU ids are 0 to 15", || vm(|t| (t.create_vcpu)(id, 16, cpu) as i64))?;
    check_eq!(vm(|t| (t.create_vcpu)(id, 0, cpu))?, 0, "create vCPU 0");
    refused("vCPU 0 again", rc::REFUSED as i64, "has a vCPU 0 already", || vm(|t| (t.create_vcpu)(id, 0, cpu) as i64))?;
    refused("start before the state", rc::REFUSED as i64, "no initial state", || vm(|t| (t.start)(id) as i64))?;
    let far = [0u8; 4];
    let outside = || vm(|t| (t.write)(id, (8 << 20) - 2, far.as_ptr(), 4) as i64);
    refused("write past RAM", rc::REFUSED as i64, "are not all RAM", outside)?;
    let reg = |first, count| vm(|t| (t.register_port)(id, first, count, on_port, CTX) as i64);
    check_eq!(reg(0x3f8, 2)?, 0, "ports 0x3f8..0x3fa");
    check_eq!(reg(0x80, 3)?, 0, "ports 0x80..0x83");
    refused("overlapping ports", rc::REFUSED as i64, "overlaps 0x3f8..0x3fa", || reg(0x3f9, 4))?;
    refused("policy 7", rc::REFUSED as i64, "neither stop", || vm(|t| (t.set_port_policy)(id, 7) as i64))?;
    write(id, 0x1000, &code::real_mode())?;
    let r = set(&init)?;
    if r != 0 {
        // Only a CPU without unrestricted guest refuses this state.
        return Err(failure!("real-mode state refused ({r}): see the log"));
    }
    seen();
    check_eq!(vm(|t| (t.start)(id))?, 0, "start real");
    finish(id, 5000)?;
    let expected = [
        (0x3f8, 1, true, 0x41),
        (0x3f8, 1, false, 0x5a),
        (0x80, 2, true, 0x1234),
        (0x81, 2, false, 0xbeef),
        (0x82, 4, true, 0x1234_5678),
        (0x3f9, 1, true, 1),
    ];
    check_eq!(seen(), expected, "the real-mode guest's port accesses (1 at 0x3f9: its checks passed)");
    let text = report("real");
    check!(text.contains("IN from port 0x60 (1 bytes) at rip 0x"), "the stop report: {text:?}");
    check!(text.contains("no handler for it (port policy: stop)"), "the stop report names the policy: {text:?}");
    destroy(id)
}

/// The long-mode guest's state: its own GDT, selectors and page tables.
fn long_init() -> VcpuInit {
    let mut gprs = [0; 15];
    gprs[4] = 0x5151; // RSI, which the guest checks
    VcpuInit {
        mode: vcpu_mode::LONG,
        cs: code::CS,
        ss: code::DS,
        ds: code::DS,
        cr0: 0x8000_0031,
        cr3: code::PML4,
        cr4: 0x20,
        efer: 0x500,
        gdt_base: code::GDT,
        gdt_limit: 31,
        rip: code::CODE,
        rsp: code::STACK,
        rflags: 2,
        gprs,
        ..VcpuInit::default()
    }
}

fn long_mode() -> Result<(), Failure> {
    fresh()?;
    let id = bare_vm("long")?;
    check_eq!(vm(|t| (t.create_vcpu)(id, 0, vcpu_cpu()))?, 0, "create vCPU 0");
    for (gpa, bytes) in code::long_mode() {
        write(id, gpa, &bytes)?;
    }
    let set = |i: VcpuInit| vm(|t| (t.set_vcpu_state)(id, 0, &i) as i64);
    refused("no PAE", rc::REFUSED as i64, "CR4 must have bits 0x20 set", || set(VcpuInit { cr4: 0, ..long_init() }))?;
    let bad_cs = || set(VcpuInit { cs: 0x28, ..long_init() });
    refused("CS past the GDT", rc::REFUSED as i64, "CS selector 0x28 must be a GDT index", bad_cs)?;
    check_eq!(set(long_init())?, 0, "the long-mode state");
    let mmio = |gpa, len| vm(|t| (t.register_mmio)(id, gpa, len, on_mmio, CTX) as i64);
    refused("MMIO in RAM", rc::REFUSED as i64, "must lie outside its RAM", || mmio(0x10_0000, 0x1000))?;
    check_eq!(mmio(code::MMIO, 0x1000)?, 0, "MMIO page");
    refused("overlapping MMIO", rc::REFUSED as i64, "overlaps 0x40000000..0x40001000", || mmio(code::MMIO + 8, 8))?;
    check_eq!(vm(|t| (t.register_port)(id, 0x90, 1, on_port, CTX))?, 0, "port 0x90");
    check_eq!(vm(|t| (t.set_port_policy)(id, port_policy::IGNORE))?, 0, "ignore other ports");
    seen();
    check_eq!(vm(|t| (t.start)(id))?, 0, "start long");
    finish(id, 5000)?;
    let m = code::MMIO;
    let expected = [
        (m, 4, false, 0xcafe_f00d),
        (m + 8, 8, true, 0x1122_3344_5566_7788),
        (m + 0x10, 1, true, 0x5a),
        (m + 0x12, 2, false, 0xbeef),
        (0x90, 1, true, 1),
    ];
    check_eq!(seen(), expected, "the long-mode guest's accesses (1 at 0x90: its checks passed)");
    destroy(id)
}

/// The report `vm info NAME` prints.
fn report(name: &str) -> alloc::string::String {
    capture::start();
    let _ = crate::shell::execute(&alloc::format!("vm info {name}"));
    let text = capture::text();
    capture::stop();
    text
}

/// Creates VM `name` with vCPU 0 in state `init`, RAM written from
/// `image`, ports 0x3f8.. and the MMIO page handled; runs it until it
/// stops; its `vm info` report.
fn run_until_stopped(name: &str, init: &VcpuInit, image: &[(u64, Vec<u8>)]) -> Result<alloc::string::String, Failure> {
    let id = bare_vm(name)?;
    check_eq!(vm(|t| (t.create_vcpu)(id, 0, vcpu_cpu()))?, 0, "create vCPU 0 of {name}");
    for (gpa, bytes) in image {
        write(id, *gpa, bytes)?;
    }
    check_eq!(vm(|t| (t.set_vcpu_state)(id, 0, init))?, 0, "the state of {name}");
    check_eq!(vm(|t| (t.register_port)(id, 0x3f8, 8, on_port, CTX))?, 0, "ports of {name}");
    check_eq!(vm(|t| (t.register_mmio)(id, code::MMIO, 0x1000, on_mmio, CTX))?, 0, "MMIO of {name}");
    check_eq!(vm(|t| (t.start)(id))?, 0, "start {name}");
    check_eq!(finish(id, 5000)?, -1, "{name} wrote an exit status");
    let text = report(name);
    destroy(id)?;
    Ok(text)
}

fn unsupported() -> Result<(), Failure> {
    fresh()?;
    seen();
    let text = run_until_stopped("movzx", &long_init(), &code::undecodable())?;
    let says = "MMIO at 0x40000000 by [0f, b6, 04, 25, 00, 00, 00, 40, f4";
    check!(text.contains(says) && text.contains("at rip 0x30000: byte 0 is no MOV"), "the report: {text:?}");
    let real = VcpuInit { mode: vcpu_mode::REAL, cs: 0x100, ss: 0x200, rsp: 0xfffe, ..VcpuInit::default() };
    let text = run_until_stopped("outsb", &real, &[(0x1000, code::string_out())])?;
    let says = "OUT to port 0x3f8 (1 bytes) at rip 0x3: string port I/O (INS/OUTS) is not supported";
    check!(text.contains(says), "the report: {text:?}");
    check_eq!(seen(), [], "handlers called for accesses they cannot take");
    Ok(())
}

fn counter(id: u32) -> Result<u64, Failure> {
    super::guests::counter(id, 0)
}

fn pause_resume() -> Result<(), Failure> {
    fresh()?;
    let id = start("c", "counter", 1, &[])?;
    check!(wait(3000, || counter(id).is_ok_and(|n| n > 0)), "the counter does not count");
    check_eq!(vm(|t| (t.pause)(id))?, 0, "pause");
    check_eq!(state(id)?.0, vm_state::PAUSED, "the state after pause");
    capture::start();
    let _ = crate::shell::execute("vm list");
    let listed = capture::text();
    capture::stop();
    check!(listed.contains("c (id ") && listed.contains("paused"), "vm list: {listed:?}");
    let at = counter(id)?;
    wait(300, || false);
    check_eq!(counter(id)?, at, "the count while paused");
    refused("pause twice", rc::REFUSED as i64, "is paused", || vm(|t| (t.pause)(id) as i64))?;
    refused("destroy paused", rc::REFUSED as i64, "is paused", || vm(|t| (t.destroy)(id) as i64))?;
    check_eq!(vm(|t| (t.resume)(id))?, 0, "resume");
    check!(wait(3000, || counter(id).is_ok_and(|n| n > at)), "the counter does not go on after resume");
    refused("resume running", rc::REFUSED as i64, "is running", || vm(|t| (t.resume)(id) as i64))?;
    crate::shell::execute("vm pause c").map_err(|e| failure!("vm pause: {e}"))?;
    crate::shell::execute("vm resume c").map_err(|e| failure!("vm resume: {e}"))?;
    // The counter's stop word: vCPU 0 exits 0.
    write(id, 0x8ff8, &1u64.to_le_bytes())?;
    check_eq!(finish(id, 5000)?, 0, "the counter's exit status");
    destroy(id)
}

/// The hooks' events: (kind, vm, vcpu); kinds 'C' VM created, 'p'
/// precreate, 'c' vCPU created, 'd' vCPU destroyed, 'D' VM destroyed.
static EVENTS: Mutex<Vec<(char, u32, u32)>> = Mutex::new(Vec::new());
static ICR_WRITES: AtomicU32 = AtomicU32::new(0);
/// vcpu_precreate refuses this vCPU id with code 77 (none outside the
/// hooks test).
static REFUSED_ID: AtomicU32 = AtomicU32::new(u32::MAX);

extern "C" fn vm_created(_: usize, vm: u32) {
    EVENTS.lock().push(('C', vm, 0));
}
extern "C" fn vcpu_precreate(_: usize, vm: u32, vcpu: u32) -> i32 {
    EVENTS.lock().push(('p', vm, vcpu));
    if vcpu == REFUSED_ID.load(Ordering::Relaxed) {
        77
    } else {
        0
    }
}
extern "C" fn vcpu_created(_: usize, vm: u32, vcpu: u32) {
    EVENTS.lock().push(('c', vm, vcpu));
}
extern "C" fn vcpu_destroyed(_: usize, vm: u32, vcpu: u32) {
    EVENTS.lock().push(('d', vm, vcpu));
}
extern "C" fn vm_destroyed(_: usize, vm: u32) {
    EVENTS.lock().push(('D', vm, 0));
}
extern "C" fn icr_write(_: usize, _: u32, _: u32, _: u64) -> i32 {
    ICR_WRITES.fetch_add(1, Ordering::Relaxed);
    0
}

static HOOKS: VmHooks = VmHooks {
    ctx: CTX,
    vm_created: Some(vm_created),
    vcpu_precreate: Some(vcpu_precreate),
    vcpu_created: Some(vcpu_created),
    vcpu_destroyed: Some(vcpu_destroyed),
    vm_destroyed: Some(vm_destroyed),
    icr_write: Some(icr_write),
};
static OTHER: VmHooks = VmHooks { icr_write: None, ..HOOKS };

/// Runs `f` with [`HOOKS`] installed, removing them after.
fn with_hooks(f: impl FnOnce() -> Result<(), Failure>) -> Result<(), Failure> {
    check_eq!(vm(|t| (t.register_hooks)(&HOOKS))?, 0, "register the hooks");
    let r = f();
    check_eq!(vm(|t| (t.unregister_hooks)(&HOOKS))?, 0, "unregister the hooks");
    r
}

fn hooks() -> Result<(), Failure> {
    fresh()?;
    EVENTS.lock().clear();
    REFUSED_ID.store(1, Ordering::Relaxed);
    let r = with_hooks(|| {
        refused("a second set", rc::REFUSED as i64, "installed already", || vm(|t| (t.register_hooks)(&OTHER) as i64))?;
        let other = || vm(|t| (t.unregister_hooks)(&OTHER) as i64);
        refused("removing others", rc::REFUSED as i64, "not the vm hooks installed", other)?;
        let cpu = vcpu_cpu();
        let id = bare_vm("hooked")?;
        check_eq!(vm(|t| (t.create_vcpu)(id, 0, cpu))?, 0, "vCPU 0");
        refused("vCPU 1", 77, "refused vCPU 1 of VM `hooked` with code 77", || {
            vm(|t| (t.create_vcpu)(id, 1, cpu) as i64)
        })?;
        check_eq!(vm(|t| (t.create_vcpu)(id, 2, cpu))?, 0, "vCPU 2");
        destroy(id)?;
        // A VM made with its vCPUs at once: the refusal of vCPU 1 undoes it.
        let two = vm(|t| (t.create)(StrRef::new("two"), 8, 2, core::ptr::null(), 0))?;
        check_eq!(two, rc::REFUSED as i64, "create with vCPU 1 refused");
        let expected = [
            ('C', id, 0),
            ('p', id, 0),
            ('c', id, 0),
            ('p', id, 1),
            ('p', id, 2),
            ('c', id, 2),
            ('d', id, 0),
            ('d', id, 2),
            ('D', id, 0),
        ];
        let events = core::mem::take(&mut *EVENTS.lock());
        check!(events.len() == expected.len() + 6, "the hooks' events: {events:?}");
        check_eq!(events[..expected.len()], expected, "the hooks' events for `hooked`");
        let t = events[expected.len()].1;
        let undone = [('C', t, 0), ('p', t, 0), ('c', t, 0), ('p', t, 1), ('d', t, 0), ('D', t, 0)];
        check!(t != id, "`two` has the id of `hooked`");
        check_eq!(events[expected.len()..], undone, "the hooks' events for `two`");
        Ok(())
    });
    REFUSED_ID.store(u32::MAX, Ordering::Relaxed);
    r
}

/// The ipi guest's ICR writes go through the hook first; it leaves
/// delivery to vmx-plugin (0), so the guest still passes.
fn icr_hook() -> Result<(), Failure> {
    fresh()?;
    ICR_WRITES.store(0, Ordering::Relaxed);
    let ap = *boot_aps().first().ok_or_else(|| failure!("the vm-api suite needs a second CPU"))? as u32;
    with_hooks(|| {
        let id = start("ipi", "ipi", 2, &[0, ap])?;
        check_eq!(finish(id, 30_000)?, 0, "ipi's exit status");
        destroy(id)
    })?;
    let n = ICR_WRITES.load(Ordering::Relaxed);
    check!(n >= 1000, "the hook saw {n} ICR writes of the 1000 ping-pongs");
    Ok(())
}
