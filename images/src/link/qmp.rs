//! A QMP client (QEMU Machine Protocol: one JSON object per line over a
//! unix socket) and the pure pieces of CPU hotplug through it: choosing a
//! free slot from `query-hotpluggable-cpus`, building `device_add`'s
//! arguments, reading `query-cpus-fast` and `ACPI_DEVICE_OST` events.
//!
//! Hand-written because no QMP crate fits simply: `qapi` types every
//! command after one QEMU schema, while `device_add` here takes whatever
//! CPU properties the user names and the scenarios wait for events with
//! deadlines over raw JSON; `qmp` is async (tokio). The protocol part is
//! `Qmp` below, some eighty lines.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::{Error, Result};

/// _OST reports QEMU must have seen: insertion success (Device Check, 0)
/// and ejection success (Eject Processing 0x103, 0).
pub const OST_INSERTED: (u64, u64) = (0x01, 0);
pub const OST_EJECTED: (u64, u64) = (0x103, 0);
/// An eject request refused: device busy (Eject Request 0x03, 0x82).
pub const OST_EJECT_REFUSED: (u64, u64) = (0x03, 0x82);
/// Insertion failed (Device Check, driver load failure 0x81).
pub const OST_INSERT_FAILED: (u64, u64) = (0x01, 0x81);

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Asynchronous events received so far, in order.
    pub events: Vec<Value>,
}

fn qmp_error(what: impl Into<String>) -> Error {
    Error::Qmp(what.into())
}

