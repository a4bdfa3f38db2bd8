//! The `plugins` suite: load, use, swap under load, refusals of every bad
//! plugin, and memory returned; the `bench-plugins` suite: load-and-link
//! times and the swap blackout.

use super::registry::{self, Error};
use crate::ktest::{with, Failure, Test};
use crate::{check, check_eq};
use consumer_api::Consumer;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use counter_api::Counter;
use loader_core::plugin::elf::Error as ElfError;
use loader_core::plugin::store::{Error as StoreError, Trust};

crate::suite!(SUITE_PLUGINS, "plugins", TESTS);
static TESTS: &[Test] = &[
    Test { name: "load-use-unload", run: load_use_unload },
    Test { name: "swap-carries-state-for-a-consumer", run: swap_with_consumer },
    Test { name: "swap-with-consumer-in-one-transaction", run: swap_transaction },
    Test { name: "swap-while-another-cpu-calls-in", run: swap_under_load },
    Test { name: "store-manifest-lists-the-plugins", run: manifest_lists },
    Test { name: "bad-plugins-are-refused", run: bad_plugins },
    Test { name: "unload-with-dependents", run: unload_with_dependents },
    Test { name: "panicking-command-is-contained", run: panicking_command },
];

crate::suite!(SUITE_BENCH_PLUGINS, "bench-plugins", BENCH);
static BENCH: &[Test] = &[Test { name: "load-link-and-swap", run: bench }];

fn err(e: Error) -> Failure {
    Failure::new(format_args!("{e}"))
}

/// The counter's value and generation, straight from counter-plugin.
fn counter() -> Result<(u64, u32), Failure> {
    with(|t: &Counter| ((t.next)(), (t.generation)()))
}

/// The same through consumer-plugin, which calls the counter it resolved.
fn consumer() -> Result<(u64, u32), Failure> {
    with(|t: &Consumer| ((t.next)(), (t.generation)()))
}

/// Frames and heap in use, to compare before and after.
fn usage() -> (u64, u64) {
    let s = crate::memory::stats();
    (s.frames_total - s.frames_free, s.heap_used)
}

fn unload_all() {
    for p in registry::list() {
        let _ = registry::unload(&p.name, true);
    }
}

fn load_use_unload() -> Result<(), Failure> {
    unload_all();
    // A first round grows the registry's own tables to their working size.
    registry::load("counter", Some("1.0.0")).map_err(err)?;
    registry::unload("counter", false).map_err(err)?;
    let before = usage();
    registry::load("counter-plugin", Some("1.0.0")).map_err(err)?;
    check_eq!(registry::version_of("counter"), Some(semver::Version::new(1, 0, 0)), "loaded version");
    let (a, g) = counter()?;
    let (b, _) = counter()?;
    check_eq!((b - a, g), (1, 1), "version 1 steps by one");
    crate::shell::execute("counter").map_err(|e| Failure::new(format_args!("the plugin's `counter` command: {e}")))?;
    registry::unload("counter", false).map_err(err)?;
    check!(
        matches!(crate::shell::execute("counter"), Err(crate::shell::Error::UnknownCommand(_))),
        "the `counter` command outlived its plugin"
    );
    check_eq!(usage(), before, "frames and heap bytes in use after unload");
    Ok(())
}

fn swap_with_consumer() -> Result<(), Failure> {
    unload_all();
    let before = usage();
    registry::load("counter", Some("1.0.0")).map_err(err)?;
    registry::load("consumer", Some("1.0.0")).map_err(err)?;
    let (v1, g1) = consumer()?;
    check_eq!(g1, 1, "generation through the consumer");
    registry::swap("counter", "2.0.0").map_err(err)?;
    let (v2, g2) = consumer()?;
    check_eq!((v2, g2), (v1 + 2, 2), "after the swap to 2.0.0: value carried, step 2");
    registry::swap("counter", "1.0.0").map_err(err)?;
    let (v3, g3) = consumer()?;
    check_eq!((v3, g3), (v2 + 1, 1), "after the swap back to 1.0.0");
    // 3.0.0 is outside the consumer's range: refused, 1.0.0 stays.
    match registry::swap("counter", "3.0.0") {
        Err(Error::BreaksConsumers(b)) => check!(b[0].consumer == "consumer-plugin", "blamed {}", b[0].consumer),
        other => return Err(Failure::new(format_args!("swap to 3.0.0: {other:?}"))),
    }
    check_eq!(consumer()?, (v3 + 1, 1), "after the refused swap");
    unload_all();
    check_eq!(usage(), before, "frames and heap bytes in use after unloading both");
    Ok(())
}

