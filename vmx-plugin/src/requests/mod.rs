//! vCPU requests and kicks: how one CPU asks a vCPU, which may be running
//! guest code on another CPU, to do something before it next runs the guest.
//!
//! The protocol is KVM's (Documentation/virt/kvm/vcpu-requests.rst,
//! `kvm_make_vcpus_request_mask` in virt/kvm/kvm_main.c), in our own code:
//!
//! - A requester sets request bits in the vCPU's [`VcpuSlot`], then reads
//!   its mode; if the vCPU is in guest mode, the requester moves it to
//!   exiting mode and sends an IPI to the pCPU it runs on. The IPI forces a
//!   VM exit (pin-based "external-interrupt exiting", SDM vol. 3C,
//!   "Pin-Based VM-Execution Controls").
//! - The vCPU, with interrupts off before each VM entry, stores "in guest"
//!   and then reads its requests; if any are pending it cancels the entry.
//!
//! Each side writes one location and then reads the other's, both with
//! sequentially consistent operations (a Dekker pattern): at least one side
//! sees the other. Either the vCPU sees the request before entering, or the
//! requester sees the vCPU in guest mode and kicks it out. Nothing here
//! sends IPIs or touches hardware: callers get the pCPU to interrupt back,
//! so the logic is tested on the host (`tests/`).
//!
//! Who calls what: [`VcpuSlot::make_request`], [`VcpuSlot::kick`],
//! [`make_request_mask`] and the waits run on any CPU; [`VcpuSlot::set_pcpu`],
//! [`VcpuSlot::enter_guest_prepare`], [`VcpuSlot::exit_guest`],
//! [`VcpuSlot::take_requests`] and [`VcpuSlot::check_request`] only on the
//! vCPU's own thread.

use core::fmt;
use core::ops::{BitAnd, BitOr, BitOrAssign};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

mod ack;
mod mask;
mod requester;
mod vcpu;

pub use ack::{wait_for_ack, wait_for_acks, Ticket};
pub use mask::{
    make_request_full_scan, make_request_mask, make_request_mask_each, make_request_mask_tickets, MaskOutcome,
};

#[cfg(test)]
mod tests;

/// A physical CPU, as the IPI layer numbers it (the APIC ID or the kernel's
/// CPU index: this module only compares and returns them).
pub type PcpuId = u32;

/// The [`VcpuSlot::pcpu`] of a vCPU that never ran.
const NO_PCPU: PcpuId = PcpuId::MAX;

/// A set of requests. Requests are idempotent flags, as in KVM: two
/// requests of one kind before the vCPU looks are one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Requests(u32);

impl Requests {
    /// No request: a bare kick, for state the caller publishes itself before
    /// kicking (as posted interrupts publish PIR.ON).
    pub const NONE: Self = Self(0);
    /// Flush this vCPU's guest TLB entries (INVEPT/INVVPID) before entry.
    pub const TLB_FLUSH: Self = Self(1 << 0);
    /// An interrupt or other event is pending: re-evaluate injection.
    pub const EVENT: Self = Self(1 << 1);
    /// Stop running the guest until resumed (pause the VM).
    pub const PAUSE: Self = Self(1 << 2);
    /// Leave the guest so the scheduler can move the vCPU to another pCPU.
    pub const MIGRATE: Self = Self(1 << 3);
    /// Stop the vCPU for good (VM teardown).
    pub const STOP: Self = Self(1 << 4);
    /// A request that asks nothing but to be seen: the run loop counts it
    /// where it takes requests before an entry (`guest::probe`), so the
    /// request/kick stress test can check that none is lost or late.
    pub const PROBE: Self = Self(1 << 5);
    /// Every request this module can carry. Bits 6 to 31 are free for new
    /// kinds; the upper half of the slot's word is the acknowledgement
    /// generation.
    pub const ALL: Self = Self(u32::MAX);

