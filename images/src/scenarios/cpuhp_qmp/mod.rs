//! The cpuhp physical hotplug scenario (`cpuhp-qmp-q35`, `cpuhp-qmp-pc`):
//! the `cpuhp-qmp` image (cpuhp and cpuidcheck loaded, the shell on COM1)
//! boots with two CPUs of [`MAX_CPUS`]; the runner hot-adds and removes
//! CPUs through QMP and onlines/offlines them through the shell, and after
//! each operation checks the event log (`cpu events`) for the operation's
//! events with no sequence gap, and every `cpus` row against the model and
//! against QEMU's `query-cpus-fast` and `query-hotpluggable-cpus`. Early
//! on a CPU without SSE4.2 is hot-added: cpuidcheck's ONLINE state must
//! refuse it, naming the feature, and the other CPUs must not notice; an
//! online CPU is ejected and its slot filled again; an eject is refused.
//!
//! The plan (`model`) and every check (`checks`) are pure (data in,
//! problems out) and unit tested; `play` is the thin plumbing over COM1
//! and QMP. Every wait has a timeout and waits for something the guest or
//! QEMU says.

pub mod checks;
pub mod model;
pub mod play;

use crate::machine::qemu::Accel;

/// What one scenario does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Seeds the random operations (the same seed, the same run).
    pub seed: u64,
    /// Random operations after the fixed prefix.
    pub random_ops: usize,
    /// Whether the emulated CPU lacks VMX (TCG): the image also loads
    /// vmx-plugin, whose load the store must then refuse (no VMX) before
    /// any of the hotplug above (cpuhp unaffected by the failed load).
    pub vmx_absent: bool,
}

/// The seed `runner test` plays unless `--seed` names another: a fixed
/// one, so that `make test` runs the same operations every time.
pub const DEFAULT_SEED: u64 = 7_887_126_474_391_254_065;

pub const PLAN: Plan = Plan { seed: DEFAULT_SEED, random_ops: 60, vmx_absent: false };

/// The plan for `accel` (TCG has no VMX) and `seed` (default
/// [`DEFAULT_SEED`]).
pub fn plan_for(accel: Accel, seed: Option<u64>) -> Plan {
    Plan { vmx_absent: accel == Accel::Tcg, seed: seed.unwrap_or(DEFAULT_SEED), ..PLAN }
}

/// CPUs the image boots with, and QEMU's `maxcpus`. The slots past
/// [`SLOTS`] stay empty: they are there for TCG, which takes one of
/// `maxcpus` contexts for every vCPU it ever creates and never gives one
/// back (see `machine::qemu::check_plug_events`), so `maxcpus` bounds the
/// CPU plug events of a whole run, not the CPUs present at once.
pub const BOOT_CPUS: usize = 2;
pub const MAX_CPUS: u32 = 64;
/// The slots the operations use: the boot CPUs and six hot-pluggable
/// ones. Few enough that random hot-adds often fill a slot that was
/// ejected before, and they bound the plug events: a hot-add needs an
/// empty slot, and after the fixed part five are empty, so the random
/// part adds at most 5 + its removals, at most (5 + 60) / 2 = 32 CPUs;
/// with the 2 boot CPUs and the fixed part's 3 hot-adds a run makes at
/// most 37 plug events, below [`MAX_CPUS`] whatever the seed.
pub const SLOTS: usize = 8;
/// The slot the CPU without [`DROPPED_FEATURE`] goes into.
pub const REFUSED_SLOT: usize = 3;
/// The cpuhp version swapped in after the fixed operations (the image
/// loads 1.2.0; the store holds both).
pub const SWAPPED_TO: &str = "1.3.0";
/// The feature switched off on the last hot-added CPU, as QEMU spells the
/// property and cpuidcheck names the feature, and cpuidcheck's error for it
/// (-(1000 + word 0 * 32 + bit 20)).
pub const DROPPED_FEATURE: &str = "sse4.2";
pub const DROPPED_FEATURE_ERROR: i32 = -1020;
pub const CHECK_STATE: &str = "cpuidcheck:online";
