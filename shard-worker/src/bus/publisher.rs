//! The publisher task: takes the dispatches every shard hands over, decides for each whether
//! and with which id this layout publishes it ([`Acting::publication`]), publishes it through
//! the [`Sink`] until the bus acknowledged it (retrying with the same id), and settles it in
//! the [`Room`]. At most one publish per guild is in flight ([`super::order`]); different guilds
//! are pipelined.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::message::Taken;
use super::metrics::{BusMetrics, ReasonLabels, ResultLabels};
use super::order::{OrderKey, Queues};
use super::room::Room;
use super::sink::{Message, Sink};
use crate::handover::acting::{Acting, Publication};

/// The first pause after a failed publish; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);
/// The longest pause between attempts: how soon after the bus is back publishing resumes.
const RETRY_MAX: Duration = Duration::from_secs(1);
/// Dispatches taken from the channel at once.
const BATCH: usize = 256;

/// Where the publisher publishes.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The subject prefix `S`.
    pub prefix: String,
    /// The number of guild partitions `P`.
    pub partitions: u32,
}

/// A dispatch whose publication ended (acknowledged, withheld or dropped).
struct Done {
    key: OrderKey,
    shard: u32,
    seq: u64,
    bytes: usize,
}

/// The publisher of one process.
pub struct Publisher<S> {
    pub sink: S,
    pub destination: Destination,
    pub room: Arc<Room>,
    pub acting: Arc<Acting>,
    pub metrics: BusMetrics,
}

impl<S: Sink> Publisher<S> {
    /// Publishes everything `taken` brings until it closes and every dispatch taken is
    /// settled. (At shutdown the caller bounds the wait: with the bus down this never ends.)
    pub async fn run(self, mut taken: mpsc::UnboundedReceiver<Taken>) {
        let mut queues = Queues::default();
        let mut publishing = FuturesUnordered::new();
        let mut batch = Vec::with_capacity(BATCH);
        let mut open = true;
        loop {
            tokio::select! {
                received = taken.recv_many(&mut batch, BATCH), if open => {
                    if received == 0 {
                        open = false;
                        continue;
                    }
                    for dispatch in batch.drain(..) {
                        if let Some(dispatch) = queues.arrive(dispatch.order_key(), dispatch) {
                            publishing.push(self.deliver(dispatch));
                        }
                    }
                }
                Some(done) = publishing.next(), if !publishing.is_empty() => {
                    self.room.settle(done.shard, done.seq, done.bytes);
                    if let Some(next) = queues.done(done.key) {
                        publishing.push(self.deliver(next));
                    }
                }
                else => break,
            }
        }
    }

    /// One dispatch: the layout's decision, then the publish until acknowledged.
    async fn deliver(&self, dispatch: Taken) -> Done {
        let done = Done {
            key: dispatch.order_key(),
            shard: dispatch.shard,
            seq: dispatch.seq,
            bytes: dispatch.data.len(),
        };
        let publication = self
            .acting
            .publication(&dispatch.event, &dispatch.data)
            .await;
        let Some(id) = dispatch.message_id(publication) else {
            if let Publication::Withheld(reason) = publication {
                self.metrics
                    .withheld
                    .get_or_create(&ReasonLabels { reason })
                    .inc();
            }
            return done;
        };
        let message = dispatch.message(&self.destination.prefix, self.destination.partitions, id);
        self.publish(&dispatch, &message).await;
        done
    }

