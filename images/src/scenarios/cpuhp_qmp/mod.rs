//! The cpuhp physical hotplug scenario (`cpuhp-qmp-q35`, `cpuhp-qmp-pc`):
//! the `cpuhp-qmp` image (cpuhp and cpuidcheck loaded, the shell on COM1)
//! boots with two CPUs of four; the runner hot-adds and removes CPUs
//! through QMP and onlines/offlines them through the shell, and after each
//! operation checks the event log (`cpu events`) for the operation's
//! events with no sequence gap and `cpus` against the model; at the end
//! QEMU's `query-cpus-fast` must match it too. Early on a CPU without
//! SSE4.2 is hot-added: cpuidcheck's ONLINE state must refuse it, naming
//! the feature, and the other CPUs must not notice.
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
    /// Whether a CPU may be hot-added after one was ejected. Not under
    /// TCG, measured with QEMU 7.2 (Debian's) and 10.0.2 (bookworm-
    /// backports): with multi-threaded TCG, 7.2's eject leaves TCG's
    /// memory listener on the freed address space and the next realize
    /// corrupts the heap, and both abort in `tcg_register_thread` (`n <
    /// tcg_max_ctxs`: an ejected vCPU's context is never given back); with
    /// `thread=single` both stop in `qemu_thread_join` ("Resource deadlock
    /// avoided"). KVM has none of this.
    pub readd: bool,
    /// Whether the emulated CPU lacks VMX (TCG): the image also loads
    /// vmx-plugin, whose load must then fail with "not supported" before
    /// any of the hotplug above (cpuhp unaffected by the failed load).
    pub vmx_absent: bool,
}

pub const PLAN: Plan = Plan { seed: 0x6d76_6370_7568_7031, random_ops: 50, readd: true, vmx_absent: false };

/// The plan for `accel`: under TCG no hot-add after an eject, and no VMX.
pub fn plan_for(accel: Accel) -> Plan {
    let tcg = accel == Accel::Tcg;
    Plan { readd: !tcg, vmx_absent: tcg, ..PLAN }
}

/// CPUs the image boots with, and the slots in all (QEMU's `maxcpus`:
/// `-smp 2,maxcpus=4`). Both hot-pluggable slots are
/// filled before any eject (see [`Plan::readd`]): slot 2 with a full CPU,
/// [`REFUSED_SLOT`] with the CPU without [`DROPPED_FEATURE`].
pub const BOOT_CPUS: usize = 2;
pub const SLOTS: usize = 4;
pub const MAX_CPUS: u32 = SLOTS as u32;
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
