//! The `vm` shell command.

use super::vm::{self, State};
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use plugins::ffi;
use vmx_api::port_policy;

const USAGE: &str = "usage: vm create NAME [mem=MIB] [vcpus=N] [cpus=A,B,..] [ports=stop|ignore] [apic=auto|emulate] \
                     | vm load NAME FILE | vm run NAME FILE [mem=..] [vcpus=..] [cpus=..] [ports=..] [apic=..] | vm \
                     start|pause|resume|kill|destroy NAME | vm list | vm info [NAME]";

fn fail(e: impl core::fmt::Display) -> i32 {
    plugins::println!("error: {e}");
    1
}

/// The CPUs with VMX on, the boot CPU last: vCPUs go to the others first,
/// so the shell's CPU stays free when there are others.
pub(super) fn vmx_cpus() -> Vec<u32> {
    // SAFETY: a plain query of the loader.
    let count = unsafe { ffi::mv_cpu_count() };
    let mut cpus: Vec<u32> = (0..count).filter(|&c| crate::plugin::vmcs_revision(c).is_some()).collect();
    if cpus.len() > 1 {
        cpus.retain(|&c| c != 0);
    }
    cpus
}

/// What `vm create` and `vm run` are given.
struct Options {
    mem: u64,
    /// The vCPUs' pCPUs.
    cpus: Vec<u32>,
    policy: u32,
    emulate_apic: bool,
}

/// `mem=`, `vcpus=`, `cpus=`, `ports=`, `apic=` options.
fn options(words: &[&str]) -> Result<Options, i32> {
    let (mut mem, mut vcpus, mut cpus, mut policy) = (8u64, 1usize, None::<Vec<u32>>, port_policy::STOP);
    let mut emulate_apic = false;
    for w in words {
        let (k, v) = w.split_once('=').ok_or_else(|| fail(USAGE))?;
        match (k, v) {
            ("mem", _) => mem = v.parse().map_err(|_| fail("mem= takes MiB, e.g. mem=16"))?,
            ("vcpus", _) => vcpus = v.parse().map_err(|_| fail("vcpus= takes a count"))?,
            ("cpus", _) => {
                let list: Result<Vec<u32>, _> = v.split(',').map(str::parse).collect();
                cpus = Some(list.map_err(|_| fail("cpus= takes CPU numbers, e.g. cpus=1,2"))?);
            }
            ("ports", "stop") => policy = port_policy::STOP,
            ("ports", "ignore") => policy = port_policy::IGNORE,
            ("ports", _) => return Err(fail("ports= is stop (a port without handler stops the VM) or ignore")),
            ("apic", "auto") => emulate_apic = false,
            ("apic", "emulate") => emulate_apic = true,
            ("apic", _) => {
                return Err(fail(
                    "apic= is auto (virtualized where the CPU can) or emulate (every x2APIC access exits)",
                ))
            }
            _ => return Err(fail(USAGE)),
        }
    }
    Ok(Options { mem, cpus: spread(&cpus.unwrap_or_else(vmx_cpus), vcpus).map_err(fail)?, policy, emulate_apic })
}

/// `vm create` with its options.
fn create(name: &str, o: &Options) -> Result<alloc::sync::Arc<vm::Vm>, vm::Error> {
    let v = vm::create(name, o.mem, &o.cpus)?;
    super::io::set_policy(&v, o.policy)?;
    v.emulate_apic.store(o.emulate_apic, Ordering::Release);
    Ok(v)
}

/// The pCPU of each of `vcpus` vCPUs: round robin over `pool`.
pub(super) fn spread(pool: &[u32], vcpus: usize) -> Result<Vec<u32>, vm::Error> {
    if pool.is_empty() {
        return Err(vm::Error::NoVmx);
    }
    Ok((0..vcpus).map(|i| pool[i % pool.len()]).collect())
}

/// Starts a VM whose vCPUs all have their state (a guest ELF loaded, or
/// `set_vcpu_state` for each).
pub(super) fn start(name: &str) -> Result<(), vm::Error> {
    let v = vm::find(name)?;
    super::vcpu::ready(&v)?;
    if !v.transition(State::Loaded, State::Running) && !v.transition(State::Created, State::Running) {
        return Err(vm::Error::WrongState { vm: name.into(), state: v.state().name() });
    }
    wake(&v);
    Ok(())
}

