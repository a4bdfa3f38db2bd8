//! The `requests` suite (Bochs): vmx-plugin's request/kick protocol under
//! load, seeded (`seed=` on the command line; the runner runs three seeds
//! and `--seed N` replays one). A `counter` VM with two vCPUs per AP runs
//! while this CPU makes probe requests on random sets of its vCPUs through
//! `make_request_mask` (the `vm` table's probe entries) and, between the
//! request and the wait for its acknowledgement, now and then takes a CPU
//! that holds vCPUs offline (cpuhp moves them: the requests in flight then
//! find a vCPU whose recorded pCPU is stale) or brings one back. cpuhp
//! moves the vCPUs of a CPU going offline to the boot CPU, where they stay;
//! once no AP holds any, the VM is checked and replaced by a fresh one
//! placed on the APs again.
//!
//! Checked on every round: each target acknowledges in time; each takes
//! exactly the requests sent to it (one per round: the next round waits
//! for it to be seen, so none merge); and it took each one before its
//! next VM entry after the request (but the one a kicked vCPU was making)
//! and before its next entry after the acknowledgement (its entry count at
//! the take against the counts vmx-plugin read then). At the end the
//! counters still count (the guest checks its own memory and would have
//! stopped with status 1).

use super::cpuhp::{boot_aps, cpuhp};
use super::guests::{counter, destroy, finish, start, state, vm, wait};
use super::vmx::fresh;
use crate::ktest::{Failure, Test};
use crate::{check, check_eq};
use loader_core::seeded::Rng;
use vmx_api::vm_state;

crate::suite!(SUITE_REQUESTS, "requests", TESTS, crate::ktest::InAll::OnlyWhenNamed);
static TESTS: &[Test] = &[Test { name: "probes-while-vcpus-move-are-seen-once-before-entry", run: stress }];

const ROUNDS: u32 = 600;
/// One round in this many moves vCPUs (an offline, or an online of a CPU
/// taken offline before).
const MIGRATE_EVERY: u64 = 6;
/// The seed when the command line gives none (a plain `test=requests`).
const DEFAULT_SEED: u64 = 1;

/// What one VM's vCPUs were sent and what the run did.
struct Run {
    id: u32,
    vcpus: u32,
    sent: [u64; 64],
    ipis: u64,
    probes: u64,
    offlines: u32,
    onlines: u32,
    vms: u32,
    /// APs taken offline and not back yet.
    offline: alloc::vec::Vec<u32>,
}

fn stress() -> Result<(), Failure> {
    let seed = crate::boot_info().1.seed.unwrap_or(DEFAULT_SEED);
    crate::println!("requests: seed {seed} (`seed={seed}` on the command line replays this run)");
    let mut rng = Rng::new(seed);
    fresh()?;
    let aps: alloc::vec::Vec<u32> = boot_aps().into_iter().map(|c| c as u32).collect();
    check!(!aps.is_empty(), "the requests suite needs a second CPU");
    let vcpus = 2 * aps.len() as u32;
    let mut run = Run {
        id: begin(vcpus)?,
        vcpus,
        sent: [0; 64],
        ipis: 0,
        probes: 0,
        offlines: 0,
        onlines: 0,
        vms: 1,
        offline: alloc::vec::Vec::new(),
    };
    for round in 0..ROUNDS {
        crate::time::watchdog::pet();
        let targets = rng.subset(vcpus);
        let migrate = rng.below(MIGRATE_EVERY) == 0;
        let pick = rng.next_u64();
        one_round(&mut run, targets, migrate.then_some(pick))
            .map_err(|f| crate::failure!("seed {seed}, round {round}, vCPUs {targets:#b}: {}", f.as_str()))?;
    }
    for cpu in core::mem::take(&mut run.offline) {
        check_eq!(cpuhp(|t| (t.cpu_online)(cpu))?, 0, "online cpu {cpu} at the end");
    }
    end(&mut run)?;
    crate::println!(
        "requests: seed {seed}: {ROUNDS} rounds over {} VMs, {} probes sent and seen once each, {} IPIs, {} \
         offlines and {} onlines moving vCPUs",
        run.vms,
        run.probes,
        run.ipis,
        run.offlines,
        run.onlines
    );
    Ok(())
}

/// A counter VM with `vcpus` vCPUs placed by vmx-plugin (the APs first),
/// once every counter counts.
fn begin(vcpus: u32) -> Result<u32, Failure> {
    let id = start("probed", "counter", vcpus, &[])?;
    check!(wait(5000, || (0..vcpus).all(|v| counter(id, v.into()).is_ok_and(|n| n > 0))), "the counters do not count");
    Ok(id)
}

