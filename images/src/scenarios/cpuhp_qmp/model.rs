//! The operations a run plays, and the model of the machine they are
//! checked against.

use super::{Plan, BOOT_CPUS, DROPPED_FEATURE, REFUSED_SLOT, SLOTS, SWAPPED_TO};

/// Fixed operations before the random ones, besides the re-add.
const PREFIX: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// device_add into slot (cpu-index) `slot`, with `features` switched off.
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

/// The expected state of the machine: one stage per slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model(pub [Stage; SLOTS]);

impl Model {
    pub fn boot() -> Model {
        let mut s = [Stage::Absent; SLOTS];
        s[..BOOT_CPUS].fill(Stage::Online);
        Model(s)
    }

    /// Every operation allowed now. CPU 0 (the boot CPU) is never touched;
    /// only hot-pluggable slots are added and removed, since QEMU refuses
    /// to unplug the CPUs of `-smp` on some machine versions.
    /// `plug`: hot-adds and removals are allowed (without, online and
    /// offline only).
    pub fn choices(&self, plug: bool) -> Vec<Op> {
        let mut ops = Vec::new();
        for (slot, stage) in self.0.iter().enumerate().skip(1) {
            let pluggable = slot >= BOOT_CPUS;
            match stage {
                Stage::Absent if plug => ops.push(Op::Add { slot, without: None }),
                Stage::Absent => {}
                Stage::Online => ops.push(Op::Offline(slot)),
                Stage::Offline => ops.push(Op::Online(slot)),
            }
            if plug && pluggable && *stage != Stage::Absent {
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

/// The whole sequence. Every hot-add of the fixed part comes before the
/// first eject (see [`Plan::readd`]): a CPU into slot 2 (online), the CPU
/// without [`DROPPED_FEATURE`] into [`REFUSED_SLOT`] (refused, it stays
/// offline and the rest goes on); then that CPU is removed and, if
/// `readd`, a full CPU takes its slot; a swap of cpuhp; `random_ops`
/// seeded operations (without `readd`, online and offline only); an eject
/// of CPU 2 refused by an injected teardown failure (then, without
/// `readd`, CPU 2's removal, an eject of an online CPU); and an
/// offline/online of CPU 1 to show the rest still works.
pub fn operations(plan: &Plan) -> Vec<Op> {
    let mut model = Model::boot();
    let mut ops = vec![
        Op::Add { slot: 2, without: None },
        Op::Add { slot: REFUSED_SLOT, without: Some(DROPPED_FEATURE) },
        Op::Remove(REFUSED_SLOT),
    ];
    if plan.readd {
        ops.push(Op::Add { slot: REFUSED_SLOT, without: None });
    }
    ops.push(Op::Swap(SWAPPED_TO));
    for op in &ops {
        model.apply(*op);
    }
    let mut rng = plan.seed | 1;
    for _ in 0..plan.random_ops {
        let choices = model.choices(plan.readd);
        let op = choices[(next(&mut rng) % choices.len() as u64) as usize];
        model.apply(op);
        ops.push(op);
    }
    // An eject a teardown refuses, on CPU 2 brought online for it.
    match model.0[2] {
        Stage::Absent => ops.push(Op::Add { slot: 2, without: None }),
        Stage::Offline => ops.push(Op::Online(2)),
        Stage::Online => {}
    }
    ops.push(Op::RefusedRemove(2));
    if !plan.readd {
        ops.push(Op::Remove(2));
    }
    for op in &ops[PREFIX + plan.readd as usize + plan.random_ops..] {
        model.apply(*op);
    }
    if model.0[1] == Stage::Offline {
        ops.push(Op::Online(1));
    }
    ops.extend([Op::Offline(1), Op::Online(1)]);
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::qemu::Accel;
    use crate::scenarios::cpuhp_qmp::{plan_for, PLAN};

    #[test]
    fn the_plan_is_fixed_valid_and_refuses_one_cpu() {
        for plan in [PLAN, plan_for(Accel::Tcg)] {
            let ops = operations(&plan);
            assert_eq!(ops, operations(&plan), "the same seed gives the same run");
            assert_eq!(
                &ops[..3],
                [
                    Op::Add { slot: 2, without: None },
                    Op::Add { slot: REFUSED_SLOT, without: Some("sse4.2") },
                    Op::Remove(REFUSED_SLOT),
                ]
            );
            assert_eq!(ops[3] == (Op::Add { slot: REFUSED_SLOT, without: None }), plan.readd);
            let random = PREFIX + plan.readd as usize..PREFIX + plan.readd as usize + plan.random_ops;
            assert_eq!(ops[random.start - 1], Op::Swap("1.3.0"));
            // Both fixed hot-adds come before the first eject; without
            // readd no hot-add follows it.
            let first_eject = ops.iter().position(|o| matches!(o, Op::Remove(_) | Op::RefusedRemove(_))).unwrap();
            assert_eq!(first_eject, 2);
            assert_eq!(ops[first_eject..].iter().any(|o| matches!(o, Op::Add { .. })), plan.readd);
            // Replayed on the model, every random operation is one of the
            // allowed; the refused CPU stays offline until it is removed.
            let mut m = Model::boot();
            let tail = ops.iter().rposition(|o| matches!(o, Op::RefusedRemove(_))).unwrap();
            assert_eq!(ops[tail], Op::RefusedRemove(2));
            for (i, op) in ops.iter().enumerate() {
                if i == tail {
                    assert_eq!(m.0[2], Stage::Online, "CPU 2 must be online for the refused eject");
                }
                if random.contains(&i) {
                    assert!(m.choices(plan.readd).contains(op), "{op:?} not allowed in {m:?}");
                }
                m.apply(*op);
                if i == 1 {
                    assert_eq!(m, Model([Stage::Online, Stage::Online, Stage::Online, Stage::Offline]));
                }
            }
            assert_eq!(&ops[ops.len() - 2..], [Op::Offline(1), Op::Online(1)]);
            assert_eq!(ops[tail + 1] == Op::Remove(2), !plan.readd);
            for k in [Op::Online(1), Op::Offline(1), Op::Online(2), Op::Offline(2)] {
                assert!(ops[random.clone()].contains(&k), "{k:?} among the random operations");
            }
            assert_ne!(operations(&Plan { seed: 7, ..plan }), ops);
        }
        let plugs = |p: &Plan| {
            operations(p).iter().skip(PREFIX).filter(|o| matches!(o, Op::Add { .. } | Op::Remove(_))).count()
        };
        assert!(plugs(&PLAN) > 4, "KVM's random operations hot-add and remove");
        assert_eq!(plugs(&plan_for(Accel::Tcg)), 1, "TCG's only removal is CPU 2's at the end");
    }

    #[test]
    fn choices_never_touch_the_boot_cpu_or_remove_boot_cpus() {
        let m = Model::boot();
        assert_eq!(
            m.choices(true),
            [Op::Offline(1), Op::Add { slot: 2, without: None }, Op::Add { slot: 3, without: None }]
        );
        assert_eq!(m.choices(false), [Op::Offline(1)]);
        let m = Model([Stage::Online, Stage::Online, Stage::Offline, Stage::Absent]);
        assert_eq!(m.choices(false), [Op::Offline(1), Op::Online(2)]);
        let mut m = Model([Stage::Online, Stage::Offline, Stage::Offline, Stage::Online]);
        assert_eq!(m.choices(true), [Op::Online(1), Op::Online(2), Op::Remove(2), Op::Offline(3), Op::Remove(3)]);
        assert_eq!(m.apply(Op::Remove(2)), ["removed"]);
        assert_eq!(m.apply(Op::Remove(3)), ["tear-down-started", "offline", "removed"]);
        assert_eq!(
            m.apply(Op::Add { slot: 3, without: Some("sse4.2") }),
            ["discovered", "bring-up-started", "failed", "rolled-back"]
        );
        assert_eq!(m, Model([Stage::Online, Stage::Offline, Stage::Absent, Stage::Offline]));
    }
}
