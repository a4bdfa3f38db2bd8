//! Physical hotplug decisions: which logical CPU an inserted APIC id is,
//! and what to tell QEMU (_OST, eject or not) after cpuhp's walk. The
//! plugin's GPE handler (plugin.rs) is the thin port I/O around these.

use cpuhp_api::code;
use plugins::acpihp::{ost_status, Ost};

/// The logical CPU (MADT index) whose APIC id is `apic`.
pub fn cpu_of_apic(apic_ids: &[u32], apic: u64) -> Option<usize> {
    apic_ids.iter().position(|&a| a as u64 == apic)
}

/// The _OST for an insertion whose `hotplug_add` returned `rc`. A CPU
/// cpuhp already counts as present is accepted: the event repeats what
/// cpuhp knows, there is nothing to undo.
pub fn insert_ost(rc: i32) -> Ost {
    match rc {
        0 | code::PRESENT => Ost::insert(ost_status::SUCCESS),
        code::NO_SUCH_CPU => Ost::insert(ost_status::INSERT_NOT_SUPPORTED),
        _ => Ost::insert(ost_status::DRIVER_LOAD_FAILURE),
    }
}

/// What to do with an eject request after `hotplug_remove` returned `rc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveAnswer {
    /// The CPU is parked (or was never ours): eject it, report EJECTED.
    Eject,
    /// Keep it; report this _OST.
    Refuse(Ost),
}

pub fn remove_answer(rc: i32) -> RemoveAnswer {
    match rc {
        // ABSENT: cpuhp never took the CPU (its insertion was refused), so
        // nothing runs there and QEMU may have it back.
        0 | code::ABSENT => RemoveAnswer::Eject,
        // A teardown refused: the CPU is back online, in use.
        code::FAILED => RemoveAnswer::Refuse(Ost::eject_refused(ost_status::DEVICE_BUSY)),
        code::BOOT_CPU | code::LAST_CPU | code::CONTROL_CPU => {
            RemoveAnswer::Refuse(Ost::eject_refused(ost_status::DEVICE_IN_USE))
        }
        _ => RemoveAnswer::Refuse(Ost::eject_refused(ost_status::EJECT_NOT_SUPPORTED)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugins::acpihp::ost_event;

    #[test]
    fn apic_ids_map_to_madt_indices() {
        assert_eq!(cpu_of_apic(&[0, 2, 4, 6], 4), Some(2));
        assert_eq!(cpu_of_apic(&[0, 1], 7), None);
        assert_eq!(cpu_of_apic(&[0, 1], 1 << 32), None);
    }

    #[test]
    fn insertion_outcomes() {
        assert_eq!(insert_ost(0), Ost { event: ost_event::DEVICE_CHECK, status: 0 });
        assert_eq!(insert_ost(code::PRESENT).status, ost_status::SUCCESS);
        assert_eq!(insert_ost(code::FAILED).status, ost_status::DRIVER_LOAD_FAILURE);
        assert_eq!(insert_ost(code::NO_SUCH_CPU).status, ost_status::INSERT_NOT_SUPPORTED);
    }

    #[test]
    fn eject_requests() {
        assert_eq!(remove_answer(0), RemoveAnswer::Eject);
        assert_eq!(remove_answer(code::ABSENT), RemoveAnswer::Eject);
        assert_eq!(
            remove_answer(code::FAILED),
            RemoveAnswer::Refuse(Ost { event: ost_event::EJECT_REQUEST, status: ost_status::DEVICE_BUSY })
        );
        assert_eq!(remove_answer(code::BOOT_CPU), RemoveAnswer::Refuse(Ost::eject_refused(ost_status::DEVICE_IN_USE)));
        assert_eq!(
            remove_answer(code::NO_SUCH_CPU),
            RemoveAnswer::Refuse(Ost::eject_refused(ost_status::EJECT_NOT_SUPPORTED))
        );
    }
}
