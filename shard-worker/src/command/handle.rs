//! [`Commands`]: the handle a bot sends gateway commands with, on a chosen shard of its worker.
//! It is an API over per-shard channels: whoever holds a clone (a handler, a task of the bot,
//! later a caller from outside the pod) sends the same way, and the shard's task sends in order,
//! within the connection's send limit.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::error::CommandError;
use super::inbox::{Inboxes, MemberOrder, Order, Queued, channels};
use crate::gateway::bot_commands::{BotCommand, MemberRequest, Presence, VoiceState};
use crate::gateway::members::Members;

tokio::task_local! {
    /// The shard whose dispatch the current task is handling (set around `Handler::dispatch`).
    static DISPATCHING: u32;
}

/// Runs `future` (a handler's dispatch) as the dispatch of `shard`, so that commands it sends
/// on that very shard know they cannot wait for the shard (it waits for them).
pub(crate) fn within_dispatch<F: Future>(shard: u32, future: F) -> impl Future<Output = F::Output> {
    DISPATCHING.scope(shard, future)
}

fn inside_dispatch_of(shard: u32) -> bool {
    DISPATCHING.try_with(|s| *s == shard).unwrap_or(false)
}

/// How long commands may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandConfig {
    /// How long a command waits for its shard's session to be live (READY or RESUMED, e.g.
    /// while it resumes), counted from when it was queued or the session stopped being live.
    pub live_wait: Duration,
    /// How long a command may wait in its shard's queue in all (120 commands per minute leave
    /// a connection, so a long queue takes minutes).
    pub queue_timeout: Duration,
    /// How long `request_guild_members` waits for the last chunk after the request was sent.
    pub members_timeout: Duration,
}

impl Default for CommandConfig {
    fn default() -> Self {
        Self {
            live_wait: Duration::from_secs(30),
            queue_timeout: Duration::from_secs(300),
            members_timeout: Duration::from_secs(60),
        }
    }
}

/// Orders queued per shard before a caller waits for room.
pub const QUEUE_PER_SHARD: usize = 512;

/// Sends gateway commands on the shards of one worker. Cheap to clone; get it from
/// [`crate::worker::Builder::commands`] (or [`Commands::new`] with [`crate::worker::run`]).
///
/// Outside the dispatch of the shard it sends on, each call returns once the command was sent
/// (or why not). Inside that shard's own `Handler::dispatch`, it returns once the command is
/// queued: the shard sends it after the dispatch returns (a shard handles one dispatch at a
/// time, so it cannot send while the handler waits), and a failure after that is logged and
/// counted (`shardset_worker_commands_total`).
#[derive(Clone)]
pub struct Commands {
    shards: Arc<BTreeMap<u32, mpsc::Sender<Queued>>>,
    total: u32,
    config: CommandConfig,
}

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commands")
            .field("shards", &self.shards.keys())
            .field("total", &self.total)
            .field("config", &self.config)
            .finish()
    }
}

/// A process-wide counter for op 8 nonces.
static NONCES: AtomicU64 = AtomicU64::new(0);

/// A nonce no other request of this process uses (at most 25 bytes of Discord's 32).
fn new_nonce() -> String {
    let n = NONCES.fetch_add(1, Ordering::Relaxed);
    format!("{n:x}.{:08x}", rand::random::<u32>())
}

impl Commands {
    /// The handle of shards `shards` of a `total`-shard layout, and the inboxes their tasks take
    /// ([`crate::shard::Shared::inboxes`]).
    pub fn new(shards: RangeInclusive<u32>, total: u32) -> (Self, Inboxes) {
        let (senders, inboxes) = channels(shards, QUEUE_PER_SHARD);
        let commands = Self {
            shards: Arc::new(senders),
            total,
            config: CommandConfig::default(),
        };
        (commands, inboxes)
    }

    /// The same handle with other waits.
    pub fn with_config(mut self, config: CommandConfig) -> Self {
        self.config = config;
        self
    }

    pub fn config(&self) -> CommandConfig {
        self.config
    }

