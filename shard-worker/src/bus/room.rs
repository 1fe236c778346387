//! The bound on what is in flight to the bus, and what is settled.
//!
//! A dispatch is **in flight** from the moment its shard takes it until the bus acknowledged it
//! (or it was withheld or dropped): then it is **settled**. Its shard's checkpoint may not pass
//! a dispatch in flight ([`Room::settled`]), so a crash replays it. In flight is bounded per
//! shard and per process, in dispatches and in bytes; at the bound, or while the bus refuses,
//! a shard stops reading the gateway ([`Room::has_room`]) until [`RoomWait`] resolves. Memory
//! stays bounded by the limits plus one dispatch per shard (the one that reached the bound).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::metrics::BusMetrics;

/// How much may be in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Dispatches of the process.
    pub messages: usize,
    /// Payload bytes of the process.
    pub bytes: usize,
    /// Dispatches of one shard.
    pub shard_messages: usize,
}

/// One shard's dispatches in flight.
#[derive(Debug, Default)]
struct ShardFlight {
    /// Their seqs, in the order taken.
    seqs: VecDeque<u64>,
    /// The shard's session id, shared by its dispatches.
    session: Option<Arc<str>>,
}

#[derive(Debug, Default)]
struct Flight {
    shards: HashMap<u32, ShardFlight>,
    messages: usize,
    bytes: usize,
}

/// Whether a shard with `shard_messages` in flight may read its next dispatch, with `messages`
/// and `bytes` in flight in the process and the bus `accepting` or not.
fn may_read(
    limits: &Limits,
    messages: usize,
    bytes: usize,
    shard_messages: usize,
    accepting: bool,
) -> bool {
    accepting
        && shard_messages < limits.shard_messages
        && messages < limits.messages
        && bytes < limits.bytes
}

/// The seq a checkpoint may save for a shard that took every dispatch up to `handled`, with
/// `in_flight` not settled: just before the oldest one in flight. The smallest, not the first:
/// after a new session (an Identify) seqs start again at 1 while the old session's may still be
/// in flight.
fn settled_seq(in_flight: &VecDeque<u64>, handled: u64) -> u64 {
    match in_flight.iter().min() {
        Some(&oldest) => handled.min(oldest.saturating_sub(1)),
        None => handled,
    }
}

/// In flight, per shard and per process (shared by the shards and the publisher).
#[derive(Debug)]
pub struct Room {
    limits: Limits,
    flight: Mutex<Flight>,
    /// Whether the bus accepts publishes: false from a failed publish (or a lost connection)
    /// until the next acknowledgement.
    accepting: AtomicBool,
    /// Signalled when room may have come back.
    changed: Notify,
    metrics: BusMetrics,
}

impl Room {
    pub fn new(limits: Limits, metrics: BusMetrics) -> Self {
        Self {
            limits,
            flight: Mutex::new(Flight::default()),
            accepting: AtomicBool::new(true),
            changed: Notify::new(),
            metrics,
        }
    }

    pub fn metrics(&self) -> &BusMetrics {
        &self.metrics
    }

    fn flight(&self) -> MutexGuard<'_, Flight> {
        self.flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `shard` took dispatch `seq` of `bytes` payload bytes in session `session`: in flight
    /// until [`Room::settle`]. Returns the session id to carry (shared with the shard's other
    /// dispatches) and whether the shard may read its next dispatch.
    pub fn admit(
        &self,
        shard: u32,
        seq: u64,
        bytes: usize,
        session: Option<&str>,
    ) -> (Option<Arc<str>>, bool) {
        let mut flight = self.flight();
        flight.messages += 1;
        flight.bytes += bytes;
        let (messages, total_bytes) = (flight.messages, flight.bytes);
        let lane = flight.shards.entry(shard).or_default();
        lane.seqs.push_back(seq);
        if lane.session.as_deref() != session {
            lane.session = session.map(Arc::from);
        }
        let session = lane.session.clone();
        let room = may_read(
            &self.limits,
            messages,
            total_bytes,
            lane.seqs.len(),
            self.accepting(),
        );
        drop(flight);
        self.metrics.in_flight.inc();
        self.metrics.in_flight_bytes.inc_by(bytes as i64);
        (session, room)
    }

    /// Dispatch `seq` of `shard` (of `bytes`) is settled.
    pub fn settle(&self, shard: u32, seq: u64, bytes: usize) {
        let mut flight = self.flight();
        let Some(lane) = flight.shards.get_mut(&shard) else {
            return;
        };
        let Some(at) = lane.seqs.iter().position(|&s| s == seq) else {
            return;
        };
        lane.seqs.remove(at);
        flight.messages = flight.messages.saturating_sub(1);
        flight.bytes = flight.bytes.saturating_sub(bytes);
        drop(flight);
        self.metrics.in_flight.dec();
        self.metrics.in_flight_bytes.dec_by(bytes as i64);
        self.changed.notify_waiters();
    }

