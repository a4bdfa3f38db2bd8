//! Idle work: what one plugin runs on every online CPU that has nothing
//! else to do (vmx-plugin runs its vCPUs there, a slice at a time).

use super::{caller_mut, guard, mark_failed, other_holder, Error, State, REG};
use plugins::IdleFn;

/// Makes `f` plugin `id`'s idle work. As with the CPU describer, the
/// version a swap replaces keeps its own until the swap commits; any other
/// active plugin's is refused.
pub fn set(id: u64, f: IdleFn) -> Result<(), Error> {
    let mut r = REG.lock();
    if let Some(other) = other_holder(&r, id, |p| p.idle.is_some()) {
        return Err(Error::IdleTaken(other));
    }
    caller_mut(&mut r, id)?.idle = Some(f);
    Ok(())
}

/// Drops plugin `id`'s idle work; false if it had none.
pub fn clear(id: u64) -> bool {
    REG.lock().plugins.iter_mut().find(|p| p.id == id).and_then(|p| p.idle.take()).is_some()
}

/// Runs the active idle work on `cpu`, which has interrupts off; true if
/// it did some. A panic in it marks its plugin failed (then no CPU runs it
/// again).
pub fn run(cpu: u32) -> bool {
    // Unstoppable from the lookup to the end of the call: a swap or unload
    // stops the world before it frees the plugin, so neither `f` nor the
    // name can go away in between.
    crate::smp::enter_unstoppable();
    let found = REG
        .lock()
        .plugins
        .iter()
        .filter(|p| p.state == State::Active)
        .find_map(|p| Some((p.id, p.name.as_str() as *const str, p.idle?)));
    let did = found.is_some_and(|(id, name, f)| {
        // SAFETY: the plugin record, and so its name, outlives this
        // unstoppable section (see above).
        let name = unsafe { &*name };
        match guard::call(id, name, || f(cpu)) {
            Ok(code) => code == 1,
            Err(message) => {
                mark_failed(id, &message);
                false
            }
        }
    });
    crate::smp::exit_unstoppable();
    did
}
