//! The publishing side of the tests, as the worker does it (`docs/bus-protocol.md`): a real
//! nats-server, the bot's stream with the default group's consumers, events published with the
//! protocol's headers and message ids; and a handler that records what each replica handled.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishAckFuture};
use nats_test_server::NatsServer;
use shardset_contract::bus::{self, Partition, header};
use shardset_handler::{Config, Event, Replica, wire};

pub const PARTITIONS: u32 = 4;
pub const TOTAL: u32 = 16;

/// A guild id whose partition is `p` (of [`PARTITIONS`]): snowflake timestamp bits `k * P + p`.
pub fn guild_in(partition: u32, k: u64) -> u64 {
    ((k * u64::from(PARTITIONS) + u64::from(partition)) << 22) | 0x1_2345
}

/// One bot's bus on a private nats-server.
pub struct Bus {
    pub server: NatsServer,
    pub js: jetstream::Context,
    pub stream: String,
    pub prefix: String,
    next_seq: Mutex<u64>,
}

impl Bus {
    /// A server, the stream (duplicate window 2 min) and the default group's consumers, as the
    /// publishing side creates them before its first event.
    pub async fn start(ack_wait: Duration) -> Self {
        let server = NatsServer::start();
        let client = async_nats::connect(server.url()).await.expect("connect");
        let js = jetstream::new(client);
        let stream = "shardset-test-bot".to_owned();
        let prefix = "shardset.test.bot".to_owned();
        let created = js
            .create_stream(wire::stream_config(
                &stream,
                &prefix,
                PARTITIONS,
                bus::DEFAULT_DUPLICATE_WINDOW,
            ))
            .await
            .expect("create the stream");
        for partition in Partition::all(PARTITIONS) {
            created
                .create_consumer(wire::consumer_config(
                    &stream,
                    &prefix,
                    bus::DEFAULT_GROUP,
                    partition,
                    ack_wait,
                ))
                .await
                .expect("create a consumer");
        }
        Self {
            server,
            js,
            stream,
            prefix,
            next_seq: Mutex::new(0),
        }
    }

    /// A replica's configuration: short lease TTL and pulls, so the tests take seconds.
    pub fn config(&self, replica: &str, ttl: Duration) -> Config {
        let mut config = Config::new(self.server.url(), &self.stream);
        config.replica = replica.to_owned();
        config.lease_ttl = ttl;
        config.fetch_expires = Duration::from_millis(250);
        config.retry_delay = Duration::from_millis(50);
        config
    }

