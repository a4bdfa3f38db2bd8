//! `consumer`: requires `counter` (`>=1.0.0, <3.0.0`) and provides
//! `consumer` 1.0.0, whose functions forward to the counter through a
//! [`Required`] interface. It is what the runtime's dependency tests need: a plugin
//! that must be loaded after its provider, keeps working across a swap of
//! counter 1 -> 2 (the handle is re-pointed), and blocks a swap to counter
//! 3.0.0, which its range excludes. Version 2.0.0 (feature `v2`) takes
//! counter 2.x and 3.x: swapped together with the counter, it lets the
//! counter move to 3.0.0 in one transaction. The shell command `consumer` calls
//! through once and prints what came back; `consumer panic` panics, for the
//! containment test.
//!
//! Built without a version feature the crate is empty (a host build).
#![cfg_attr(target_os = "none", no_std)]
#![cfg(any(feature = "v1", feature = "v2"))]

use consumer_api::Consumer;
use counter_api::Counter;
use plugins::runtime::Required;

/// Resolved once in `init`: the handle stays valid until this plugin
/// unloads, and the loader re-points it when the counter is swapped.
static COUNTER: spin::Once<Required<Counter>> = spin::Once::new();

fn counter() -> &'static Required<Counter> {
    // `init` fails unless the interface resolved, so no entry point runs
    // before it is set.
    COUNTER.get().expect("consumer called before init")
}

extern "C" fn next() -> u64 {
    counter().call(|c| (c.next)())
}

extern "C" fn generation() -> u32 {
    counter().call(|c| (c.generation)())
}

static TABLE: Consumer = Consumer { next, generation };

fn command(args: &str) -> Result<(), i32> {
    if args.trim() == "panic" {
        panic!("asked to panic");
    }
    plugins::println!("consumer: counter generation {} says {}", generation(), next());
    Ok(())
}

/// Error code: the loader resolved no `counter` for this plugin.
const NO_COUNTER: i32 = 1;

fn init() -> Result<(), i32> {
    let iface = Required::get().ok_or(NO_COUNTER)?;
    COUNTER.call_once(|| iface);
    plugins::register_command!("consumer", "call the counter through the consumer (`consumer panic`: panic)", command,)?;
    plugins::info!("consumer ready, counter generation {}", generation());
    Ok(())
}

#[cfg(feature = "v1")]
plugins::plugin! {
    name: "consumer-plugin", version: "1.0.0",
    init: init, fini: || {},
    provides: [(Consumer, &TABLE)],
    requires: [(Counter, ">=1.0.0, <3.0.0")],
    state: None,
}

#[cfg(feature = "v2")]
plugins::plugin! {
    name: "consumer-plugin", version: "2.0.0",
    init: init, fini: || {},
    provides: [(Consumer as "1.1.0", &TABLE)],
    requires: [(Counter, ">=2.0.0, <4.0.0")],
    state: None,
}
