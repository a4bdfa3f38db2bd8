//! The guest component's one error type: every refusal of the `vm` shell
//! command and table, each naming the rule it enforces.

use super::vm::{MAX_RAM, MAX_VCPUS};
use alloc::string::String;
use core::fmt;

#[derive(Debug)]
pub enum Error {
    NoSuchVm(String),
    Exists(String),
    BadName,
    BadMemory(u64),
    BadVcpus(usize),
    NoCpu(u32),
    NoMemory {
        what: &'static str,
    },
    NoFile(String),
    BadElf {
        file: String,
        why: &'static str,
    },
    WrongState {
        vm: String,
        state: &'static str,
    },
    NoVmx,
    Ept(crate::ept::EptError),
    /// `write` or `read` outside guest RAM.
    OutsideRam {
        vm: String,
        gpa: u64,
        len: u64,
    },
    BadVcpuId(u32),
    VcpuExists {
        vm: String,
        vcpu: u32,
    },
    NoVcpu {
        vm: String,
        vcpu: u32,
    },
    /// The hooks' `vcpu_precreate` refused, with this code.
    HookRefused {
        vm: String,
        vcpu: u32,
        code: i32,
    },
    InitialState {
        vm: String,
        vcpu: u32,
        why: crate::vcpu_init::Error,
    },
    /// `start` of a VM without vCPUs, or with one whose state is not set.
    NotReady {
        vm: String,
        why: &'static str,
    },
    Range {
        vm: String,
        what: &'static str,
        why: crate::ranges::Error,
    },
    MmioInRam {
        vm: String,
        gpa: u64,
    },
    BadPolicy(u32),
    HooksTaken,
    NotTheHooks,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoSuchVm(n) => write!(f, "no VM named `{n}` (see `vm list`)"),
            Error::Exists(n) => write!(f, "a VM named `{n}` exists already"),
            Error::BadName => write!(f, "a VM name is 1 to 16 letters, digits, `-` or `_`"),
            Error::BadMemory(m) => {
                write!(f, "guest memory must be 4 to {} MiB in 2 MiB steps, not {m} MiB", MAX_RAM >> 20)
            }
            Error::BadVcpus(n) => write!(f, "a VM has 1 to {MAX_VCPUS} vCPUs, not {n}"),
            Error::NoCpu(c) => write!(f, "cpu {c} does not have VMX on (see `vmx`)"),
            Error::NoMemory { what } => write!(f, "no memory for the {what}"),
            Error::NoFile(p) => write!(f, "the initrd has no file `{p}` (guests are under guests/)"),
            Error::BadElf { file, why } => write!(f, "{file} is no guest ELF: {why}"),
            Error::WrongState { vm, state } => write!(f, "VM `{vm}` is {state}"),
            Error::NoVmx => write!(f, "VMX is not on on any CPU: guests need VMX (they run in Bochs here)"),
            Error::Ept(e) => write!(f, "EPT: {e}"),
            Error::OutsideRam { vm, gpa, len } => write!(
                f,
                "{len:#x} bytes at guest-physical {gpa:#x} are not all RAM of VM `{vm}` (RAM is 0 to its size)"
            ),
            Error::BadVcpuId(i) => write!(f, "vCPU ids are 0 to {}, not {i}", MAX_VCPUS - 1),
            Error::VcpuExists { vm, vcpu } => write!(f, "VM `{vm}` has a vCPU {vcpu} already"),
            Error::NoVcpu { vm, vcpu } => write!(f, "VM `{vm}` has no vCPU {vcpu}"),
            Error::HookRefused { vm, vcpu, code } => {
                write!(f, "the vm hooks' vcpu_precreate refused vCPU {vcpu} of VM `{vm}` with code {code}")
            }
            Error::InitialState { vm, vcpu, why } => write!(f, "initial state of vCPU {vcpu} of VM `{vm}`: {why}"),
            Error::NotReady { vm, why } => write!(f, "VM `{vm}` cannot start: {why}"),
            Error::Range { vm, what, why } => write!(f, "{what} range of VM `{vm}` refused: {why}"),
            Error::MmioInRam { vm, gpa } => {
                write!(f, "an MMIO range of VM `{vm}` must lie outside its RAM, and {gpa:#x} is RAM")
            }
            Error::BadPolicy(p) => write!(f, "port policy {p} is neither stop (0) nor ignore (1)"),
            Error::HooksTaken => write!(f, "vm hooks are installed already (one set at a time)"),
            Error::NotTheHooks => write!(f, "these are not the vm hooks installed"),
        }
    }
}