    /// Publishes `message` until the bus acknowledges it, or drops it when no retry can help.
    async fn publish(&self, dispatch: &Taken, message: &Message) {
        let mut pause = RETRY_FIRST;
        let mut first = true;
        loop {
            if !first {
                self.metrics.publish_retries.inc();
            }
            first = false;
            let result = if self.sink.connected() {
                let started = Instant::now();
                let result = self.sink.publish(message).await;
                if result.is_ok() {
                    self.metrics
                        .publish_duration
                        .observe(started.elapsed().as_secs_f64());
                }
                result
            } else {
                Err(super::sink::PublishError::retry(
                    "disconnected",
                    "not connected to the bus",
                ))
            };
            match result {
                Ok(stored) => {
                    let result = if stored.duplicate {
                        "duplicate"
                    } else {
                        "stored"
                    };
                    self.metrics
                        .published
                        .get_or_create(&ResultLabels { result })
                        .inc();
                    if self.room.set_accepting(true) {
                        info!("the bus accepts publishes again; shards read on");
                    }
                    return;
                }
                Err(e) => {
                    self.metrics
                        .publish_errors
                        .get_or_create(&ReasonLabels { reason: e.reason })
                        .inc();
                    if e.permanent {
                        self.metrics
                            .dropped
                            .get_or_create(&ReasonLabels { reason: e.reason })
                            .inc();
                        error!(
                            shard_id = dispatch.shard, seq = dispatch.seq, event = %dispatch.event,
                            bytes = dispatch.data.len(), error = %e,
                            "the bus can never take this dispatch: dropped (raise the server's max_payload)"
                        );
                        return;
                    }
                    if self.room.set_accepting(false) {
                        warn!(error = %e, reason = e.reason, "the bus refuses publishes; shards stop reading the gateway until it accepts");
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    use bytes::Bytes;

    use crate::bus::room::Limits;
    use crate::bus::sink::{PublishError, Stored};

    /// A bus in memory: stores each id once, fails the first `fail` attempts of each message.
    #[derive(Default)]
    struct Memory {
        stored: Mutex<Vec<Message>>,
        attempts: Mutex<HashMap<String, u32>>,
        fail: u32,
    }

    impl Sink for Arc<Memory> {
        async fn publish(&self, message: &Message) -> Result<Stored, PublishError> {
            let attempt = {
                let mut attempts = self.attempts.lock().expect("lock");
                let n = attempts.entry(message.id.clone()).or_default();
                *n += 1;
                *n
            };
            // Acks take different times per message and attempt, so a later message would
            // overtake an earlier one if a guild's publishes were pipelined.
            let seq: u64 = message
                .id
                .rsplit(':')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let delay = (seq * 7 + u64::from(attempt)) % 5;
            tokio::time::sleep(Duration::from_millis(delay)).await;
            if attempt <= self.fail {
                return Err(PublishError::retry("timed_out", "no ack"));
            }
            let mut stored = self.stored.lock().expect("lock");
            let duplicate = stored.iter().any(|m| m.id == message.id);
            if !duplicate {
                stored.push(message.clone());
            }
            Ok(Stored { duplicate })
        }
    }

    fn dispatch(shard: u32, seq: u64, guild: Option<u64>) -> Taken {
        Taken {
            shard,
            total: 2,
            seq,
            event: "MESSAGE_CREATE".into(),
            guild,
            data: Bytes::from(format!(r#"{{"id":"{seq}"}}"#)),
            session: Some("sess".into()),
        }
    }

    async fn publish_all(sink: Arc<Memory>, dispatches: Vec<Taken>) -> (Arc<Room>, BusMetrics) {
        let metrics = BusMetrics::unregistered();
        let room = Arc::new(Room::new(
            Limits {
                messages: 1_000,
                bytes: 1 << 20,
                shard_messages: 1_000,
            },
            metrics.clone(),
        ));
        let publisher = Publisher {
            sink,
            destination: Destination {
                prefix: "S".into(),
                partitions: 4,
            },
            room: Arc::clone(&room),
            acting: Arc::new(Acting::always_active("2")),
            metrics: metrics.clone(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        for d in dispatches {
            room.admit(d.shard, d.seq, d.data.len(), d.session.as_deref());
            tx.send(d).expect("send");
        }
        drop(tx);
        publisher.run(rx).await;
        (room, metrics)
    }

    #[tokio::test(start_paused = true)]
    async fn every_dispatch_is_stored_once_in_order_per_guild_despite_failures() {
        let sink = Arc::new(Memory {
            fail: 2,
            ..Memory::default()
        });
        let guilds = [Some(1u64 << 22), Some(2 << 22), None];
        let dispatches: Vec<Taken> = (1..=60)
            .map(|seq| dispatch(0, seq, guilds[seq as usize % 3]))
            .collect();
        let (room, metrics) = publish_all(Arc::clone(&sink), dispatches).await;
        let stored = sink.stored.lock().expect("lock").clone();
        assert_eq!(stored.len(), 60, "each once");
        for guild in ["4194304", "8388608"] {
            let seqs: Vec<u64> = stored
                .iter()
                .filter(|m| m.headers.iter().any(|(_, v)| v == guild))
                .map(|m| {
                    m.headers
                        .iter()
                        .find(|(n, _)| *n == "Shardset-Seq")
                        .and_then(|(_, v)| v.parse().ok())
                        .expect("seq")
                })
                .collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "guild {guild}: {seqs:?}"
            );
        }
        assert_eq!(room.settled(0, 60), 60, "everything settled");
        assert_eq!(metrics.publish_retries.get(), 120, "two retries each");
        assert_eq!(
            metrics
                .published
                .get_or_create(&ResultLabels { result: "stored" })
                .get(),
            60
        );
        assert_eq!(metrics.in_flight.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_replay_is_stored_once_and_counted_as_duplicate() {
        let sink = Arc::new(Memory::default());
        let first: Vec<Taken> = (1..=5).map(|s| dispatch(1, s, Some(9 << 22))).collect();
        publish_all(Arc::clone(&sink), first).await;
        // A successor resumes from seq 2: 3..=5 come again, 6 is new.
        let replay: Vec<Taken> = (3..=6).map(|s| dispatch(1, s, Some(9 << 22))).collect();
        let (_, metrics) = publish_all(Arc::clone(&sink), replay).await;
        assert_eq!(sink.stored.lock().expect("lock").len(), 6);
        let duplicates = metrics
            .published
            .get_or_create(&ResultLabels {
                result: "duplicate",
            })
            .get();
        assert_eq!(duplicates, 3);
    }
}
