//! modvisor's loader: the microkernel that boots, owns memory, interrupts,
//! APICs and the SMP mechanism, and runs in-image test suites.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
// Every in-image test returns `tests::Failure`, a fixed buffer on purpose:
// reporting must work with the heap exhausted.
#![allow(clippy::result_large_err)]

extern crate alloc;

mod acpi;
mod apic;
mod boot;
mod cmos;
mod console;
mod cpu;
mod ioapic;
mod mem;
mod percpu;
mod plugin;
mod power;
// The shell's kernel half sits with its pure half (`loader::shell`) in
// src/shell/; a plain `mod shell` would pick up the library's mod.rs.
mod sci;
#[path = "shell/kernel.rs"]
mod shell;
mod smp;
mod system;
mod tests;
mod time;
mod timer;
mod upload;
mod watchdog;

use loader::cmdline::{self, CommandLine};
use loader::exit::Status;
use loader::madt::CpuClass;
use spin::Once;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Watchdog period of test images unless the command line sets one.
const DEFAULT_TEST_WATCHDOG_SECS: u32 = 60;

static BOOT: Once<(boot::BootInfo, CommandLine<'static>)> = Once::new();

/// What the boot protocol passed and the command line parsed from it
/// (recorded by `kernel_entry` before anything else runs).
pub fn boot_info() -> &'static (boot::BootInfo, CommandLine<'static>) {
    BOOT.get().expect("boot information is recorded in kernel_entry")
}

/// The first Rust code, called by `boot/entry.S` on the boot CPU in long
/// mode with the boot stack.
#[no_mangle]
extern "C" fn kernel_entry(protocol: u32, info: u64) -> ! {
    time::mark_boot();
    console::init(log::LevelFilter::Info);
    // SAFETY: `entry.S` passes the protocol and the untouched %ebx value,
    // and identity-maps the first 4 GiB.
    let boot = match unsafe { boot::parse(protocol, info) } {
        Ok(b) => b,
        Err(e) => panic!("cannot read the boot information: {e}"),
    };
    let cl = match CommandLine::parse(boot.cmdline) {
        Ok(cl) => cl,
        Err(e) => usage_error(format_args!("{e}")),
    };
    if let Err(unknown) = tests::validate(cl.suites()) {
        usage_error(format_args!("unknown test suite `{unknown}` in `test=`"));
    }
    console::set_level(cl.log_level);
    let mut boot = boot;
    if boot.rsdp.is_none() {
        let found = acpi::search_bios_rsdp()
            .unwrap_or_else(|e| panic!("no RSDP from {} nor in the BIOS area: {e}", boot.protocol.name()));
        boot.rsdp = Some(found);
    }
    let (boot, _) = BOOT.call_once(|| (boot, cl));
    if let Err(e) = mem::init(boot) {
        panic!("memory setup failed: {e}");
    }
    let stack =
        mem::Stack::new(BOOT_CPU_STACK_PAGES).unwrap_or_else(|e| panic!("cannot allocate the boot CPU's stack: {e}"));
    mem::switch_stack(stack, boot_cpu_main)
}

/// The boot CPU's stack after `kernel_entry`: guarded, unlike the boot stack.
const BOOT_CPU_STACK_PAGES: u64 = 32;

fn usage_error(msg: core::fmt::Arguments) -> ! {
    println!("error: {msg}\naccepted arguments:\n{}", cmdline::HELP);
    println!("test suites: all, {}", Names(tests::list));
    power::exit(Status::BadCommandLine)
}

/// Prints the items of an iterator separated by commas.
struct Names<I: Iterator<Item = &'static str>>(fn() -> I);

impl<I: Iterator<Item = &'static str>> core::fmt::Display for Names<I> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, n) in (self.0)().enumerate() {
            write!(f, "{}{n}", if i == 0 { "" } else { ", " })?;
        }
        Ok(())
    }
}

