//! The bot tier's bus as the worker sees it (`docs/bus-protocol.md`, "What the publisher must
//! do"): every dispatch of every shard is published to a stream that handler services consume,
//! and counts as handled only once the stream acknowledged it.
//!
//! - [`Bus`]: what a shard holds: [`Bus::take`] hands a dispatch over without waiting and says
//!   whether the shard may read on; [`Bus::wait_for_room`] resolves when it may again;
//!   [`Bus::settled`] is how far its checkpoint may go.
//! - [`room`]: the bound on what is in flight, and what is settled.
//! - [`publisher`]: the task that decides, orders, publishes and retries; [`order`]: what
//!   stays in gateway order (a guild's events); [`message`]: a dispatch as a message of the
//!   protocol.
//! - [`sink`]: the one thing a backend does (store a message); [`jetstream`]: NATS JetStream,
//!   with the stream, its consumers and the handlers' `layout` key.
//! - [`settings`]: the env (`NATS_URL`, `SHARDSET_STREAM`, …); [`metrics`]: `shardset_bus_*`.
//!
//! - [`commands`]: commands back, a handler's request on `S.commands.<total>.<shard>` answered
//!   by the worker holding the shard's live session, on the same NATS connection
//!   ([`jetstream::Connection::client`]).

pub mod commands;
pub mod jetstream;
pub mod message;
pub mod metrics;
pub mod order;
pub mod publisher;
pub mod room;
pub mod settings;
pub mod sink;

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use self::message::Taken;
pub use self::metrics::BusMetrics;
use self::publisher::{Destination, Publisher};
use self::room::{Room, RoomWait};
pub use self::settings::BusSettings;
use self::sink::Sink;
use crate::handover::acting::Acting;

/// The publishing side of a worker's shards (see the module documentation).
#[derive(Debug)]
pub struct Bus {
    taken: mpsc::UnboundedSender<Taken>,
    room: Arc<Room>,
    total: u32,
}

/// The publisher's task: ends once every [`Bus`] handle is dropped and what they took is
/// settled.
pub type PublisherTask = JoinHandle<()>;

impl Bus {
    /// Starts the publisher on `sink` for the shards of a layout of `total` shards, bounded
    /// by `room` (made first, so that a backend can report a lost connection to it at once).
    pub fn start<S: Sink>(
        sink: S,
        destination: Destination,
        room: Arc<Room>,
        total: u32,
        acting: Arc<Acting>,
    ) -> (Self, PublisherTask) {
        let (taken, receiver) = mpsc::unbounded_channel();
        let publisher = Publisher {
            sink,
            destination,
            room: Arc::clone(&room),
            acting,
            metrics: room.metrics().clone(),
        };
        let task = tokio::spawn(publisher.run(receiver));
        (Self { taken, room, total }, task)
    }

    /// Hands dispatch `seq` (`event`, raw `d` `data`) of `shard`'s session `session` to the
    /// bus, without waiting. Returns whether the shard may read its next dispatch now; when
    /// not, it waits for [`Bus::wait_for_room`] first.
    pub fn take(
        &self,
        shard: u32,
        seq: u64,
        event: &str,
        data: &str,
        session: Option<&str>,
    ) -> bool {
        let (session, room) = self.room.admit(shard, seq, data.len(), session);
        let dispatch = Taken {
            shard,
            total: self.total,
            seq,
            event: event.into(),
            guild: crate::handler::guild_id(event, data),
            data: Bytes::copy_from_slice(data.as_bytes()),
            session,
        };
        if let Err(mpsc::error::SendError(dispatch)) = self.taken.send(dispatch) {
            // The publisher is gone (only after shutdown): nothing will publish it, and its
            // checkpoint must not pass it.
            tracing::warn!(
                shard_id = shard,
                seq = dispatch.seq,
                "the bus publisher has stopped"
            );
            return false;
        }
        room
    }

    /// Whether the bus takes publishes now (`shardset_bus_accepting`): false from a failed
    /// publish or a lost connection until the next acknowledgement.
    pub fn accepting(&self) -> bool {
        self.room.accepting()
    }

    /// Resolves once `shard` may read its next dispatch.
    pub fn wait_for_room(&self, shard: u32) -> RoomWait {
        self.room.wait(shard)
    }

    /// The seq up to which `shard`'s dispatches reached the bus (or were withheld), given that
    /// it took every one up to `handled`.
    pub fn settled(&self, shard: u32, handled: u64) -> u64 {
        self.room.settled(shard, handled)
    }
}