fn swap_transaction() -> Result<(), Failure> {
    unload_all();
    let before = usage();
    registry::load("counter", Some("2.0.0")).map_err(err)?;
    registry::load("consumer", Some("1.0.0")).map_err(err)?;
    let (v, _) = consumer()?;
    // Alone, counter 3.0.0 breaks consumer 1.0.0's range...
    check!(
        matches!(registry::swap("counter", "3.0.0"), Err(Error::BreaksConsumers(_))),
        "counter 3.0.0 alone was not refused"
    );
    // ...together with consumer 2.0.0, whose range takes it, it goes.
    registry::swap_all(&[("consumer", "2.0.0"), ("counter", "3.0.0")]).map_err(err)?;
    check_eq!(registry::version_of("consumer"), Some(semver::Version::new(2, 0, 0)), "consumer version");
    check_eq!(consumer()?, (v + 3, 3), "through the new consumer to the new counter, state carried");
    // A transaction that fails in its middle changes nothing: back to
    // counter 1.0.0 with consumer 1.0.0 is fine by ranges, but 1.0.0 takes
    // state layouts 1 and 2 only, and 3.0.0 exports layout 3.
    check!(
        matches!(registry::swap_all(&[("counter", "1.0.0"), ("consumer", "1.0.0")]), Err(Error::StateRefused { .. })),
        "the swap back to counter 1.0.0 was not refused"
    );
    check_eq!(registry::version_of("consumer"), Some(semver::Version::new(2, 0, 0)), "consumer after the failed swap");
    check_eq!(consumer()?, (v + 6, 3), "after the failed transaction");
    check!(
        matches!(registry::swap_all(&[("counter", "2.0.0"), ("counter", "1.0.0")]), Err(Error::TwiceInSwap(_))),
        "a plugin named twice was not refused"
    );
    unload_all();
    check_eq!(usage(), before, "frames and heap bytes in use after unloading");
    Ok(())
}

static LOOP_RUNNING: AtomicBool = AtomicBool::new(false);
static LOOP_CALLS: AtomicU64 = AtomicU64::new(0);
static LOOP_BAD: AtomicU64 = AtomicU64::new(0);

/// On another CPU: calls the consumer until told to stop; every value must
/// be one or two (the step of the answering version) above the last.
fn caller_loop(_: usize, _: usize) {
    let mut last = match consumer() {
        Ok((v, _)) => v,
        Err(_) => return LOOP_BAD.store(u64::MAX, Ordering::SeqCst),
    };
    while LOOP_RUNNING.load(Ordering::SeqCst) {
        match consumer() {
            Ok((v, _)) if v == last + 1 || v == last + 2 => last = v,
            Ok((v, g)) => {
                LOOP_BAD.store(v.wrapping_sub(last) << 8 | g as u64, Ordering::SeqCst);
                return;
            }
            Err(_) => return LOOP_BAD.store(u64::MAX - 1, Ordering::SeqCst),
        }
        LOOP_CALLS.fetch_add(1, Ordering::SeqCst);
    }
}