    /// Whether `shard` may read its next dispatch now.
    pub fn has_room(&self, shard: u32) -> bool {
        let flight = self.flight();
        let shard_messages = flight.shards.get(&shard).map_or(0, |l| l.seqs.len());
        may_read(
            &self.limits,
            flight.messages,
            flight.bytes,
            shard_messages,
            self.accepting(),
        )
    }

    /// The seq up to which `shard`'s dispatches are settled, given that it took every one up
    /// to `handled`.
    pub fn settled(&self, shard: u32, handled: u64) -> u64 {
        match self.flight().shards.get(&shard) {
            Some(lane) => settled_seq(&lane.seqs, handled),
            None => handled,
        }
    }

    pub fn accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// Records whether the bus accepts publishes; returns whether that changed.
    pub fn set_accepting(&self, accepting: bool) -> bool {
        let changed = self.accepting.swap(accepting, Ordering::AcqRel) != accepting;
        if changed {
            self.metrics.accepting.set(i64::from(accepting));
            if accepting {
                self.changed.notify_waiters();
            }
        }
        changed
    }

    /// Resolves once `shard` has room again. Counted as a paused shard while it waits.
    pub fn wait(self: &Arc<Self>, shard: u32) -> RoomWait {
        let room = Arc::clone(self);
        let paused = Paused::new(&self.metrics);
        Box::pin(async move {
            let _paused = paused;
            loop {
                let changed = room.changed.notified();
                tokio::pin!(changed);
                // Registered before looking, so a change in between is not missed.
                changed.as_mut().enable();
                if room.has_room(shard) {
                    return;
                }
                changed.await;
            }
        })
    }
}

/// A shard waiting for room ([`Room::wait`]).
pub type RoomWait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Counts a paused shard for as long as it lives.
struct Paused(BusMetrics);

impl Paused {
    fn new(metrics: &BusMetrics) -> Self {
        metrics.paused_shards.inc();
        Self(metrics.clone())
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        self.0.paused_shards.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        messages: 4,
        bytes: 1_000,
        shard_messages: 2,
    };

    #[test]
    fn any_bound_reached_or_a_refusing_bus_stops_reading() {
        assert!(may_read(&LIMITS, 0, 0, 0, true));
        assert!(may_read(&LIMITS, 3, 999, 1, true));
        assert!(!may_read(&LIMITS, 1, 0, 2, true), "the shard's bound");
        assert!(!may_read(&LIMITS, 4, 0, 0, true), "the process's bound");
        assert!(!may_read(&LIMITS, 1, 1_000, 0, true), "bytes");
        assert!(!may_read(&LIMITS, 0, 0, 0, false), "the bus refuses");
    }

    #[test]
    fn a_checkpoint_stops_before_the_oldest_dispatch_in_flight() {
        assert_eq!(settled_seq(&VecDeque::new(), 10), 10, "nothing in flight");
        assert_eq!(settled_seq(&VecDeque::from([7, 8, 10]), 10), 6);
        assert_eq!(settled_seq(&VecDeque::from([9, 7]), 10), 6, "out of order");
        assert_eq!(
            settled_seq(&VecDeque::from([5000, 2]), 3),
            1,
            "a new session's seqs behind an old one's"
        );
        assert_eq!(settled_seq(&VecDeque::from([1]), 1), 0);
    }

    #[tokio::test]
    async fn a_paused_shard_resumes_when_its_dispatches_settle() {
        let metrics = BusMetrics::unregistered();
        let room = Arc::new(Room::new(LIMITS, metrics.clone()));
        assert_eq!(room.admit(3, 1, 10, Some("s")), (Some("s".into()), true));
        let (session, more) = room.admit(3, 2, 10, Some("s"));
        assert!(!more, "at the shard's bound");
        assert_eq!(session.as_deref(), Some("s"));
        assert!(room.has_room(4), "another shard reads on");
        assert_eq!(room.settled(3, 2), 0);
        let wait = room.wait(3);
        assert_eq!(metrics.paused_shards.get(), 1);
        let waiter = tokio::spawn(wait);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        room.settle(3, 1, 10);
        waiter.await.expect("resumed");
        assert_eq!(metrics.paused_shards.get(), 0);
        assert_eq!(room.settled(3, 2), 1);
        assert_eq!(metrics.in_flight.get(), 1);
        assert_eq!(metrics.in_flight_bytes.get(), 10);
    }

    #[tokio::test]
    async fn a_refusing_bus_pauses_every_shard_until_it_accepts() {
        let room = Arc::new(Room::new(LIMITS, BusMetrics::unregistered()));
        assert!(room.set_accepting(false));
        assert!(!room.set_accepting(false), "no change");
        assert!(!room.has_room(1));
        let waiter = tokio::spawn(room.wait(1));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert!(room.set_accepting(true));
        waiter.await.expect("resumed");
    }
}
