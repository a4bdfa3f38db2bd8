//! Bookkeeping for the SCI and deferred work (the kernel's `acpi::sci` module
//! does the hardware): which owner handles which GPE, and a bounded FIFO of
//! work items that interrupt context queues and thread context runs. Pure,
//! so that the ownership rules are host-tested.
//!
//! Owner 0 is the loader itself; plugins are their registry ids. A plugin
//! that goes away (unload, swap, failure) takes its handlers and queued
//! work with it ([`GpeTable::drop_owner`], [`Queue::drop_owner`]).

/// One call to make later: `payload` is what the binary calls (a function
/// and its context), `owner` who asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Work<T> {
    pub owner: u64,
    pub payload: T,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The queue holds as much as it can; the caller may retry later.
    Full,
    /// The GPE is outside the FADT's GPE0 block.
    NoSuchGpe(u32),
    /// Another owner (or the same one) already handles this GPE.
    GpeTaken(u32),
    /// The GPE has no handler of this owner.
    NotOwner(u32),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Full => write!(f, "the deferred-work queue is full"),
            Error::NoSuchGpe(g) => write!(f, "GPE {g} is not in the GPE0 block"),
            Error::GpeTaken(g) => write!(f, "GPE {g} already has a handler"),
            Error::NotOwner(g) => write!(f, "GPE {g} has no handler of the caller's"),
        }
    }
}

/// A bounded FIFO: deferred work must not allocate (it is queued from
/// interrupt context).
pub struct Queue<T: Copy, const N: usize> {
    items: [Option<Work<T>>; N],
    head: usize,
    len: usize,
}

impl<T: Copy, const N: usize> Queue<T, N> {
    pub const fn new() -> Self {
        Queue { items: [None; N], head: 0, len: 0 }
    }

    pub fn push(&mut self, w: Work<T>) -> Result<(), Error> {
        if self.len == N {
            return Err(Error::Full);
        }
        self.items[(self.head + self.len) % N] = Some(w);
        self.len += 1;
        Ok(())
    }

    pub fn pop(&mut self) -> Option<Work<T>> {
        while self.len > 0 {
            let w = self.items[self.head].take();
            self.head = (self.head + 1) % N;
            self.len -= 1;
            // Dropped items leave holes; skip them.
            if w.is_some() {
                return w;
            }
        }
        None
    }

    /// Forgets `owner`'s queued work; returns how much.
    pub fn drop_owner(&mut self, owner: u64) -> usize {
        let mut n = 0;
        for i in 0..self.len {
            let slot = &mut self.items[(self.head + i) % N];
            if slot.is_some_and(|w| w.owner == owner) {
                *slot = None;
                n += 1;
            }
        }
        n
    }
}

impl<T: Copy, const N: usize> Default for Queue<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

/// One handler per GPE, for up to 64 GPEs (QEMU's blocks have 16 or 64).
pub struct GpeTable<T: Copy> {
    slots: [Option<Work<T>>; 64],
    /// GPEs the FADT's block has.
    count: u32,
}

impl<T: Copy> GpeTable<T> {
    pub const fn new(count: u32) -> Self {
        GpeTable { slots: [None; 64], count: if count > 64 { 64 } else { count } }
    }

    pub fn register(&mut self, gpe: u32, w: Work<T>) -> Result<(), Error> {
        let slot = self.slots.get_mut(gpe as usize).filter(|_| gpe < self.count).ok_or(Error::NoSuchGpe(gpe))?;
        if slot.is_some() {
            return Err(Error::GpeTaken(gpe));
        }
        *slot = Some(w);
        Ok(())
    }

    pub fn unregister(&mut self, gpe: u32, owner: u64) -> Result<(), Error> {
        let slot = self.slots.get_mut(gpe as usize).ok_or(Error::NoSuchGpe(gpe))?;
        match slot {
            Some(w) if w.owner == owner => {
                *slot = None;
                Ok(())
            }
            _ => Err(Error::NotOwner(gpe)),
        }
    }

    /// Removes `owner`'s handlers; returns their GPEs as a mask (to
    /// disable in hardware).
    pub fn drop_owner(&mut self, owner: u64) -> u64 {
        let mut mask = 0;
        for (gpe, slot) in self.slots.iter_mut().enumerate() {
            if slot.is_some_and(|w| w.owner == owner) {
                *slot = None;
                mask |= 1 << gpe;
            }
        }
        mask
    }

    pub fn handler(&self, gpe: u32) -> Option<Work<T>> {
        *self.slots.get(gpe as usize)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(owner: u64, payload: u32) -> Work<u32> {
        Work { owner, payload }
    }

    #[test]
    fn the_queue_is_fifo_and_bounded() {
        let mut q: Queue<u32, 3> = Queue::new();
        for i in 0..3 {
            q.push(w(1, i)).unwrap();
        }
        assert_eq!(q.push(w(1, 9)), Err(Error::Full));
        assert_eq!(q.pop(), Some(w(1, 0)));
        q.push(w(2, 3)).unwrap();
        let rest: std::vec::Vec<_> = core::iter::from_fn(|| q.pop()).map(|w| w.payload).collect();
        assert_eq!(rest, [1, 2, 3]);
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn an_owner_takes_its_queued_work_along() {
        let mut q: Queue<u32, 4> = Queue::new();
        for (o, p) in [(1, 0), (2, 1), (1, 2), (2, 3)] {
            q.push(w(o, p)).unwrap();
        }
        assert_eq!(q.drop_owner(1), 2);
        assert_eq!(q.pop(), Some(w(2, 1)));
        // The holes free their room once passed.
        q.push(w(3, 4)).unwrap();
        q.push(w(3, 5)).unwrap();
        assert_eq!(q.pop(), Some(w(2, 3)));
        assert_eq!(q.pop(), Some(w(3, 4)));
        assert_eq!(q.pop(), Some(w(3, 5)));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn one_handler_per_gpe_within_the_block() {
        let mut t: GpeTable<u32> = GpeTable::new(16);
        t.register(2, w(7, 0)).unwrap();
        assert_eq!(t.register(2, w(8, 1)), Err(Error::GpeTaken(2)));
        assert_eq!(t.register(16, w(8, 1)), Err(Error::NoSuchGpe(16)));
        assert_eq!(t.register(99, w(8, 1)), Err(Error::NoSuchGpe(99)));
        assert_eq!(t.unregister(2, 8), Err(Error::NotOwner(2)));
        assert_eq!(t.handler(2), Some(w(7, 0)));
        t.unregister(2, 7).unwrap();
        assert_eq!(t.handler(2), None);
        assert_eq!(t.unregister(2, 7), Err(Error::NotOwner(2)));
    }

    #[test]
    fn an_owner_takes_its_handlers_along() {
        let mut t: GpeTable<u32> = GpeTable::new(64);
        t.register(2, w(7, 0)).unwrap();
        t.register(63, w(7, 0)).unwrap();
        t.register(5, w(8, 0)).unwrap();
        assert_eq!(t.drop_owner(7), 1 << 2 | 1 << 63);
        assert_eq!(t.handler(2), None);
        assert_eq!(t.handler(5), Some(w(8, 0)));
        assert_eq!(t.drop_owner(7), 0);
    }
}
