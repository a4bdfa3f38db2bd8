//! The plugin: reads the boot CPU's words at init and checks every CPU
//! that comes online against them.

use crate::features::{first_difference, Features};
use core::sync::atomic::{AtomicU32, Ordering};
use cpuhp_api::{section, Cpuhp};
use plugins::runtime::{Buf, Required};
use plugins::StrRef;

/// The boot CPU's words (read at init, on the CPU that loads the plugin:
/// the shell's, the boot CPU).
static BOOT: [AtomicU32; 3] = [const { AtomicU32::new(0) }; 3];
static STATE: AtomicU32 = AtomicU32::new(0);
static CPUHP: spin::Once<Result<Required<Cpuhp>, i32>> = spin::Once::new();

/// This CPU's words.
fn features() -> Features {
    let (l1, l7) = (core::arch::x86_64::__cpuid(1), core::arch::x86_64::__cpuid_count(7, 0));
    Features([l1.ecx, l1.edx, l7.ebx])
}

fn boot() -> Features {
    Features([0, 1, 2].map(|i| BOOT[i].load(Ordering::Acquire)))
}

/// ONLINE startup, on the CPU coming up. A refusal names the feature in
/// the `failed` event (cpuhp logs it, `cpu events` shows it).
extern "C" fn check(_cpu: u32, _: usize) -> i32 {
    let Some(d) = first_difference(boot(), features()) else { return 0 };
    if let Some(Ok(cpuhp)) = CPUHP.get() {
        let reason = Buf::format(format_args!("{d}"));
        cpuhp.call(|t| (t.set_failure_reason)(StrRef::borrowed(reason.as_str())));
    }
    d.refusal_code()
}

/// Error codes of `init`.
const NO_CPUHP: i32 = 1;
const SETUP: i32 = 2;

fn init() -> Result<(), i32> {
    for (slot, word) in BOOT.iter().zip(features().0) {
        slot.store(word, Ordering::Release);
    }
    let cpuhp = CPUHP.call_once(|| Required::get().ok_or(NO_CPUHP)).as_ref().map_err(|e| *e)?;
    let id = cpuhp.call(|t| (t.setup)(StrRef::new("cpuidcheck:online"), section::ONLINE, Some(check), None, 0));
    if id <= 0 {
        return Err(SETUP);
    }
    STATE.store(id as u32, Ordering::Release);
    Ok(())
}

fn fini() {
    if let (Some(Ok(c)), id @ 1..) = (CPUHP.get(), STATE.load(Ordering::Acquire)) {
        c.call(|t| (t.remove)(id));
    }
}

plugins::plugin! {
    name: "cpuidcheck-plugin", version: "1.0.0",
    init: init, fini: fini,
    provides: [],
    // 1.2 brought `set_failure_reason`.
    requires: [(Cpuhp, "^1.2")],
    state: None,
}
