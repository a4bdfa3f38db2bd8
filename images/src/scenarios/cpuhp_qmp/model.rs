//! The operations a run plays, and the model of the machine they are
//! checked against.

use super::{Plan, BOOT_CPUS, DROPPED_FEATURE, REFUSED_SLOT, SLOTS, SWAPPED_TO};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// device_add into slot (cpu-index) `slot`, with `without` switched off.
    Add { slot: usize, without: Option<&'static str> },
    /// device_del of the CPU in `slot`.
    Remove(usize),
    /// `cpu online N` in the shell.
    Online(usize),
    /// `cpu offline N` in the shell.
    Offline(usize),
    /// `cpu fail N cpuhp:bringup down` (the tear-down's park fails), then
    /// device_del: cpuhp must refuse the eject and keep the CPU online.
    RefusedRemove(usize),
    /// `swap cpuhp-plugin <version>` in the shell: every later hotplug
    /// event reaches the new version's GPE handler.
    Swap(&'static str),
}

/// A slot as the model sees it (the lifecycle words of `cpus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Absent,
    Offline,
    Online,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Absent => "absent",
            Stage::Offline => "offline",
            Stage::Online => "online",
        }
    }
}

/// The expected state of the machine: one stage per slot the scenario
/// uses (the slots past [`SLOTS`] stay empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model(pub [Stage; SLOTS]);

impl Model {
    pub fn boot() -> Model {
        let mut s = [Stage::Absent; SLOTS];
        s[..BOOT_CPUS].fill(Stage::Online);
        Model(s)
    }

    /// The slots that hold a CPU.
    pub fn present(&self) -> Vec<usize> {
        (0..SLOTS).filter(|&s| self.0[s] != Stage::Absent).collect()
    }

    /// Every operation allowed now. CPU 0 (the boot CPU) is never touched;
    /// only hot-pluggable slots are added and removed, since QEMU refuses
    /// to unplug the CPUs of `-smp` on some machine versions.
    pub fn choices(&self) -> Vec<Op> {
        let mut ops = Vec::new();
        for (slot, stage) in self.0.iter().enumerate().skip(1) {
            let pluggable = slot >= BOOT_CPUS;
            match stage {
                Stage::Absent => ops.push(Op::Add { slot, without: None }),
                Stage::Online => ops.push(Op::Offline(slot)),
                Stage::Offline => ops.push(Op::Online(slot)),
            }
            if pluggable && *stage != Stage::Absent {
                ops.push(Op::Remove(slot));
            }
        }
        ops
    }

    /// Applies `op`; the event kinds it must publish for its CPU, in order.
    pub fn apply(&mut self, op: Op) -> &'static [&'static str] {
        let (slot, before) = (op.cpu(), self.0[op.cpu()]);
        let (after, kinds): (Stage, &'static [&'static str]) = match (op, before) {
            (Op::Add { without: Some(_), .. }, _) => {
                (Stage::Offline, &["discovered", "bring-up-started", "failed", "rolled-back"])
            }
            (Op::Add { .. }, _) => (Stage::Online, &["discovered", "bring-up-started", "online", "active"]),
            (Op::Remove(_), Stage::Online) => (Stage::Absent, &["tear-down-started", "offline", "removed"]),
            (Op::Remove(_), _) => (Stage::Absent, &["removed"]),
            (Op::Online(_), _) => (Stage::Online, &["bring-up-started", "online", "active"]),
            (Op::Offline(_), _) => (Stage::Offline, &["tear-down-started", "offline"]),
            (Op::RefusedRemove(_), _) => (Stage::Online, &["tear-down-started", "failed", "rolled-back"]),
            (Op::Swap(_), stage) => (stage, &[]),
        };
        self.0[slot] = after;
        kinds
    }
}

impl Op {
    pub fn cpu(self) -> usize {
        match self {
            Op::Add { slot, .. }
            | Op::Remove(slot)
            | Op::Online(slot)
            | Op::Offline(slot)
            | Op::RefusedRemove(slot) => slot,
            Op::Swap(_) => 0,
        }
    }
}

/// xorshift64*: small, seeded, the same on every host.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// The fixed operations before the random ones: a CPU into slot 2
/// (online); the CPU without [`DROPPED_FEATURE`] into [`REFUSED_SLOT`]
/// (refused, it stays offline and the rest goes on); CPU 2 ejected while
/// online and its slot filled again (online again, a new insertion); an
/// eject of CPU 2 that a teardown refuses; the refused CPU ejected; a swap
/// of cpuhp, so that every later operation reaches the new version.
pub const PREFIX: [Op; 7] = [
    Op::Add { slot: 2, without: None },
    Op::Add { slot: REFUSED_SLOT, without: Some(DROPPED_FEATURE) },
    Op::Remove(2),
    Op::Add { slot: 2, without: None },
    Op::RefusedRemove(2),
    Op::Remove(REFUSED_SLOT),
    Op::Swap(SWAPPED_TO),
];

