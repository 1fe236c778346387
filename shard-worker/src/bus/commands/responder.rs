//! The worker's side of commands back (`docs/bus-protocol.md`, "Commands back"): each shard whose
//! session is live (READY or RESUMED) while this layout acts (`active` or `claiming`) takes the
//! requests on `S.commands.<total>.<shard>` in queue group `shardset-worker`; a shard that stops
//! being live, or a layout that stops acting (standby, retired), unsubscribes, so only the
//! acting layout's live session answers and a request finds "no responders" otherwise.
//!
//! Each request goes through the worker's [`Commands`] handle (the shard's send limiter, the
//! 4,096-byte check, op 8's chunks gathered), and is answered as [`super::request`] writes it.
//! Requests run concurrently (a member request waits for its chunks while a presence goes out),
//! at most [`MAX_IN_FLIGHT`] at once per process; past that the subscriptions are read no
//! further until one ends.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::Subscriber;
use futures_util::StreamExt;
use shardset_contract::ShardState;
use shardset_contract::bus::{COMMAND_QUEUE_GROUP, command_subject};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::request::{self, Parsed, Reply, kind};
use crate::bus::BusMetrics;
use crate::bus::metrics::ResultLabels;
use crate::command::{CommandConfig, Commands};
use crate::handover::acting::Acting;
use crate::worker::board::Board;

/// Requests being answered at once, at most (each holds a task and, for op 8, its chunks).
pub const MAX_IN_FLIGHT: usize = 256;
/// The waits of a command from the bus: the handler libraries wait 10 s for the reply, so the
/// worker answers within about 9. A session that is not live answers at once (`not_connected`);
/// a command the send limit holds for 2 s answers `rate_limited`; op 8's chunks may take 7 s.
pub const BUS_COMMAND_CONFIG: CommandConfig = CommandConfig {
    live_wait: Duration::ZERO,
    queue_timeout: Duration::from_secs(2),
    members_timeout: Duration::from_secs(7),
};
/// How soon a failed subscription is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// Answers commands back for the shards of one worker.
pub struct Responder {
    pub client: async_nats::Client,
    pub prefix: String,
    pub total: u32,
    /// The worker's handle (its waits are replaced by [`BUS_COMMAND_CONFIG`]).
    pub commands: Commands,
    pub board: Arc<Board>,
    pub acting: Arc<Acting>,
    pub metrics: BusMetrics,
}

/// What every shard's subscription shares.
struct Shared {
    client: async_nats::Client,
    commands: Commands,
    metrics: BusMetrics,
    in_flight: Arc<Semaphore>,
}