fn swap_under_load() -> Result<(), Failure> {
    unload_all();
    let me = crate::cpu::percpu::current_id() as usize;
    let cpus = &crate::acpi::get().expect("ACPI is read at boot").cpus;
    let Some(ap) =
        cpus.iter().enumerate().position(|(i, c)| i != me && c.class == loader_core::acpi::madt::CpuClass::Boot)
    else {
        crate::println!("  (one CPU only: the concurrent-caller part needs another CPU)");
        return Ok(());
    };
    if crate::smp::state(ap) != crate::smp::State::Online {
        crate::smp::start(ap).map_err(|e| Failure::new(format_args!("start cpu {ap}: {e}")))?;
    }
    registry::load("counter", Some("1.0.0")).map_err(err)?;
    registry::load("consumer", Some("1.0.0")).map_err(err)?;
    LOOP_RUNNING.store(true, Ordering::SeqCst);
    LOOP_CALLS.store(0, Ordering::SeqCst);
    LOOP_BAD.store(0, Ordering::SeqCst);
    let running = crate::smp::start_on(1 << ap, caller_loop, 0).map_err(|e| Failure::new(format_args!("{e}")))?;
    let mut swaps = 0;
    for round in 0..6 {
        let target = if round % 2 == 0 { "2.0.0" } else { "1.0.0" };
        let calls = LOOP_CALLS.load(Ordering::SeqCst);
        // Let the other CPU get some calls in between swaps.
        while LOOP_CALLS.load(Ordering::SeqCst) < calls + 50 && LOOP_BAD.load(Ordering::SeqCst) == 0 {
            core::hint::spin_loop();
        }
        registry::swap("counter", target).map_err(err)?;
        swaps += 1;
    }
    LOOP_RUNNING.store(false, Ordering::SeqCst);
    running.wait().map_err(|e| Failure::new(format_args!("the caller did not finish: {e}")))?;
    check_eq!(LOOP_BAD.load(Ordering::SeqCst), 0, "caller saw a step other than 1 or 2 (delta << 8 | generation)");
    check!(
        LOOP_CALLS.load(Ordering::SeqCst) >= 300,
        "only {} calls across {swaps} swaps",
        LOOP_CALLS.load(Ordering::SeqCst)
    );
    unload_all();
    Ok(())
}

