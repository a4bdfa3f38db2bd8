//! modvisor's loader: the microkernel that boots, owns memory, interrupts,
//! APICs and the SMP mechanism, and runs in-image test suites.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
// Every in-image test returns `ktest::Failure`, a fixed buffer on purpose:
// reporting must work with the heap exhausted.
#![allow(clippy::result_large_err)]

extern crate alloc;

mod acpi;
mod boot;
mod console;
mod cpu;
mod interrupts;
#[cfg(feature = "ktest")]
mod ktest;
mod memory;
mod plugin;
mod power;
mod shell;
mod smp;
mod time;

use loader_core::acpi::madt::CpuClass;
use loader_core::boot::cmdline::{self, CommandLine};
use loader_core::power::exit::Status;
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
    check_suites(&cl);
    console::set_level(cl.log_level);
    let mut boot = boot;
    if boot.rsdp.is_none() {
        let found = acpi::search_bios_rsdp()
            .unwrap_or_else(|e| panic!("no RSDP from {} nor in the BIOS area: {e}", boot.protocol.name()));
        boot.rsdp = Some(found);
    }
    let (boot, _) = BOOT.call_once(|| (boot, cl));
    if let Err(e) = memory::init(boot) {
        panic!("memory setup failed: {e}");
    }
    let stack = memory::Stack::new(BOOT_CPU_STACK_PAGES)
        .unwrap_or_else(|e| panic!("cannot allocate the boot CPU's stack: {e}"));
    memory::switch_stack(stack, boot_cpu_main)
}

/// The boot CPU's stack after `kernel_entry`: guarded, unlike the boot stack.
const BOOT_CPU_STACK_PAGES: u64 = 32;

fn usage_error(msg: core::fmt::Arguments) -> ! {
    println!("error: {msg}\naccepted arguments:\n{}", cmdline::HELP);
    #[cfg(feature = "ktest")]
    {
        // No heap yet: the names go out one by one, in link order.
        console::write_fmt(format_args!("test suites: all"));
        for name in ktest::list() {
            console::write_fmt(format_args!(", {name}"));
        }
        println!();
    }
    power::exit(Status::BadCommandLine)
}

/// Refuses a `test=` that names a suite this loader does not have: any,
/// when it is built without in-image tests.
fn check_suites(cl: &CommandLine) {
    #[cfg(feature = "ktest")]
    if let Err(unknown) = ktest::validate(cl.suites()) {
        usage_error(format_args!("unknown test suite `{unknown}` in `test=`"));
    }
    #[cfg(not(feature = "ktest"))]
    if cl.tests.is_some() {
        usage_error(format_args!("`test=` needs a test image: this loader has no in-image tests (feature `ktest`)"));
    }
}

/// The rest of the boot CPU's work, on its guarded stack.
extern "C" fn boot_cpu_main() -> ! {
    let (boot, cl) = BOOT.get().expect("boot information is recorded before the stack switch");
    // Loaded at once, with the boot GDT's code selector, so that any fault
    // from here on is reported.
    interrupts::idt::init();
    interrupts::idt::load();
    let rsdp = boot.rsdp.expect("kernel_entry finds the RSDP");
    let acpi = acpi::init(rsdp).unwrap_or_else(|e| panic!("{e}"));
    let mode = interrupts::apic::choose_mode(cl.apic, acpi.lapic_address).unwrap_or_else(|e| panic!("{e}"));
    interrupts::apic::init_this_cpu();
    let apic_id = interrupts::apic::id();
    let Some(id) = acpi.cpus.id_of(apic_id) else {
        panic!("the boot CPU (APIC id {apic_id}) is not in the MADT");
    };
    let stacks = cpu::CpuStacks::new().unwrap_or_else(|e| panic!("boot CPU stacks: {e}"));
    // The boot CPU never stops, so its interrupt stacks live forever.
    static BSP_STACKS: Once<cpu::CpuStacks> = Once::new();
    cpu::init_this_cpu(id, apic_id, BSP_STACKS.call_once(|| stacks));
    interrupts::ioapic::init(acpi);
    let cal = time::timer::calibrate(acpi).unwrap_or_else(|e| panic!("{e}"));
    time::timer::init().unwrap_or_else(|e| panic!("{e}"));
    time::timer::start_tick();
    smp::init(id);
    // Without COM2 there is no upload, and the rest works on.
    if let Err(e) = plugin::upload::init(acpi) {
        log::warn!("plugin upload over COM2 is off: {e}");
    }
    // Without the SCI there is no physical CPU hotplug; the rest works on.
    if let Err(e) = acpi::sci::init(acpi) {
        log::warn!("ACPI SCI is off: {e}");
    }
    plugin::commands::register();
    // The initrd's manifest is verified here, once, not on each load.
    plugin::store::init();

    banner(boot, acpi, mode, cal);
    x86_64::instructions::interrupts::enable();

    let watchdog_secs = cl.watchdog_secs.unwrap_or(if cl.tests.is_some() { DEFAULT_TEST_WATCHDOG_SECS } else { 0 });
    time::watchdog::arm(watchdog_secs as u64);
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
            Err(e) => {
                let why = match &e {
                    plugin::registry::Error::Store(loader_core::plugin::store::Error::CpuLacks { missing, .. })
                        if *missing & plugins::meta::cpu::VMX != 0 =>
                    {
                        alloc::format!("{e}: VMs and guests need VMX; boot this image in Bochs (`make bochs`)")
                    }
                    _ => alloc::format!("{e}"),
                };
                println!("error: cannot load {name}: {why}");
                shell::note_not_loaded(why);
            }
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
    #[cfg(feature = "ktest")]
    if cl.tests.is_some() {
        power::exit(ktest::run(cl));
    }
    shell::run()
}

fn banner(
    boot: &boot::BootInfo,
    acpi: &acpi::Acpi,
    mode: interrupts::apic::Mode,
    cal: loader_core::time::calibration::Rates,
) {
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
        "timer: TSC {}.{:03} MHz ({}), APIC timer {}.{:03} MHz ({})",
        cal.tsc_hz / 1_000_000,
        cal.tsc_hz / 1000 % 1000,
        cal.tsc_source.name(),
        cal.lapic_hz / 1_000_000,
        cal.lapic_hz / 1000 % 1000,
        cal.lapic_source.name()
    );
}

/// `0 1 (2 3)`: boot CPUs, then hot-pluggable slots in parentheses.
struct CpuIds<'a>(&'a loader_core::acpi::madt::CpuList);

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

// Only for the kernel's own target: a host `cargo clippy --workspace` checks
// this crate with std linked in (features unify with the host crates'),
// and std brings its panic handler.
#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    x86_64::instructions::interrupts::disable();
    if console::enter_panic() {
        println!("panic on cpu {}: {info}", cpu::percpu::current_id());
        power::system::emergency(plugins::system_state::PANIC);
        power::exit(Status::Panic);
    }
    power::halt_forever("nested panic")
}