/// A shard's subscription, ended by dropping `stop` (it unsubscribes).
struct Answering {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Responder {
    /// Follows the shards and the layout's role until `stop` turns true, then unsubscribes all.
    pub fn spawn(self, stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(self.run(stop))
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut states = self.board.watch_states();
        let shared = Arc::new(Shared {
            client: self.client.clone(),
            commands: self.commands.clone().with_config(BUS_COMMAND_CONFIG),
            metrics: self.metrics.clone(),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        });
        let mut answering: BTreeMap<u32, Answering> = BTreeMap::new();
        loop {
            states.borrow_and_update();
            let wanted = self.wanted();
            answering.retain(|shard, a| {
                let keep = wanted.contains(shard) && !a.task.is_finished();
                if !keep {
                    debug!(shard_id = shard, "no longer answering commands");
                }
                keep
            });
            let mut failed = false;
            for shard in wanted {
                if answering.contains_key(&shard) {
                    continue;
                }
                match self.subscribe(shard).await {
                    Ok(subscriber) => {
                        let (stop, stopped) = oneshot::channel();
                        let task =
                            tokio::spawn(answer(Arc::clone(&shared), shard, subscriber, stopped));
                        answering.insert(shard, Answering { stop, task });
                    }
                    Err(e) => {
                        warn!(shard_id = shard, error = %e, "cannot take commands yet; trying again");
                        failed = true;
                    }
                }
            }
            self.metrics.command_shards.set(answering.len() as i64);
            tokio::select! {
                changed = states.changed() => if changed.is_err() { break },
                () = tokio::time::sleep(RETRY), if failed => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        for (_, a) in std::mem::take(&mut answering) {
            drop(a.stop);
            let _ = a.task.await;
        }
        self.metrics.command_shards.set(0);
    }

    /// The shards that answer now: live ones, while the layout acts.
    fn wanted(&self) -> BTreeSet<u32> {
        if !self.acting.may_act() {
            return BTreeSet::new();
        }
        self.board
            .slots()
            .filter(|slot| slot.state() == ShardState::Ready)
            .map(|slot| slot.shard)
            .collect()
    }

    async fn subscribe(&self, shard: u32) -> Result<Subscriber, async_nats::SubscribeError> {
        let subject = command_subject(&self.prefix, self.total, shard);
        let subscriber = self
            .client
            .queue_subscribe(subject.clone(), COMMAND_QUEUE_GROUP.to_owned())
            .await?;
        info!(shard_id = shard, %subject, "taking commands from the bus");
        Ok(subscriber)
    }
}

/// Answers `shard`'s requests until `stop` fires (or is dropped), then unsubscribes; requests
/// already taken are answered.
async fn answer(
    shared: Arc<Shared>,
    shard: u32,
    mut subscriber: Subscriber,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let message = tokio::select! {
            message = subscriber.next() => message,
            _ = &mut stop => break,
        };
        let Some(message) = message else { break };
        let permit = tokio::select! {
            permit = Arc::clone(&shared.in_flight).acquire_owned() => permit,
            _ = &mut stop => break,
        };
        let Ok(permit) = permit else { break };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            shared.handle(shard, message).await;
            drop(permit);
        });
    }
    if let Err(e) = subscriber.unsubscribe().await {
        debug!(shard_id = shard, error = %e, "unsubscribe failed (the connection is gone)");
    }
}

impl Shared {
    async fn handle(&self, shard: u32, message: async_nats::Message) {
        let Some(reply_to) = message.reply else {
            // A request nobody waits for: sending it could only surprise.
            self.count("no_reply");
            debug!(
                shard_id = shard,
                "a command without a reply subject; dropped"
            );
            return;
        };
        let reply = self.answer(shard, &message.payload).await;
        let mut body = reply.to_json();
        let max_payload = self.client.server_info().max_payload;
        let reply = if max_payload > 0 && body.len() > max_payload {
            let too_large = Reply::failed(
                kind::TOO_LARGE,
                format!(
                    "the reply is {} bytes; the NATS server carries at most {max_payload} (ask \
                     for fewer members, or read the chunks from the stream)",
                    body.len()
                ),
            );
            body = too_large.to_json();
            too_large
        } else {
            reply
        };
        self.count(reply.result());
        if let Err(e) = self.client.publish(reply_to, body.into()).await {
            warn!(shard_id = shard, error = %e, "cannot send a command's reply");
        }
    }

    async fn answer(&self, shard: u32, body: &[u8]) -> Reply {
        let waited = BUS_COMMAND_CONFIG.queue_timeout;
        match request::parse(body) {
            Err(reply) => reply,
            Ok(Parsed::Send(command)) => match self.commands.send(shard, &command).await {
                Ok(()) => Reply::sent(),
                Err(e) => Reply::of_error(&e, waited),
            },
            Ok(Parsed::Members {
                command,
                guild_id,
                nonce,
            }) => match self
                .commands
                .request_guild_members_as_written(shard, &command, guild_id, nonce)
                .await
            {
                Ok(members) => Reply::chunks(members),
                Err(e) => Reply::of_error(&e, waited),
            },
        }
    }

    fn count(&self, result: &'static str) {
        self.metrics
            .commands
            .get_or_create(&ResultLabels { result })
            .inc();
    }
}