    /// The shards this handle sends on.
    pub fn shards(&self) -> impl Iterator<Item = u32> + '_ {
        self.shards.keys().copied()
    }

    /// The shard of this layout that holds `guild_id` (`(guild_id >> 22) % total`), if this
    /// worker runs it: where its voice states and member requests go.
    pub fn shard_of_guild(&self, guild_id: u64) -> Option<u32> {
        let shard = ((guild_id >> 22) % u64::from(self.total.max(1))) as u32;
        self.shards.contains_key(&shard).then_some(shard)
    }

    /// op 3: sets the bot's presence on `shard`'s session.
    pub async fn update_presence(
        &self,
        shard: u32,
        presence: &Presence,
    ) -> Result<(), CommandError> {
        self.send(shard, &BotCommand::PresenceUpdate(presence.clone()))
            .await
    }

    /// op 4: joins, moves or leaves (`channel_id: None`) a voice channel; `shard` must hold
    /// the guild ([`Commands::shard_of_guild`]).
    pub async fn update_voice_state(
        &self,
        shard: u32,
        state: &VoiceState,
    ) -> Result<(), CommandError> {
        self.send(shard, &BotCommand::VoiceStateUpdate(*state))
            .await
    }

    /// Any opcode a bot may send that the worker does not model (31 Request Soundboard Sounds,
    /// 43 Request Channel Info, ...), with `d` as JSON. Answers arrive as dispatches.
    pub async fn send_raw(
        &self,
        shard: u32,
        op: impl Into<u8>,
        d: &impl Serialize,
    ) -> Result<(), CommandError> {
        self.send(shard, &BotCommand::raw(op, d)?).await
    }

    /// Sends `command` on `shard` (op 8 this way: its chunks reach the handler only).
    pub async fn send(&self, shard: u32, command: &BotCommand) -> Result<(), CommandError> {
        let payload = command.encode()?;
        let deadline = Instant::now() + self.config.queue_timeout;
        let (order, sent) = self.order(shard, payload, command.opcode(), None);
        let detached = order.detached;
        self.enqueue(shard, order, deadline).await?;
        if detached {
            return Ok(());
        }
        self.wait_sent(shard, sent, deadline).await
    }

    /// op 8: members of one guild on `shard` (the shard holding it), their chunks gathered into
    /// one answer. The nonce is this handle's own (any in `request` is replaced). Discord answers
    /// a second all-members request for a guild within 30 s with RATE_LIMITED:
    /// [`CommandError::RateLimited`] with its `retry_after`. Cannot be awaited inside the
    /// dispatch of `shard` itself ([`CommandError::InsideDispatch`]): spawn it.
    pub async fn request_guild_members(
        &self,
        shard: u32,
        mut request: MemberRequest,
    ) -> Result<Members, CommandError> {
        let nonce = new_nonce();
        request.nonce = Some(nonce.clone());
        let guild_id = request.guild_id;
        let command = BotCommand::RequestGuildMembers(request);
        self.members(shard, &command, nonce, guild_id, false).await
    }

    /// op 8 exactly as the caller wrote its `d` (a request from another process: commands
    /// back over the bus), answered by the chunks carrying `nonce` for `guild_id`, each chunk's
    /// raw `d` kept ([`Members::chunk_data`]). The caller chose `nonce`: it must be unique
    /// among the shard's requests waiting for an answer.
    pub async fn request_guild_members_as_written(
        &self,
        shard: u32,
        command: &BotCommand,
        guild_id: u64,
        nonce: String,
    ) -> Result<Members, CommandError> {
        self.members(shard, command, nonce, guild_id, true).await
    }

    async fn members(
        &self,
        shard: u32,
        command: &BotCommand,
        nonce: String,
        guild_id: u64,
        keep_chunks: bool,
    ) -> Result<Members, CommandError> {
        if inside_dispatch_of(shard) {
            return Err(CommandError::InsideDispatch { shard });
        }
        let payload = command.encode()?;
        let deadline = Instant::now() + self.config.queue_timeout;
        let (answer, answered) = oneshot::channel();
        let members = MemberOrder {
            nonce,
            guild_id,
            answer,
            keep_chunks,
        };
        let (order, sent) = self.order(shard, payload, command.opcode(), Some(members));
        self.enqueue(shard, order, deadline).await?;
        self.wait_sent(shard, sent, deadline).await?;
        let after = self.config.members_timeout;
        match tokio::time::timeout(after, answered).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(CommandError::ShardStopped { shard }),
            Err(_) => Err(CommandError::NoAnswer { shard, after }),
        }
    }

    fn order(
        &self,
        shard: u32,
        payload: String,
        opcode: u8,
        members: Option<MemberOrder>,
    ) -> (Order, oneshot::Receiver<Result<(), CommandError>>) {
        let (sent, receiver) = oneshot::channel();
        let order = Order {
            payload,
            opcode,
            queued: Instant::now(),
            live_wait: self.config.live_wait,
            sent,
            detached: inside_dispatch_of(shard),
            members,
        };
        (order, receiver)
    }

    async fn enqueue(
        &self,
        shard: u32,
        order: Order,
        deadline: Instant,
    ) -> Result<(), CommandError> {
        let sender = self
            .shards
            .get(&shard)
            .ok_or(CommandError::UnknownShard { shard })?;
        let order = Box::new(order);
        if order.detached {
            // The shard drains its queue only after this dispatch: no waiting for room.
            return sender.try_send(order).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => CommandError::QueueFull { shard },
                mpsc::error::TrySendError::Closed(_) => CommandError::ShardStopped { shard },
            });
        }
        match tokio::time::timeout_at(deadline, sender.send(order)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(CommandError::ShardStopped { shard }),
            Err(_) => Err(CommandError::QueueTimeout {
                shard,
                after: self.config.queue_timeout,
            }),
        }
    }

    async fn wait_sent(
        &self,
        shard: u32,
        sent: oneshot::Receiver<Result<(), CommandError>>,
        deadline: Instant,
    ) -> Result<(), CommandError> {
        match tokio::time::timeout_at(deadline, sent).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(CommandError::ShardStopped { shard }),
            // Dropping `sent` tells the shard not to send it any more.
            Err(_) => Err(CommandError::QueueTimeout {
                shard,
                after: self.config.queue_timeout,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::inbox::Next;
    use crate::gateway::bot_commands::{EncodeError, Status};
    use crate::gateway::ratelimit::{CommandLimiter, WINDOW};

    #[test]
    fn guilds_map_to_their_shard_when_this_worker_runs_it() {
        let (commands, _inboxes) = Commands::new(4..=7, 16);
        // (guild_id >> 22) % 16.
        assert_eq!(commands.shard_of_guild(5 << 22), Some(5));
        assert_eq!(commands.shard_of_guild(3 << 22), None);
        assert_eq!(commands.shards().collect::<Vec<_>>(), vec![4, 5, 6, 7]);
        assert!(new_nonce().len() <= 32);
        assert_ne!(new_nonce(), new_nonce());
    }

    #[tokio::test(start_paused = true)]
    async fn refused_and_unknown_commands_fail_before_queueing() {
        let (commands, inboxes) = Commands::new(0..=0, 1);
        let mut inbox = inboxes.take(0).expect("inbox");
        let long = Presence::new(Status::Online).activity(
            crate::gateway::bot_commands::Activity::new(0, "x".repeat(5_000)),
        );
        assert!(matches!(
            commands.update_presence(0, &long).await,
            Err(CommandError::Refused(EncodeError::TooLarge { .. }))
        ));
        assert!(matches!(
            commands.send_raw(0, 2u8, &serde_json::json!({})).await,
            Err(CommandError::Refused(EncodeError::Opcode(2)))
        ));
        assert!(matches!(
            commands
                .update_presence(9, &Presence::new(Status::Online))
                .await,
            Err(CommandError::UnknownShard { shard: 9 })
        ));
        let mut limiter = CommandLimiter::new(Duration::from_secs(41), WINDOW);
        inbox.set_live(true, Instant::now());
        assert!(
            matches!(inbox.next(Instant::now(), &mut limiter), Next::Idle),
            "nothing queued"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_resolves_when_the_shard_sent_it_and_times_out_unsent() {
        let (commands, inboxes) = Commands::new(0..=0, 1);
        let commands = commands.with_config(CommandConfig {
            queue_timeout: Duration::from_secs(5),
            ..CommandConfig::default()
        });
        let mut inbox = inboxes.take(0).expect("inbox");
        let presence = Presence::new(Status::Idle);
        let call = tokio::spawn({
            let commands = commands.clone();
            let presence = presence.clone();
            async move { commands.update_presence(0, &presence).await }
        });
        inbox.receive().await;
        let mut limiter = CommandLimiter::new(Duration::from_secs(41), WINDOW);
        inbox.set_live(true, Instant::now());
        let Next::Send(order) = inbox.next(Instant::now(), &mut limiter) else {
            panic!("live: it goes");
        };
        assert!(order.payload.contains(r#""status":"idle""#));
        assert!(!order.detached);
        order.sent.send(Ok(())).ok();
        assert_eq!(call.await.expect("task"), Ok(()));
        // Not live: the caller gives up after queue_timeout, and the shard then drops it.
        inbox.set_live(false, Instant::now());
        let result = commands.update_presence(0, &presence).await;
        assert!(
            matches!(result, Err(CommandError::QueueTimeout { .. })),
            "{result:?}"
        );
        inbox.set_live(true, Instant::now());
        assert!(matches!(
            inbox.next(Instant::now(), &mut limiter),
            Next::Idle
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn inside_its_shards_dispatch_a_command_is_queued_and_a_member_request_refused() {
        let (commands, inboxes) = Commands::new(0..=1, 2);
        let mut inbox = inboxes.take(0).expect("inbox");
        let presence = Presence::new(Status::Online);
        let queued = within_dispatch(0, commands.update_presence(0, &presence)).await;
        assert_eq!(queued, Ok(()), "returns once queued");
        let refused =
            within_dispatch(0, commands.request_guild_members(0, MemberRequest::all(1))).await;
        assert!(matches!(
            refused,
            Err(CommandError::InsideDispatch { shard: 0 })
        ));
        let mut limiter = CommandLimiter::new(Duration::from_secs(41), WINDOW);
        inbox.set_live(true, Instant::now());
        let Next::Send(order) = inbox.next(Instant::now(), &mut limiter) else {
            panic!("queued");
        };
        assert!(order.detached);
        // Another shard's dispatch waits for the send as anyone else.
        let other = tokio::spawn({
            let commands = commands.clone();
            async move {
                within_dispatch(1, commands.update_presence(0, &Presence::new(Status::Dnd))).await
            }
        });
        inbox.receive().await;
        let Next::Send(order) = inbox.next(Instant::now(), &mut limiter) else {
            panic!("queued");
        };
        assert!(!order.detached);
        order.sent.send(Ok(())).ok();
        assert_eq!(other.await.expect("task"), Ok(()));
    }
}