/// Checks that the VM's guest is still right (running, every counter
/// moving) and destroys it.
fn end(run: &mut Run) -> Result<(), Failure> {
    let id = run.id;
    let at: alloc::vec::Vec<u64> = (0..run.vcpus).map(|v| counter(id, v.into())).collect::<Result<_, _>>()?;
    let counting = wait(5000, || at.iter().enumerate().all(|(v, &n)| counter(id, v as u64).is_ok_and(|c| c > n)));
    check!(counting, "a counter stopped after the rounds");
    check_eq!(state(id)?.0, vm_state::RUNNING, "the counter VM after the rounds (status {})", state(id)?.1);
    run.probes += run.sent.iter().sum::<u64>();
    check_eq!(vm(|t| (t.kill)(id))?, 0, "kill");
    finish(id, 2000)?;
    destroy(id)
}

/// Replaces the VM by a fresh one (after `end`'s checks).
fn restart(run: &mut Run) -> Result<(), Failure> {
    end(run)?;
    run.id = begin(run.vcpus)?;
    run.sent = [0; 64];
    run.vms += 1;
    Ok(())
}

/// One round: request, maybe move vCPUs, wait for the acknowledgements,
/// then for every target to have seen its request; check the counts.
fn one_round(run: &mut Run, targets: u64, migrate: Option<u64>) -> Result<(), Failure> {
    let (mut tickets, mut bounds) = ([0u32; 64], [0u64; 64]);
    let ipis = vm(|t| (t.probe_send)(run.id, targets, tickets.as_mut_ptr(), bounds.as_mut_ptr()))?;
    check!(ipis >= 0, "probe_send: {ipis}");
    run.ipis += ipis as u64;
    for v in bits(targets) {
        run.sent[v] += 1;
    }
    let drained = match migrate {
        Some(pick) => move_vcpus(run, pick)?,
        None => false,
    };
    let mut entries = [0u64; 64];
    let late = vm(|t| (t.probe_wait)(run.id, targets, tickets.as_ptr(), entries.as_mut_ptr()))?;
    check_eq!(late, 0, "vCPUs that did not acknowledge in 200 ms");
    // The targets run on APs, or here while this CPU waits.
    let all_seen = wait(3000, || bits(targets).all(|v| counts(run.id, v).is_ok_and(|c| c[0] >= run.sent[v])));
    for v in bits(targets) {
        let [seen, seen_at, _] = counts(run.id, v)?;
        check!(all_seen || seen == run.sent[v], "vCPU {v} lost a request: {} sent, {seen} seen", run.sent[v]);
        check_eq!(seen, run.sent[v], "vCPU {v}'s requests seen against sent");
        check!(
            seen_at <= bounds[v],
            "vCPU {v} entered the guest after the request without taking it (taken at entry {seen_at}, due by {})",
            bounds[v]
        );
        check!(
            seen_at <= entries[v],
            "vCPU {v} entered the guest after acknowledging without taking the request (taken at entry {seen_at}, \
             acknowledged at {})",
            entries[v]
        );
    }
    if drained {
        restart(run)?;
    }
    Ok(())
}

/// Takes offline the CPU of a vCPU chosen by `pick` (or of the next one
/// that is on an AP; its vCPUs move), or brings back an AP taken offline.
/// True when no AP holds a vCPU any more and none is offline: the VM is
/// to be replaced.
fn move_vcpus(run: &mut Run, pick: u64) -> Result<bool, Failure> {
    let aps = boot_aps().len();
    // At least one AP stays online when there are two or more: the moved
    // vCPUs then run on an AP too, not only in this CPU's waits.
    let may_offline = run.offline.len() + 1 < aps.max(2);
    if !run.offline.is_empty() && (!may_offline || pick & 1 == 0) {
        let cpu = run.offline.remove((pick >> 1) as usize % run.offline.len());
        check_eq!(cpuhp(|t| (t.cpu_online)(cpu))?, 0, "online cpu {cpu}");
        run.onlines += 1;
        return Ok(false);
    }
    if !may_offline {
        return Ok(false);
    }
    let here = crate::cpu::percpu::current_id() as i32;
    let first = (pick >> 1) % u64::from(run.vcpus);
    let mut on_ap = None;
    for v in (0..u64::from(run.vcpus)).map(|i| (first + i) % u64::from(run.vcpus)) {
        let cpu = vm(|t| (t.vcpu_cpu)(run.id, v as u32))?;
        check!(cpu >= 0, "vcpu_cpu of vCPU {v}: {cpu}");
        if cpu != here {
            on_ap = Some(cpu as u32);
            break;
        }
    }
    let Some(cpu) = on_ap else { return Ok(run.offline.is_empty()) };
    check_eq!(cpuhp(|t| (t.cpu_offline)(cpu))?, 0, "offline cpu {cpu}, which holds vCPUs");
    run.offline.push(cpu);
    run.offlines += 1;
    Ok(false)
}

/// (probes seen, entries at the last, entries) of vCPU `v`.
fn counts(id: u32, v: usize) -> Result<[u64; 3], Failure> {
    let mut out = [0u64; 3];
    check_eq!(vm(|t| (t.probe_counts)(id, v as u32, out.as_mut_ptr()))?, 0, "probe_counts of vCPU {v}");
    Ok(out)
}

/// The indices of the set bits of `set`, lowest first.
fn bits(set: u64) -> impl Iterator<Item = usize> {
    (0..64).filter(move |b| set & (1 << b) != 0)
}
