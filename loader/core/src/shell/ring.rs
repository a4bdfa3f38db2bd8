//! The queue between the COM1 receive interrupt and the shell loop: fixed
//! size (it is filled with interrupts off) and honest about loss. A loss is
//! queued as an item in the byte stream, exactly where it happened, so the
//! editor refuses the one line that lost bytes instead of running the rest.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    Byte(u8),
    /// One or more bytes were dropped here.
    Lost,
}

/// A slot value no byte can have.
const LOST: u16 = 0x100;

pub struct Ring<const N: usize> {
    slots: [u16; N],
    head: usize,
    len: usize,
}

impl<const N: usize> Ring<N> {
    pub const fn new() -> Self {
        Ring { slots: [0; N], head: 0, len: 0 }
    }

    /// Queues `b`; when full, the newest slot becomes a loss instead (that
    /// byte is dropped too, but the loss is recorded where it happened).
    pub fn push(&mut self, b: u8) {
        self.put(b as u16);
    }

    /// Records bytes lost before they reached the queue (a UART overrun).
    pub fn mark_lost(&mut self) {
        self.put(LOST);
    }

    fn put(&mut self, v: u16) {
        if self.len == N {
            self.slots[(self.head + N - 1) % N] = LOST;
            return;
        }
        // Consecutive losses are one loss.
        if v == LOST && self.len > 0 && self.slots[(self.head + self.len - 1) % N] == LOST {
            return;
        }
        self.slots[(self.head + self.len) % N] = v;
        self.len += 1;
    }

    pub fn pop(&mut self) -> Option<Item> {
        if self.len == 0 {
            return None;
        }
        let v = self.slots[self.head];
        self.head = (self.head + 1) % N;
        self.len -= 1;
        Some(if v == LOST { Item::Lost } else { Item::Byte(v as u8) })
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn drain<const N: usize>(r: &mut Ring<N>) -> Vec<Item> {
        core::iter::from_fn(|| r.pop()).collect()
    }

    #[test]
    fn fifo_order_across_the_wrap() {
        let mut r = Ring::<4>::new();
        for round in 0..5u8 {
            r.push(round);
            r.push(round + 100);
            assert_eq!(drain(&mut r), [Item::Byte(round), Item::Byte(round + 100)]);
        }
        assert!(r.is_empty());
    }

    #[test]
    fn overflow_is_recorded_where_it_happened() {
        let mut r = Ring::<3>::new();
        (1..=5).for_each(|b| r.push(b));
        assert_eq!(drain(&mut r), [Item::Byte(1), Item::Byte(2), Item::Lost]);
        // Bytes after a drained loss queue normally again.
        r.push(9);
        r.mark_lost();
        r.mark_lost();
        r.push(10);
        assert_eq!(drain(&mut r), [Item::Byte(9), Item::Lost, Item::Byte(10)]);
    }
}