/// Files the image build damages on purpose, and the refusal each must get.
/// A test case: what to load, and whether its error is the expected one.
type Case<E> = (&'static str, fn(&E) -> bool);

const BAD_FILES: [Case<ElfError>; 5] = [
    ("plugins/bad-truncated.mvp", |e| matches!(e, ElfError::Unsigned | ElfError::Malformed(_))),
    ("plugins/bad-unsigned.mvp", |e| matches!(e, ElfError::Unsigned)),
    ("plugins/bad-signature.mvp", |e| matches!(e, ElfError::BadSignature)),
    ("plugins/bad-abi.mvp", |e| matches!(e, ElfError::AbiMismatch { .. } | ElfError::DescriptorAbi { .. })),
    ("plugins/bad-relocation.mvp", |e| matches!(e, ElfError::UnsupportedRelocation { r_type: 5, .. })),
];

/// The image's manifest verified at boot: the built plugins load by their
/// hash; the damaged files, which it does not list, by their signature.
fn manifest_lists() -> Result<(), Failure> {
    let counter = super::store::trust_of("counter-plugin", &semver::Version::new(1, 0, 0));
    check!(
        matches!(counter, Some(Trust::Listed { .. })),
        "counter-plugin 1.0.0 is {counter:?}, not listed by the manifest"
    );
    let unmatched = super::store::trust_of("bad-hash-plugin", &semver::Version::new(1, 0, 0));
    check!(matches!(unmatched, Some(Trust::Listed { .. })), "bad-hash-plugin 1.0.0 is {unmatched:?}");
    Ok(())
}

fn bad_plugins() -> Result<(), Failure> {
    unload_all();
    registry::load("counter", Some("1.0.0")).map_err(err)?;
    let before = usage();
    let cases: [Case<Error>; 6] = [
        // Validly signed, but not the bytes the manifest lists.
        ("bad-hash", |e| matches!(e, Error::Store(StoreError::HashMismatch { .. }))),
        ("bad-missing-import", |e| matches!(e, Error::Image(ElfError::MissingImports(_)))),
        ("bad-unmet-requirement", |e| matches!(e, Error::Unmet(u) if u[0].interface == "nonexistent")),
        (
            "bad-duplicate-provider",
            |e| matches!(e, Error::DuplicateProvider { interface, .. } if interface == "counter"),
        ),
        ("bad-init-fails", |e| matches!(e, Error::InitFailed { code: 7, .. })),
        ("bad-init-panics", |e| matches!(e, Error::Panicked { operation: "init", .. })),
    ];
    for (name, expected) in cases {
        match registry::load(name, None) {
            Ok(_) => return Err(Failure::new(format_args!("{name} loaded"))),
            Err(e) => check!(expected(&e), "{name}: unexpected error: {e}"),
        }
        check_eq!(usage(), before, "memory after refusing {name}");
    }
    for (file, expected) in BAD_FILES {
        let bytes =
            crate::boot::initrd_file(file).ok_or_else(|| Failure::new(format_args!("{file} is not in the initrd")))?;
        match super::image::load(bytes, super::exports::resolve) {
            Ok(_) => return Err(Failure::new(format_args!("{file} loaded"))),
            Err(e) => check!(expected(&e), "{file}: unexpected error: {e}"),
        }
        check_eq!(usage(), before, "memory after refusing {file}");
    }
    // State refused: 3.0.0 takes no older layout (no consumer is loaded).
    match registry::swap("counter", "3.0.0") {
        Err(Error::StateRefused { .. }) => {}
        other => return Err(Failure::new(format_args!("swap to 3.0.0: {other:?}"))),
    }
    check_eq!(registry::version_of("counter"), Some(semver::Version::new(1, 0, 0)), "version after refused state");
    check_eq!(counter()?.1, 1, "generation answering after refused state");
    check_eq!(usage(), before, "memory after the refused swap");
    unload_all();
    Ok(())
}

fn unload_with_dependents() -> Result<(), Failure> {
    unload_all();
    registry::load("counter", Some("1.0.0")).map_err(err)?;
    registry::load("consumer", Some("1.0.0")).map_err(err)?;
    match registry::unload("counter", false) {
        Err(Error::HasDependents { dependents, .. }) => check_eq!(dependents, ["consumer-plugin"], "dependents"),
        other => return Err(Failure::new(format_args!("unload of a provider in use: {other:?}"))),
    }
    let done = registry::unload("counter", true).map_err(err)?;
    check_eq!(done, ["consumer-plugin", "counter-plugin"], "unload order");
    check!(registry::list().is_empty(), "plugins left after recursive unload");
    Ok(())
}

fn panicking_command() -> Result<(), Failure> {
    unload_all();
    registry::load("counter", Some("1.0.0")).map_err(err)?;
    registry::load("consumer", Some("1.0.0")).map_err(err)?;
    match crate::shell::execute("consumer panic") {
        Err(crate::shell::Error::Failed { message, .. }) => check!(message.contains("panicked"), "reply {message}"),
        other => return Err(Failure::new(format_args!("`consumer panic`: {other:?}"))),
    }
    let consumer = registry::list().into_iter().find(|p| p.name == "consumer-plugin").expect("still registered");
    check!(matches!(consumer.state, registry::State::Failed(_)), "consumer state {}", consumer.state);
    check!(
        matches!(crate::shell::execute("consumer"), Err(crate::shell::Error::UnknownCommand(_))),
        "a failed plugin's commands stay"
    );
    check_eq!(counter()?.1, 1, "the rest still works");
    unload_all();
    Ok(())
}

fn bench() -> Result<(), Failure> {
    unload_all();
    for cpu in 0..crate::acpi::get().map_or(0, |a| a.cpus.len()) {
        if crate::acpi::get()
            .and_then(|a| a.cpus.get(cpu))
            .is_some_and(|c| c.class == loader_core::acpi::madt::CpuClass::Boot)
            && crate::smp::state(cpu) == crate::smp::State::Offline
        {
            crate::smp::start(cpu).map_err(|e| Failure::new(format_args!("start cpu {cpu}: {e}")))?;
        }
    }
    let online = crate::smp::online_mask().count_ones();
    registry::load("counter", Some("1.0.0")).map_err(err)?;
    registry::load("consumer", Some("1.0.0")).map_err(err)?;
    for p in registry::list() {
        crate::println!("bench: load-and-link {} {} tsc", p.name, p.load_tsc);
    }
    registry::swap("counter", "2.0.0").map_err(err)?;
    crate::println!("bench: swap-blackout cpus={online} {} tsc", registry::last_blackout_tsc());
    unload_all();
    Ok(())
}