/// Wakes the pCPUs of `v`'s vCPUs from their halt, to run them.
fn wake(v: &vm::Vm) {
    for c in v.vcpus.iter() {
        // SAFETY: a plain call of the loader: wakes the pCPU from its halt.
        unsafe { ffi::mv_kick(c.cpu.load(Ordering::Acquire)) };
    }
}

/// Pauses a running VM: its vCPUs are asked to leave guest mode (PAUSE
/// requests and kicks), and this waits until each has, or is outside it
/// already; `run::pick` passes them over until `resume`.
pub(super) fn pause(v: &vm::Vm) -> Result<(), vm::Error> {
    if !v.transition(State::Running, State::Paused) {
        return Err(vm::Error::WrongState { vm: v.name.clone(), state: v.state().name() });
    }
    v.request_and_wait(crate::requests::Requests::PAUSE);
    Ok(())
}

pub(super) fn resume(v: &vm::Vm) -> Result<(), vm::Error> {
    if !v.transition(State::Paused, State::Running) {
        return Err(vm::Error::WrongState { vm: v.name.clone(), state: v.state().name() });
    }
    wake(v);
    Ok(())
}

fn list() {
    for v in vm::VMS.lock().iter() {
        let cpus: Vec<u32> = v.vcpus.iter().map(|c| c.cpu.load(Ordering::Acquire)).collect();
        let exits: u64 = v.vcpus.iter().map(|c| c.run.lock().exits.total()).sum();
        let e = v.ending.lock().clone();
        let how = match (e.status, e.report) {
            (Some(s), _) => alloc::format!(", exit status {s}"),
            (None, Some(r)) => alloc::format!(", {}", r.lines().next().unwrap_or("")),
            _ => alloc::string::String::new(),
        };
        plugins::println!(
            "{} (id {}): {}, {} MiB, {} vCPUs on cpus {:?}, {} exits{how}",
            v.name,
            v.id,
            v.state().name(),
            v.ram_bytes >> 20,
            v.vcpus.len(),
            cpus,
            exits
        );
    }
}

fn info(name: &str) -> Result<(), vm::Error> {
    let v = vm::find(name)?;
    plugins::println!("{} (id {}): {}", v.name, v.id, v.state().name());
    if let Some(r) = v.ending.lock().report.as_deref() {
        for l in r.lines() {
            plugins::println!("  {l}");
        }
    }
    for c in v.vcpus.iter() {
        let run = c.run.lock();
        plugins::println!(
            "  vcpu {}: cpu {}, {}, {}{} exits",
            c.index,
            c.cpu.load(Ordering::Acquire),
            run.apic.describe(),
            match c.halt.load(Ordering::Acquire) {
                vm::RUNNING => "",
                vm::HALTED => "halted, ",
                _ => "halted for good, ",
            },
            run.exits.total()
        );
        for (reason, n) in run.exits.iter() {
            plugins::println!("    {reason}: {n}");
        }
    }
    Ok(())
}

pub fn vm_command(args: &str) -> Result<(), i32> {
    let words: Vec<&str> = args.split_whitespace().collect();
    let r = match words.as_slice() {
        ["create", name, rest @ ..] => options(rest).and_then(|o| create(name, &o).map(|_| ()).map_err(fail)),
        ["load", name, file] => vm::find(name).and_then(|v| vm::load(&v, file)).map_err(fail),
        ["run", name, file, rest @ ..] => options(rest)
            .and_then(|o| create(name, &o).and_then(|v| vm::load(&v, file)).and_then(|()| start(name)).map_err(fail)),
        ["start", name] => start(name).map_err(fail),
        ["pause", name] => vm::find(name).and_then(|v| pause(&v)).map_err(fail),
        ["resume", name] => vm::find(name).and_then(|v| resume(&v)).map_err(fail),
        ["kill", name] => vm::find(name).map(|v| v.stop(None, Some("killed from the shell".into()))).map_err(fail),
        ["destroy", name] => vm::destroy(name).map_err(fail),
        ["list"] => {
            list();
            Ok(())
        }
        ["info", name] => info(name).map_err(fail),
        ["info"] => {
            let names: Vec<alloc::string::String> = vm::VMS.lock().iter().map(|v| v.name.clone()).collect();
            names.iter().try_for_each(|n| info(n)).map_err(fail)
        }
        _ => Err(fail(USAGE)),
    };
    r.map_err(|_| 1)
}