    pub const fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    pub const fn bits(self) -> u32 {
        self.0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every request of `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Requests {
    type Output = Self;
    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl BitOrAssign for Requests {
    fn bitor_assign(&mut self, other: Self) {
        self.0 |= other.0;
    }
}

impl BitAnd for Requests {
    type Output = Self;
    fn bitand(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }
}

/// Where the vCPU is relative to guest code, KVM's `vcpu->mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Mode {
    /// In the host: it checks its requests before it next enters.
    OutsideGuest = 0,
    /// Entering or running the guest: a requester must kick it.
    InGuest = 1,
    /// Kicked: an IPI is on its way, so further kicks send none.
    ExitingGuest = 2,
}

impl Mode {
    /// Only this module stores modes, and only these three values.
    const fn from_raw(raw: u8) -> Self {
        match raw {
            1 => Mode::InGuest,
            2 => Mode::ExitingGuest,
            _ => Mode::OutsideGuest,
        }
    }
}

/// The errors of requests and kicks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The target bitmap names a vCPU id with no slot.
    NoSuchVcpu { id: usize, slots: usize },
    /// The ticket array has no entry for a targeted vCPU id.
    NoTicket { id: usize, tickets: usize },
    /// This many targets had not acknowledged when the caller's relax
    /// closure gave up; the pending bitmap says which.
    NotAcked { remaining: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::NoSuchVcpu { id, slots } => write!(f, "no vCPU {id}: the VM has {slots} vCPU slots"),
            Error::NoTicket { id, tickets } => {
                write!(f, "no ticket for vCPU {id}: the ticket array has {tickets} entries")
            }
            Error::NotAcked { remaining } => write!(f, "{remaining} vCPUs did not acknowledge the request in time"),
        }
    }
}

/// The low half of [`VcpuSlot::word`]: the pending requests.
const REQUEST_MASK: u64 = 0xffff_ffff;
/// Where the acknowledgement generation starts in [`VcpuSlot::word`].
const GENERATION_SHIFT: u32 = 32;

const fn requests_of(word: u64) -> Requests {
    Requests((word & REQUEST_MASK) as u32)
}

const fn generation_of(word: u64) -> u32 {
    (word >> GENERATION_SHIFT) as u32
}

/// The cross-CPU part of a vCPU: what requesters on other CPUs read and
/// write. The rest of the vCPU (registers, VMCS) belongs to its thread.
///
/// Aligned to a cache line: requesters write one vCPU's slot while its
/// neighbours read theirs before every entry, and sharing a line would make
/// each request slow down the neighbours' entries.
#[derive(Debug)]
#[repr(align(64))]
pub struct VcpuSlot {
    /// Pending requests (low 32 bits) and the acknowledgement generation
    /// (high 32 bits), in one word so that a requester learns the
    /// generation in the same atomic operation that sets its bits: a later
    /// separate read could see a take that already consumed the request and
    /// wait for one more that never comes. The vCPU bumps the generation
    /// whenever it takes requests.
    word: AtomicU64,
    /// A [`Mode`]; the vCPU thread stores every value, requesters only
    /// compare-exchange InGuest to ExitingGuest.
    mode: AtomicU8,
    /// The pCPU the vCPU last ran on ([`NO_PCPU`] before its first run).
    /// Requesters read it once per kick; it may be stale (see `kick`).
    pcpu: AtomicU32,
}

impl VcpuSlot {
    /// A vCPU that never ran: no requests, outside guest mode, no pCPU.
    pub const fn new() -> Self {
        Self { word: AtomicU64::new(0), mode: AtomicU8::new(Mode::OutsideGuest as u8), pcpu: AtomicU32::new(NO_PCPU) }
    }

    /// The requests pending now (a snapshot; only the vCPU clears them).
    pub fn pending(&self) -> Requests {
        requests_of(self.word.load(Ordering::SeqCst))
    }

    /// The mode now (a snapshot: it may change as soon as it is read).
    pub fn mode(&self) -> Mode {
        Mode::from_raw(self.mode.load(Ordering::SeqCst))
    }

    /// The pCPU the vCPU last ran on, if it ever ran (a snapshot).
    pub fn pcpu(&self) -> Option<PcpuId> {
        let cpu = self.pcpu.load(Ordering::Acquire);
        (cpu != NO_PCPU).then_some(cpu)
    }
}

impl Default for VcpuSlot {
    fn default() -> Self {
        Self::new()
    }
}