impl Qmp {
    /// Connects (retrying until `timeout`: QEMU creates the socket as it
    /// starts), reads the greeting and leaves capabilities negotiation.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Qmp> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(Error::io(format!("connecting to QMP at {}", socket.display()), e))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let reader = BufReader::new(stream.try_clone().map_err(|e| Error::io("cloning the QMP socket", e))?);
        let mut qmp = Qmp { reader, writer: stream, events: Vec::new() };
        let greeting = qmp.read()?.ok_or_else(|| qmp_error("QEMU closed QMP before its greeting"))?;
        if greeting.get("QMP").is_none() {
            return Err(qmp_error(format!("not a QMP greeting: {greeting}")));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    /// The next message; `None` at end of stream.
    fn read(&mut self) -> Result<Option<Value>> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).map_err(|e| Error::io("reading QMP", e))?;
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line).map(Some).map_err(|e| qmp_error(format!("bad QMP message {line:?}: {e}")))
    }

    /// Runs `command`; its `return` value, or QEMU's error description.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value> {
        let msg = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{msg}").map_err(|e| Error::io("writing QMP", e))?;
        loop {
            let reply = self.read()?.ok_or_else(|| qmp_error(format!("QEMU closed QMP during `{command}`")))?;
            if reply.get("event").is_some() {
                self.events.push(reply);
            } else if let Some(r) = reply.get("return") {
                return Ok(r.clone());
            } else if let Some(e) = reply.get("error") {
                return Err(qmp_error(format!("`{command}`: {}", e["desc"].as_str().unwrap_or("(no description)"))));
            }
        }
    }

    /// Reads events until one satisfies `want` or `timeout` passes (or
    /// QEMU closes the socket, having exited: what it sent is still read).
    pub fn wait_event(&mut self, timeout: Duration, want: impl Fn(&Value) -> bool) -> Result<bool> {
        if self.events.iter().any(&want) {
            return Ok(true);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.writer.set_read_timeout(Some(left)).map_err(|e| Error::io("QMP timeout", e))?;
            let got = self.read();
            self.writer.set_read_timeout(None).map_err(|e| Error::io("QMP timeout", e))?;
            match got {
                Ok(Some(ev)) => {
                    let hit = want(&ev);
                    self.events.push(ev);
                    if hit {
                        return Ok(true);
                    }
                }
                Ok(None) => return Ok(false),
                Err(Error::Io { source, .. })
                    if matches!(source.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    return Ok(false)
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A free slot of `query-hotpluggable-cpus` (one without `qom-path`): its
/// CPU type (the driver `device_add` needs: the same model as `-cpu`) and
/// its topology properties.
pub fn free_slot(hotpluggable: &Value) -> Option<(String, Map<String, Value>)> {
    hotpluggable
        .as_array()?
        .iter()
        .rev()
        .find(|s| s.get("qom-path").is_none())
        .and_then(|s| Some((s.get("type")?.as_str()?.to_string(), s.get("props")?.as_object()?.clone())))
}

/// Possible CPU `index`'s slot of `query-hotpluggable-cpus`, if it is
/// free: its CPU type and topology properties. QEMU lists the possible
/// CPUs last to first, whatever the topology (sockets or cores), and a
/// CPU's cpu-index is its place in that order.
pub fn slot(hotpluggable: &Value, index: usize) -> Option<(String, Map<String, Value>)> {
    let s = hotpluggable.as_array()?.iter().rev().nth(index)?;
    if s.get("qom-path").is_some() {
        return None;
    }
    Some((s.get("type")?.as_str()?.to_string(), s.get("props")?.as_object()?.clone()))
}

/// The cpu-index of the lowest free slot of `query-hotpluggable-cpus`.
pub fn free_index(hotpluggable: &Value) -> Option<usize> {
    hotpluggable.as_array()?.iter().rev().position(|s| s.get("qom-path").is_none())
}

/// The slots of `query-hotpluggable-cpus` that hold a CPU (those with a
/// `qom-path`), as cpu-indices: QEMU lists the slots last to first.
pub fn plugged_slots(hotpluggable: &Value) -> Vec<usize> {
    let Some(slots) = hotpluggable.as_array() else { return Vec::new() };
    slots.iter().rev().enumerate().filter(|(_, s)| s.get("qom-path").is_some()).map(|(i, _)| i).collect()
}

/// `device_add`'s arguments: the slot's driver and topology, the device
/// `id`, and `features`, the body of a JSON object of extra properties
/// (e.g. `"sse4.2": false`), as `make cpu-add FEATURES=...` takes them.
pub fn device_add_args(driver: &str, props: &Map<String, Value>, id: &str, features: &str) -> Result<Value> {
    let extra: Map<String, Value> = if features.trim().is_empty() {
        Map::new()
    } else {
        serde_json::from_str(&format!("{{{features}}}"))
            .map_err(|e| Error::Features { features: features.to_string(), reason: e.to_string() })?
    };
    let mut args = Map::new();
    args.insert("driver".into(), driver.into());
    args.insert("id".into(), id.into());
    args.extend(props.clone());
    args.extend(extra);
    Ok(Value::Object(args))
}

/// `(cpu-index, qom-path)` of every CPU in `query-cpus-fast`.
pub fn cpus(query_cpus_fast: &Value) -> Vec<(u64, String)> {
    query_cpus_fast
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| Some((c.get("cpu-index")?.as_u64()?, c.get("qom-path")?.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// `(source, status)` of every `ACPI_DEVICE_OST` event.
pub fn ost_reports(events: &[Value]) -> Vec<(u64, u64)> {
    events
        .iter()
        .filter(|e| e["event"] == "ACPI_DEVICE_OST")
        .filter_map(|e| Some((e["data"]["info"]["source"].as_u64()?, e["data"]["info"]["status"].as_u64()?)))
        .collect()
}

/// Whether `event` is `DEVICE_DELETED` of device `id` or of a child of
/// it. An ejected CPU's own event comes only when the object is finalized,
/// which may be after the guest exits; its local APIC's comes as the CPU
/// is unrealized, i.e. at the eject (QEMU 7.2).
pub fn is_deleted(event: &Value, id: &str) -> bool {
    let under =
        |p: &str| p.strip_prefix("/machine/peripheral/").is_some_and(|r| r == id || r.starts_with(&format!("{id}/")));
    event["event"] == "DEVICE_DELETED"
        && (event["data"]["device"] == id || event["data"]["path"].as_str().is_some_and(under))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What QEMU 7.2 answers for `-smp 2,maxcpus=4 -cpu max` (trimmed).
    fn hotpluggable() -> Value {
        json!([
            {"props": {"core-id": 0, "thread-id": 0, "socket-id": 3}, "vcpus-count": 1, "type": "max-x86_64-cpu"},
            {"props": {"core-id": 0, "thread-id": 0, "socket-id": 2}, "vcpus-count": 1, "type": "max-x86_64-cpu"},
            {"props": {"core-id": 0, "thread-id": 0, "socket-id": 1}, "vcpus-count": 1,
             "qom-path": "/machine/unattached/device[1]", "type": "max-x86_64-cpu"},
            {"props": {"core-id": 0, "thread-id": 0, "socket-id": 0}, "vcpus-count": 1,
             "qom-path": "/machine/unattached/device[0]", "type": "max-x86_64-cpu"}
        ])
    }

    #[test]
    fn the_lowest_free_slot_is_chosen() {
        let (driver, props) = free_slot(&hotpluggable()).unwrap();
        assert_eq!(driver, "max-x86_64-cpu");
        assert_eq!(props["socket-id"], 2);
        let full = json!([{"props": {}, "type": "x", "qom-path": "/p"}]);
        assert_eq!(free_slot(&full), None);
        assert_eq!(free_slot(&json!({})), None);
    }

    #[test]
    fn a_given_socket_is_found_if_free() {
        let (driver, props) = slot(&hotpluggable(), 3).unwrap();
        assert_eq!((driver.as_str(), &props["socket-id"]), ("max-x86_64-cpu", &json!(3)));
        // QEMU 7.2's own answer prefers cores to sockets.
        let cores = json!([
            {"props": {"core-id": 3, "thread-id": 0, "socket-id": 0}, "vcpus-count": 1, "type": "max-x86_64-cpu"},
            {"props": {"core-id": 2, "thread-id": 0, "socket-id": 0}, "vcpus-count": 1, "type": "max-x86_64-cpu"},
            {"props": {"core-id": 1, "thread-id": 0, "socket-id": 0}, "qom-path": "/machine/unattached/device[2]", "type": "max-x86_64-cpu"},
            {"props": {"core-id": 0, "thread-id": 0, "socket-id": 0}, "qom-path": "/machine/unattached/device[0]", "type": "max-x86_64-cpu"}
        ]);
        assert_eq!(slot(&cores, 2).unwrap().1["core-id"], 2);
        assert_eq!(slot(&cores, 1), None);
        assert_eq!(slot(&hotpluggable(), 1), None);
        assert_eq!(slot(&hotpluggable(), 9), None);
        assert_eq!(plugged_slots(&hotpluggable()), [0, 1]);
        assert_eq!(free_index(&hotpluggable()), Some(2));
        assert_eq!(free_index(&cores), Some(2));
        assert_eq!(free_index(&json!([{"props": {}, "type": "x", "qom-path": "/p"}])), None);
        assert_eq!(plugged_slots(&cores), [0, 1]);
        assert_eq!(plugged_slots(&json!({})), Vec::<usize>::new());
    }

    #[test]
    fn device_add_takes_features() {
        let (driver, props) = free_slot(&hotpluggable()).unwrap();
        let a = device_add_args(&driver, &props, "hp-cpu2", r#""sse4.2": false, "x2apic": false"#).unwrap();
        assert_eq!(
            a,
            json!({"driver": "max-x86_64-cpu", "id": "hp-cpu2", "socket-id": 2, "core-id": 0, "thread-id": 0,
                   "sse4.2": false, "x2apic": false})
        );
        assert_eq!(device_add_args(&driver, &props, "c", " ").unwrap()["driver"], "max-x86_64-cpu");
        assert!(matches!(device_add_args(&driver, &props, "c", "sse4.2=off"), Err(Error::Features { .. })));
    }

    #[test]
    fn cpus_and_events_are_read() {
        let q = json!([{"cpu-index": 0, "qom-path": "/machine/unattached/device[0]", "thread-id": 1},
                       {"cpu-index": 2, "qom-path": "/machine/peripheral/hp-cpu2"}]);
        assert_eq!(cpus(&q), [(0, "/machine/unattached/device[0]".into()), (2, "/machine/peripheral/hp-cpu2".into())]);
        let events = [
            json!({"event": "ACPI_DEVICE_OST", "data": {"info": {"device": "hp-cpu2", "source": 1, "status": 0, "slot": "2", "slot-type": "CPU"}}}),
            json!({"event": "DEVICE_DELETED", "data": {"device": "hp-cpu2", "path": "/machine/peripheral/hp-cpu2"}}),
            json!({"event": "ACPI_DEVICE_OST", "data": {"info": {"source": 259, "status": 0}}}),
        ];
        assert_eq!(ost_reports(&events), [(1, 0), (0x103, 0)]);
        assert!(is_deleted(&events[1], "hp-cpu2"));
        assert!(!is_deleted(&events[1], "hp-cpu3"));
        assert!(!is_deleted(&events[0], "hp-cpu2"));
        let lapic = json!({"event": "DEVICE_DELETED", "data": {"path": "/machine/peripheral/hp-cpu2/lapic"}});
        assert!(is_deleted(&lapic, "hp-cpu2"));
        assert!(!is_deleted(&lapic, "hp-cpu"));
    }
}