/// The rest of the boot CPU's work, on its guarded stack.
extern "C" fn boot_cpu_main() -> ! {
    let (boot, cl) = BOOT.get().expect("boot information is recorded before the stack switch");
    // Loaded at once, with the boot GDT's code selector, so that any fault
    // from here on is reported.
    cpu::idt::init();
    cpu::idt::load();
    let rsdp = boot.rsdp.expect("kernel_entry finds the RSDP");
    let acpi = acpi::init(rsdp).unwrap_or_else(|e| panic!("{e}"));
    let mode = apic::choose_mode(cl.apic, acpi.lapic_address).unwrap_or_else(|e| panic!("{e}"));
    apic::init_this_cpu();
    let apic_id = apic::id();
    let Some(id) = acpi.cpus.id_of(apic_id) else {
        panic!("the boot CPU (APIC id {apic_id}) is not in the MADT");
    };
    let stacks = cpu::CpuStacks::new().unwrap_or_else(|e| panic!("boot CPU stacks: {e}"));
    // The boot CPU never stops, so its interrupt stacks live forever.
    static BSP_STACKS: Once<cpu::CpuStacks> = Once::new();
    cpu::init_this_cpu(id, apic_id, BSP_STACKS.call_once(|| stacks));
    ioapic::init(acpi);
    let cal = timer::calibrate(acpi).unwrap_or_else(|e| panic!("{e}"));
    timer::init().unwrap_or_else(|e| panic!("{e}"));
    timer::start_tick();
    smp::init(id);
    // Without COM2 there is no upload, and the rest works on.
    if let Err(e) = upload::init(acpi) {
        log::warn!("plugin upload over COM2 is off: {e}");
    }
    // Without the SCI there is no physical CPU hotplug; the rest works on.
    if let Err(e) = sci::init(acpi) {
        log::warn!("ACPI SCI is off: {e}");
    }
    plugin::commands::register();

    banner(boot, acpi, mode, cal);
    x86_64::instructions::interrupts::enable();

    let watchdog_secs = cl.watchdog_secs.unwrap_or(if cl.tests.is_some() { DEFAULT_TEST_WATCHDOG_SECS } else { 0 });
    watchdog::arm(watchdog_secs as u64);
    for item in cl.boot_plugins() {
        // `name@version` or just `name` (the highest version in the store).
        let (name, version) = match item.split_once('@') {
            Some((n, v)) => (n, Some(v)),
            None => (item, None),
        };
        // A plugin that cannot load here (VMX under QEMU) says why; the
        // boot goes on.
        match plugin::registry::load(name, version) {
            Ok((n, v)) => println!("loaded {n} {v}"),
            Err(e) => println!("error: cannot load {name}: {e}"),
        }
    }
    // Boot-to-console includes loading the standard plugin set.
    if cl.bench {
        // Under QEMU `-icount shift=0` the TSC counts instructions since
        // reset, so these are deterministic instruction counts.
        let now = time::rdtsc();
        println!(
            "bench: boot-to-console {now} tsc (firmware and boot loader {} tsc, loader {} tsc)",
            time::boot_tsc(),
            now - time::boot_tsc()
        );
        power::exit(Status::PowerOff);
    }
    shell::run_boot_commands(cl.boot_commands());
    if cl.tests.is_some() {
        power::exit(tests::run(cl));
    }
    shell::run()
}

fn banner(boot: &boot::BootInfo, acpi: &acpi::Acpi, mode: apic::Mode, cal: timer::Calibration) {
    println!(
        "modvisor {VERSION} loader, booted via {}, image {}",
        boot.protocol.name(),
        (BOOT.get().unwrap().1).image.unwrap_or("(unnamed)")
    );
    println!(
        "cpus: {} enabled at boot, {} hot-pluggable; APIC ids {}; {} mode",
        acpi.cpus.count(CpuClass::Boot),
        acpi.cpus.count(CpuClass::HotPluggable),
        CpuIds(&acpi.cpus),
        mode.name()
    );
    println!("memory: {} MiB usable", boot.usable.total() >> 20);
    println!(
        "timer: TSC {}.{:03} MHz, APIC timer {}.{:03} MHz (against the ACPI PM timer)",
        cal.tsc_hz / 1_000_000,
        cal.tsc_hz / 1000 % 1000,
        cal.lapic_hz / 1_000_000,
        cal.lapic_hz / 1000 % 1000
    );
}

/// `0 1 (2 3)`: boot CPUs, then hot-pluggable slots in parentheses.
struct CpuIds<'a>(&'a loader::madt::CpuList);

impl core::fmt::Display for CpuIds<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            match c.class {
                CpuClass::Boot => write!(f, "{sep}{}", c.apic_id)?,
                CpuClass::HotPluggable => write!(f, "{sep}({})", c.apic_id)?,
            }
        }
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    x86_64::instructions::interrupts::disable();
    if console::enter_panic() {
        println!("panic on cpu {}: {info}", percpu::current_id());
        system::emergency(plugins::system_state::PANIC);
        power::exit(Status::Panic);
    }
    power::halt_forever("nested panic")
}