    /// Publishes a MESSAGE_CREATE of `guild` (none: a global event) as shard `guild % TOTAL`
    /// would, with the next gateway seq and an `s:<session>:<seq>` id, retrying with the same id
    /// until JetStream acknowledges it (as the publisher must: a retry that was stored already
    /// is a duplicate); returns its seq.
    pub async fn publish(&self, guild: Option<u64>) -> u64 {
        let seq = {
            let mut next = self.next_seq.lock().expect("lock");
            *next += 1;
            *next
        };
        let id = bus::session_msg_id("session-a", seq);
        let payload = format!(r#"{{"id":"{seq}","content":"hello"}}"#).into_bytes();
        for _ in 0..50 {
            let ack = self.publish_raw(guild, &id, seq, payload.clone()).await;
            match ack.await {
                Ok(_) => return seq,
                // The bus is (re)starting: back off, then the same id again.
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        panic!("event {seq} never acknowledged");
    }

    /// Waits until the stream holds nothing for the default group: every event handled and its
    /// acknowledgement taken by the server (the handler's record is written before its ack is
    /// sent, and the server tells no one when it took it, so this asks it).
    pub async fn wait_settled(&self, within: Duration) {
        let settled = async {
            loop {
                let mut stream = self.js.get_stream(&self.stream).await.expect("stream");
                if stream.info().await.expect("stream info").state.messages == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(within, settled)
            .await
            .expect("every event acknowledged");
    }

    /// Publishes an event with the given id, seq and payload; the caller awaits the ack.
    pub async fn publish_raw(
        &self,
        guild: Option<u64>,
        msg_id: &str,
        seq: u64,
        payload: Vec<u8>,
    ) -> PublishAckFuture {
        let shard = guild.map_or(0, |g| bus::shard_of_guild(g, TOTAL));
        let mut headers = HeaderMap::new();
        headers.insert(header::EVENT, "MESSAGE_CREATE");
        headers.insert(header::SHARD, shard.to_string().as_str());
        headers.insert(header::TOTAL, TOTAL.to_string().as_str());
        headers.insert(header::SEQ, seq.to_string().as_str());
        if let Some(guild) = guild {
            headers.insert(header::GUILD, guild.to_string().as_str());
        }
        headers.insert(header::MSG_ID, msg_id);
        let subject = bus::event_subject(&self.prefix, Partition::of(guild, PARTITIONS));
        self.js
            .publish_with_headers(subject, headers, payload.into())
            .await
            .expect("publish")
    }
}

/// What a replica handled: (replica, partition, gateway seq, delivery), in the order handled
/// across all replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub replica: String,
    pub partition: Partition,
    pub seq: u64,
    pub stream_seq: u64,
    pub delivered: u64,
}

impl Seen {
    /// What replica `replica` saw of `event`.
    pub fn of(replica: &str, event: &Event) -> Self {
        Self {
            replica: replica.to_owned(),
            partition: event.partition,
            seq: event.seq,
            stream_seq: event.stream_seq,
            delivered: event.delivered,
        }
    }
}

/// The shared record of every handled event, and a way to await a count.
#[derive(Clone, Default)]
pub struct Record {
    seen: Arc<Mutex<Vec<Seen>>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Record {
    pub fn push(&self, seen: Seen) {
        self.seen.lock().expect("lock").push(seen);
        self.changed.notify_waiters();
    }

    pub fn all(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// Waits until `done(record)` holds (at most `within`).
    pub async fn wait(&self, within: Duration, done: impl Fn(&[Seen]) -> bool) {
        let waiting = async {
            loop {
                let notified = self.changed.notified();
                if done(&self.seen.lock().expect("lock")) {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(within, waiting).await.is_err() {
            panic!(
                "not reached within {within:?}; seen: {:?}",
                self.all().len()
            );
        }
    }

    /// A handler recording into this record as replica `replica`.
    pub fn handler(
        &self,
        replica: &str,
    ) -> impl Fn(Event) -> std::future::Ready<Result<(), shardset_handler::HandlerError>>
    + Send
    + Sync
    + 'static {
        let record = self.clone();
        let replica = replica.to_owned();
        move |event: Event| {
            record.push(Seen::of(&replica, &event));
            std::future::ready(Ok(()))
        }
    }
}

/// Checks that every seq in `published` was handled exactly once and that within each partition
/// the handling order is the publishing order.
pub fn assert_exactly_once_in_order(seen: &[Seen], published: &BTreeSet<u64>) {
    let handled: Vec<u64> = seen.iter().map(|s| s.seq).collect();
    let unique: BTreeSet<u64> = handled.iter().copied().collect();
    assert_eq!(unique.len(), handled.len(), "an event was handled twice");
    assert_eq!(&unique, published, "every published event handled");
    assert_in_order(seen);
}

/// Within each partition, events were handled in stream order (redeliveries repeat an event,
/// never go back before it).
pub fn assert_in_order(seen: &[Seen]) {
    let mut last: BTreeMap<Partition, u64> = BTreeMap::new();
    for s in seen {
        let previous = last.insert(s.partition, s.stream_seq).unwrap_or(0);
        assert!(
            s.stream_seq >= previous,
            "partition {} went back from stream seq {previous} to {}",
            s.partition,
            s.stream_seq
        );
    }
}

/// Waits until the replicas' owned sets are disjoint, cover every partition, and each of them
/// owns something.
pub async fn wait_balanced(replicas: &[&Replica], within: Duration) {
    let mut watches: Vec<_> = replicas.iter().map(|r| r.ownership()).collect();
    let balanced = |sets: &[BTreeSet<Partition>]| {
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<Partition> = sets.iter().flatten().copied().collect();
        total == union.len()
            && union.len() == Partition::all(PARTITIONS).count()
            && sets.iter().all(|s| !s.is_empty())
    };
    let waiting = async {
        loop {
            let sets: Vec<BTreeSet<Partition>> =
                watches.iter().map(|w| w.borrow().clone()).collect();
            if balanced(&sets) {
                return;
            }
            let changes = watches.iter_mut().map(|w| Box::pin(w.changed()));
            let _ = futures_util::future::select_all(changes).await;
        }
    };
    if tokio::time::timeout(within, waiting).await.is_err() {
        let sets: Vec<_> = replicas.iter().map(|r| r.owned()).collect();
        panic!("not balanced within {within:?}: {sets:?}");
    }
}
