//! The `cpu` shell command: the states, the event log, logical online and
//! offline, and fault injection.

use alloc::string::String;
use plugins::println;

use super::{offline, online, write, Inner, GENERATION, INNER, LOCK};
use crate::machine::Direction;

const USAGE: &str =
    "usage: cpu states | events [n] | online N | offline N | fail N <state> [up|down] (`cpus` lists the CPUs)";

fn cpu_number(w: Option<&str>) -> Result<usize, String> {
    let w = w.ok_or_else(|| String::from(USAGE))?;
    w.parse().map_err(|_| alloc::format!("`{w}` is not a CPU number"))
}

fn command(args: &str) -> Result<(), String> {
    let mut w = args.split_whitespace();
    let with_inner = |f: &mut dyn FnMut(&Inner)| {
        LOCK.read();
        if let Some(i) = INNER.lock().as_ref() {
            f(i)
        }
        let _ = LOCK.read_unlock();
    };
    match w.next() {
        Some("states") => with_inner(&mut |i| {
            println!("cpuhp generation {GENERATION}: {} states, bring-up order", i.m.states().len());
            for s in i.m.states() {
                println!("  {:>3} {:<8} {} (owner {})", s.id, s.hooks.section().name(), s.name, s.owner());
            }
        }),
        Some("events") => {
            let n =
                w.next().map(|n| n.parse::<usize>().map_err(|_| alloc::format!("`{n}` is not a count"))).transpose()?;
            with_inner(&mut |i| {
                let tail = i.m.events.last(n.unwrap_or(20));
                if tail.missing > 0 {
                    println!(
                        "({} earlier events are no longer in the log; {} dropped in all)",
                        tail.missing,
                        i.m.events.dropped()
                    );
                }
                for e in &tail.events {
                    println!("{e}");
                }
            })
        }
        Some("online") => online(cpu_number(w.next())?).map_err(|e| alloc::format!("{e}"))?,
        Some("offline") => offline(cpu_number(w.next())?).map_err(|e| alloc::format!("{e}"))?,
        Some("fail") => {
            let cpu = cpu_number(w.next())?;
            let state = w.next().ok_or(USAGE)?;
            let dir = match w.next() {
                None | Some("up") => Direction::Up,
                Some("down") => Direction::Down,
                Some(d) => return Err(alloc::format!("`{d}` is not up or down")),
            };
            let id = write(|m, _, _| m.inject(cpu, state, dir)).map_err(|e| alloc::format!("{e}"))?;
            println!("cpu {cpu}: state {id} ({state}) fails on the next {}", dir.name());
        }
        Some(other) => return Err(alloc::format!("unknown subcommand `{other}`; {USAGE}")),
        None => return Err(USAGE.into()),
    }
    if w.next().is_some() {
        return Err(USAGE.into());
    }
    Ok(())
}

/// The `cpu` command: an error is printed and makes the status 1.
pub(super) fn cpu_command(args: &str) -> Result<(), i32> {
    command(args).map_err(|e| {
        println!("error: {e}");
        1
    })
}
