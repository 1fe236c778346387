//! What the forwarder ([`super::forward`]) has queued and not yet delivered, per shard and per
//! session, and the seq a checkpoint may therefore save ([`Pending::settled`]).
//!
//! A seq alone does not name a dispatch: after a new session (an Identify after op 9 `false`,
//! close 4007/4009, or a Resume answered op 9) a shard's seqs start again at 1 while the old
//! session's may still be queued. So every entry carries its session's generation on the shard:
//! delivering seq 5 of one session never settles seq 5 of another, and a checkpoint of the
//! current session is held back only by that session's own dispatches (the old session's are
//! still delivered, but can no longer be resumed: Discord ended it).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// One shard's undelivered dispatches.
#[derive(Debug, Default)]
struct Lane {
    /// The session of the newest dispatch queued, and its generation on this shard.
    session: Option<Arc<str>>,
    generation: u64,
    /// `(generation, seq)` of every dispatch queued or in flight, in the order queued.
    queue: VecDeque<(u64, u64)>,
}

/// A queued dispatch's place: what [`Pending::settle`] takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub shard: u32,
    generation: u64,
    pub seq: u64,
}

/// Every shard's undelivered dispatches.
#[derive(Debug, Default)]
pub struct Pending {
    lanes: HashMap<u32, Lane>,
}

impl Pending {
    /// Dispatch `seq` of `session` on `shard` is queued.
    pub fn push(&mut self, shard: u32, session: Option<&str>, seq: u64) -> Ticket {
        let lane = self.lanes.entry(shard).or_default();
        if lane.session.as_deref() != session {
            lane.session = session.map(Arc::from);
            lane.generation += 1;
        }
        lane.queue.push_back((lane.generation, seq));
        Ticket {
            shard,
            generation: lane.generation,
            seq,
        }
    }

    /// The dispatch of `ticket` reached the endpoint.
    pub fn settle(&mut self, ticket: Ticket) {
        let Some(lane) = self.lanes.get_mut(&ticket.shard) else {
            return;
        };
        if let Some(at) = lane
            .queue
            .iter()
            .position(|&entry| entry == (ticket.generation, ticket.seq))
        {
            lane.queue.remove(at);
        }
        if lane.queue.is_empty() {
            self.lanes.remove(&ticket.shard);
        }
    }

    /// The seq up to which `shard`'s current session reached the endpoint, given that the handler
    /// finished up to `handled` of it: just before its oldest dispatch still queued or in flight.
    /// The current session is the one of the newest dispatch queued (the handler queues before
    /// it returns, so before `handled` can name it).
    pub fn settled(&self, shard: u32, handled: u64) -> u64 {
        let Some(lane) = self.lanes.get(&shard) else {
            return handled;
        };
        let oldest = lane
            .queue
            .iter()
            .filter(|(generation, _)| *generation == lane.generation)
            .map(|&(_, seq)| seq)
            .min();
        match oldest {
            Some(oldest) => handled.min(oldest.saturating_sub(1)),
            None => handled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_sessions_checkpoint_waits_for_its_own_dispatches_behind_the_old_ones() {
        let mut pending = Pending::default();
        let old: Vec<Ticket> = (490..=500)
            .map(|seq| pending.push(5, Some("one"), seq))
            .collect();
        // Session two (seqs from 1 again) queued behind what is left of session one.
        let two: Vec<Ticket> = (1..=33)
            .map(|seq| pending.push(5, Some("two"), seq))
            .collect();
        assert_eq!(
            pending.settled(5, 33),
            0,
            "none of session two reached the endpoint: a checkpoint saves nothing of it"
        );
        for ticket in old {
            pending.settle(ticket);
        }
        assert_eq!(
            pending.settled(5, 33),
            0,
            "session one's delivery settles none of two"
        );
        for ticket in &two[..10] {
            pending.settle(*ticket);
        }
        assert_eq!(pending.settled(5, 33), 10);
        for ticket in &two[10..] {
            pending.settle(*ticket);
        }
        assert_eq!(pending.settled(5, 33), 33);
    }

    #[test]
    fn delivering_a_seq_of_one_session_never_settles_the_same_seq_of_another() {
        let mut pending = Pending::default();
        let one = [
            pending.push(1, Some("one"), 4),
            pending.push(1, Some("one"), 5),
        ];
        let two = [
            pending.push(1, Some("two"), 4),
            pending.push(1, Some("two"), 5),
        ];
        pending.settle(one[0]);
        pending.settle(one[1]);
        assert_eq!(
            pending.settled(1, 5),
            3,
            "session two's 4 and 5 are still queued"
        );
        pending.settle(two[0]);
        assert_eq!(pending.settled(1, 5), 4);
        pending.settle(two[1]);
        assert_eq!(pending.settled(1, 5), 5);
        assert!(pending.lanes.is_empty(), "nothing left behind");
    }

    #[test]
    fn the_old_sessions_dispatches_do_not_hold_the_new_ones_checkpoint_back() {
        let mut pending = Pending::default();
        let stuck = pending.push(2, Some("one"), 7);
        let first = pending.push(2, Some("two"), 1);
        pending.settle(first);
        assert_eq!(
            pending.settled(2, 1),
            1,
            "session one's 7 is not session two's"
        );
        pending.settle(stuck);
        assert_eq!(pending.settled(2, 1), 1);
        assert_eq!(pending.settled(3, 9), 9, "another shard is not held back");
    }

    #[test]
    fn a_resumed_session_keeps_its_generation() {
        let mut pending = Pending::default();
        let a = pending.push(0, Some("one"), 11);
        let b = pending.push(0, Some("one"), 12);
        assert_eq!(pending.settled(0, 12), 10);
        pending.settle(a);
        assert_eq!(pending.settled(0, 12), 11);
        pending.settle(b);
        assert_eq!(pending.settled(0, 12), 12);
    }
}
