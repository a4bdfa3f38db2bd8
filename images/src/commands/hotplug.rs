//! `runner cpu-add` / `runner cpu-del`: physical CPU hotplug from the
//! host, through the QMP socket of the image `runner run` is running.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

use super::{run, Error, Result};
use crate::link::{
    self,
    qmp::{self, Qmp},
};

fn connect_run() -> Result<Qmp> {
    let socket = run::qmp_socket();
    Qmp::connect(&socket, Duration::ZERO)
        .map_err(|e| Error::Environment(format!("{e}; start the image with `make run` first")))
}

/// `runner cpu-add`: hot-adds a CPU of the boot CPUs' model into the
/// lowest free slot, with `features` (`"sse4.2": false, ...`) on top.
pub fn cpu_add_command(features: &str) -> Result<ExitCode> {
    let mut q = connect_run()?;
    let hotpluggable = q.execute("query-hotpluggable-cpus", json!({}))?;
    let full = || link::Error::Qmp("no free CPU slot (all of maxcpus are in)".into());
    let index = qmp::free_index(&hotpluggable).ok_or_else(full)?;
    let (driver, props) = qmp::slot(&hotpluggable, index).ok_or_else(full)?;
    // Named after the slot's cpu-index: unique among the CPUs present
    // whatever the topology (with cores, every socket-id is 0).
    let id = format!("cpu{index}");
    let args = qmp::device_add_args(&driver, &props, &id, features)?;
    println!("cpu-add: device_add {args}");
    q.execute("device_add", args)?;
    let ost = q.wait_event(Duration::from_secs(5), |e| !qmp::ost_reports(std::slice::from_ref(e)).is_empty())?;
    report_ost(&q, ost, &id);
    Ok(ExitCode::SUCCESS)
}

/// `runner cpu-del --cpu N`: asks the guest to give back the CPU whose
/// QEMU cpu-index is N (its socket, and with the default topology its
/// APIC id and modvisor's cpu number).
pub fn cpu_del_command(cpu: u64) -> Result<ExitCode> {
    let mut q = connect_run()?;
    let cpus = qmp::cpus(&q.execute("query-cpus-fast", json!({}))?);
    let (_, path) = cpus.iter().find(|(i, _)| *i == cpu).ok_or_else(|| {
        Error::Usage(format!(
            "cpu-del: QEMU has no cpu {cpu}; it has {:?}",
            cpus.iter().map(|c| c.0).collect::<Vec<_>>()
        ))
    })?;
    println!("cpu-del: device_del {path}");
    q.execute("device_del", json!({ "id": path }))?;
    let done = q.wait_event(Duration::from_secs(5), |e| {
        e["event"] == "DEVICE_DELETED" || !qmp::ost_reports(std::slice::from_ref(e)).is_empty()
    })?;
    report_ost(&q, done, path);
    Ok(ExitCode::SUCCESS)
}

fn report_ost(q: &Qmp, seen: bool, what: &str) {
    if !seen {
        println!("cpu: the guest has not answered for {what} within 5 s (no CPU hotplug handler loaded?)");
    }
    for e in &q.events {
        println!("qemu event: {e}");
    }
}
