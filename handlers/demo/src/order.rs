//! Per-guild order of the messages a replica handled, without I/O. Message ids are snowflakes
//! (their top bits are the creation time), so within a guild each MESSAGE_CREATE should carry a
//! larger id than the last one: a smaller one on a first delivery is a reordering.

use std::collections::HashMap;

/// What one observation was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Later than everything seen in its guild.
    InOrder,
    /// Not later, but a redelivery (its first delivery may have been handled): expected.
    Repeat,
    /// Not later, on its first delivery: the bus or the handler broke the guild's order.
    Reordered,
}

/// The last message id seen per guild.
#[derive(Debug, Default)]
pub struct OrderBook {
    last: HashMap<u64, u64>,
}

impl OrderBook {
    /// Records message `id` of `guild`, delivered for the first time or not.
    pub fn observe(&mut self, guild: u64, id: u64, redelivered: bool) -> Seen {
        let last = self.last.entry(guild).or_insert(0);
        if id > *last {
            *last = id;
            Seen::InOrder
        } else if redelivered {
            Seen::Repeat
        } else {
            Seen::Reordered
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_ids_are_in_order_earlier_ones_are_reorderings_unless_redelivered() {
        let mut book = OrderBook::default();
        assert_eq!(book.observe(1, 10, false), Seen::InOrder);
        assert_eq!(book.observe(1, 20, false), Seen::InOrder);
        assert_eq!(book.observe(2, 5, false), Seen::InOrder, "guilds are apart");
        assert_eq!(book.observe(1, 20, true), Seen::Repeat);
        assert_eq!(book.observe(1, 15, false), Seen::Reordered);
        assert_eq!(book.observe(1, 25, false), Seen::InOrder);
    }
}
