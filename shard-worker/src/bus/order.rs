//! What must reach the bus in gateway order, and the queues that keep it so.
//!
//! A guild's events must be stored in the order the gateway sent them (the handlers promise
//! per-guild order). Publishes may be pipelined, but a publish that fails cannot be put back in
//! front of later ones already stored: after a lost connection, messages still in the client's
//! queue go out on the new one before the retry of the one lost with the old. So at most one
//! publish per [`OrderKey`] is in flight, and the next event of a key starts only once the
//! previous one is acknowledged; events of different keys are pipelined. Events without a guild
//! (READY, direct messages) keep their shard's order.

use std::collections::{HashMap, VecDeque};

/// What an event stays in order with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderKey {
    /// The events of one guild (they all come from one shard of a layout).
    Guild(u64),
    /// The events without a guild of one shard.
    Unguilded { shard: u32 },
}

impl OrderKey {
    pub fn of(guild: Option<u64>, shard: u32) -> Self {
        match guild {
            Some(guild) => Self::Guild(guild),
            None => Self::Unguilded { shard },
        }
    }
}

/// Items waiting behind the one in flight of their key. A key is present while one of its
/// items is in flight.
#[derive(Debug)]
pub struct Queues<T> {
    busy: HashMap<OrderKey, VecDeque<T>>,
}

impl<T> Default for Queues<T> {
    fn default() -> Self {
        Self {
            busy: HashMap::new(),
        }
    }
}

impl<T> Queues<T> {
    /// `item` of `key` arrives: returned to start now when nothing of its key is in flight,
    /// else kept behind it.
    pub fn arrive(&mut self, key: OrderKey, item: T) -> Option<T> {
        match self.busy.get_mut(&key) {
            Some(queue) => {
                queue.push_back(item);
                None
            }
            None => {
                self.busy.insert(key, VecDeque::new());
                Some(item)
            }
        }
    }

    /// The item of `key` in flight is done: the next one of `key` to start, if any.
    pub fn done(&mut self, key: OrderKey) -> Option<T> {
        let queue = self.busy.get_mut(&key)?;
        let next = queue.pop_front();
        if next.is_none() {
            self.busy.remove(&key);
        }
        next
    }

    /// Keys with an item in flight.
    pub fn in_flight(&self) -> usize {
        self.busy.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_item_per_key_in_flight_the_rest_in_arrival_order() {
        let mut q = Queues::default();
        let (a, b) = (OrderKey::Guild(1), OrderKey::Guild(2));
        assert_eq!(q.arrive(a, 1), Some(1), "idle key: start");
        assert_eq!(q.arrive(a, 2), None, "behind 1");
        assert_eq!(q.arrive(b, 3), Some(3), "another guild is not held back");
        assert_eq!(q.arrive(a, 4), None);
        assert_eq!(q.in_flight(), 2);
        assert_eq!(q.done(a), Some(2));
        assert_eq!(q.done(a), Some(4));
        assert_eq!(q.done(b), None);
        assert_eq!(q.done(a), None);
        assert_eq!(q.in_flight(), 0);
        assert_eq!(q.arrive(a, 5), Some(5), "idle again");
    }

    #[test]
    fn events_without_a_guild_keep_their_shards_order_only() {
        assert_eq!(OrderKey::of(Some(7), 3), OrderKey::Guild(7));
        assert_eq!(OrderKey::of(None, 3), OrderKey::Unguilded { shard: 3 });
        assert_ne!(OrderKey::of(None, 3), OrderKey::of(None, 4));
    }
}