/// The whole sequence: [`PREFIX`], `random_ops` seeded operations (hot-adds
/// into fresh and into ejected slots, removals, onlines and offlines),
/// and an offline/online of CPU 1 to show the rest still works.
pub fn operations(plan: &Plan) -> Vec<Op> {
    let mut model = Model::boot();
    let mut ops = PREFIX.to_vec();
    for op in &ops {
        model.apply(*op);
    }
    let mut rng = plan.seed | 1;
    for _ in 0..plan.random_ops {
        let choices = model.choices();
        let op = choices[(next(&mut rng) % choices.len() as u64) as usize];
        model.apply(op);
        ops.push(op);
    }
    if model.0[1] == Stage::Offline {
        ops.push(Op::Online(1));
    }
    ops.extend([Op::Offline(1), Op::Online(1)]);
    ops
}

/// CPU plug events of a run of `ops` on a machine that boots with
/// `boot_cpus`: every CPU QEMU creates, the boot CPUs and every hot-add
/// (a refused CPU too: QEMU made it before the guest said no).
pub fn plug_events(boot_cpus: usize, ops: &[Op]) -> usize {
    boot_cpus + ops.iter().filter(|o| matches!(o, Op::Add { .. })).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::qemu::Accel;
    use crate::scenarios::cpuhp_qmp::{plan_for, MAX_CPUS, PLAN};

    #[test]
    fn the_plan_is_fixed_valid_and_refuses_one_cpu() {
        for plan in [PLAN, plan_for(Accel::Tcg, None), plan_for(Accel::Kvm, Some(99))] {
            let ops = operations(&plan);
            assert_eq!(ops, operations(&plan), "the same seed gives the same run");
            assert_eq!(ops[..PREFIX.len()], PREFIX);
            let random = PREFIX.len()..PREFIX.len() + plan.random_ops;
            // Replayed on the model, every random operation is one of the
            // allowed ones.
            let mut m = Model::boot();
            let mut ejected = [false; SLOTS];
            let (mut fresh_adds, mut re_adds) = (0, 0);
            for (i, op) in ops.iter().enumerate() {
                if random.contains(&i) {
                    assert!(m.choices().contains(op), "{op:?} not allowed in {m:?}");
                    match op {
                        Op::Add { slot, .. } if ejected[*slot] => re_adds += 1,
                        Op::Add { .. } => fresh_adds += 1,
                        _ => {}
                    }
                }
                if let Op::Remove(s) = op {
                    ejected[*s] = true;
                }
                if *op == Op::RefusedRemove(2) {
                    assert_eq!(m.0[2], Stage::Online, "CPU 2 must be online for the refused eject");
                }
                m.apply(*op);
                if i == 1 {
                    let mut want = Model::boot();
                    want.0[2] = Stage::Online;
                    want.0[REFUSED_SLOT] = Stage::Offline;
                    assert_eq!(m, want);
                }
            }
            assert!(fresh_adds > 0 && re_adds > 0, "{fresh_adds} fresh adds, {re_adds} into ejected slots");
            for kind in [Op::Remove(0), Op::Online(0), Op::Offline(0)] {
                let same = |o: &Op| std::mem::discriminant(o) == std::mem::discriminant(&kind);
                assert!(ops[random.clone()].iter().any(same), "{kind:?} among the random operations");
            }
            assert_eq!(&ops[ops.len() - 2..], [Op::Offline(1), Op::Online(1)]);
            assert_ne!(operations(&Plan { seed: plan.seed + 1, ..plan }), ops);
        }
    }

    #[test]
    fn every_seed_fits_the_tcg_plug_budget() {
        // The bound of `SLOTS`' comment, checked: no seed plans more CPU
        // plug events than `maxcpus` allows.
        let most = (0..2000).map(|seed| plug_events(BOOT_CPUS, &operations(&Plan { seed, ..PLAN }))).max().unwrap();
        // After the prefix slots 0, 1 and 2 hold CPUs.
        let empty_after_prefix = SLOTS - Model::boot().present().len() - 1;
        assert!(most <= plug_events(BOOT_CPUS, &PREFIX) + (empty_after_prefix + PLAN.random_ops) / 2, "{most}");
        assert!(most <= 37, "{most}");
        assert!(most <= MAX_CPUS as usize, "{most}");
    }

    #[test]
    fn plug_events_count_boot_cpus_and_every_add() {
        assert_eq!(plug_events(2, &[]), 2);
        assert_eq!(plug_events(2, &PREFIX), 5);
        assert_eq!(plug_events(1, &[Op::Add { slot: 1, without: Some("sse4.2") }, Op::Remove(1), Op::Online(1)]), 2);
    }

    #[test]
    fn choices_never_touch_the_boot_cpu_or_remove_boot_cpus() {
        let m = Model::boot();
        let mut want = vec![Op::Offline(1)];
        want.extend((2..SLOTS).map(|slot| Op::Add { slot, without: None }));
        assert_eq!(m.choices(), want);
        let mut m = Model::boot();
        m.0[1] = Stage::Offline;
        m.0[2] = Stage::Offline;
        m.0[3] = Stage::Online;
        assert_eq!(&m.choices()[..5], [Op::Online(1), Op::Online(2), Op::Remove(2), Op::Offline(3), Op::Remove(3)]);
        assert_eq!(m.apply(Op::Remove(2)), ["removed"]);
        assert_eq!(m.apply(Op::Remove(3)), ["tear-down-started", "offline", "removed"]);
        assert_eq!(
            m.apply(Op::Add { slot: 3, without: Some("sse4.2") }),
            ["discovered", "bring-up-started", "failed", "rolled-back"]
        );
        assert_eq!(m.present(), [0, 1, 3]);
    }
}
