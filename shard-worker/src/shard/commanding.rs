//! The shard's side of the bot's commands ([`crate::command`]): sending the inbox's head when the
//! session is live and the send limiter has room (a few per loop turn, so frames and heartbeats
//! come in between), refusing what waited too long for a live session, and delivering op 8's
//! answers (its chunks gathered, or RATE_LIMITED) to the callers.

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::runner::Runner;
use crate::command::{CommandError, Next, Order, refuse};
use crate::gateway::members::{MemberRequests, Members, Progress};
use crate::gateway::session::Phase;
use crate::handler::Handler;

/// Commands sent in one loop turn at most: a burst (up to the limiter's share, ~117) goes out
/// over several turns, each reading frames and beating in between.
const BURST: usize = 8;

/// op 8 requests waiting for their chunks, each with its caller's channel.
pub(super) type WaitingMembers = MemberRequests<oneshot::Sender<Result<Members, CommandError>>>;

impl<H: Handler> Runner<'_, H> {
    /// Tells the inbox whether the session is live now (READY or RESUMED).
    pub(super) fn note_liveness(&mut self, phase: Phase) {
        if let Some(inbox) = self.inbox.as_mut() {
            inbox.set_live(phase == Phase::Active && self.ws.is_some(), Instant::now());
            self.commands_due = true;
        }
    }

    /// Sends what may go now; arms the command timer for when the head may go (or must be
    /// refused).
    pub(super) async fn advance_commands(&mut self) {
        self.commands_due = false;
        self.command_at = None;
        let Some(mut inbox) = self.inbox.take() else {
            return;
        };
        let mut sent = 0;
        loop {
            if sent == BURST {
                self.arm_command_timer(Instant::now());
                break;
            }
            match inbox.next(Instant::now(), &mut self.limiter) {
                Next::Idle => break,
                Next::At(at) => {
                    self.arm_command_timer(at);
                    break;
                }
                Next::Refused(order, error) => self.refuse_order(order, error),
                Next::Send(order) => {
                    if !self.send_order(order).await {
                        // The connection is gone: the rest waits for the next live session.
                        inbox.set_live(false, Instant::now());
                        self.commands_due = true;
                        break;
                    }
                    sent += 1;
                }
            }
        }
        self.inbox = Some(inbox);
    }

    fn arm_command_timer(&mut self, at: Instant) {
        self.command_at = Some(at);
        self.command_timer.as_mut().reset(at);
    }

    fn refuse_order(&self, order: Order, error: CommandError) {
        self.board()
            .metrics()
            .count_command(order.opcode, error.metric_label());
        if order.detached {
            // Queued from this shard's dispatch: nobody waits for the error.
            warn!(shard_id = self.shard, op = order.opcode, error = %error, "command not sent");
        }
        refuse(order, error);
    }

    /// Sends `order` and tells its caller; false when the socket write failed.
    async fn send_order(&mut self, order: Order) -> bool {
        let Order {
            payload,
            opcode,
            sent,
            detached,
            members,
            ..
        } = order;
        self.limiter.record(Instant::now());
        if !self.send(payload).await {
            let error = CommandError::SendFailed { shard: self.shard };
            self.board()
                .metrics()
                .count_command(opcode, error.metric_label());
            if detached {
                warn!(shard_id = self.shard, op = opcode, error = %error, "command not sent");
            }
            if let Some(members) = members {
                let _ = members.answer.send(Err(error.clone()));
            }
            let _ = sent.send(Err(error));
            return false;
        }
        self.board().metrics().count_command(opcode, "sent");
        debug!(shard_id = self.shard, op = opcode, "command sent");
        if let Some(members) = members {
            // Callers that gave up waiting do not keep their entries.
            self.members.retain(|answer| !answer.is_closed());
            if members.keep_chunks {
                self.members
                    .insert_keeping_chunks(members.nonce, members.guild_id, members.answer);
            } else {
                self.members
                    .insert(members.nonce, members.guild_id, members.answer);
            }
        }
        let _ = sent.send(Ok(()));
        true
    }

    /// Applies a GUILD_MEMBERS_CHUNK or RATE_LIMITED dispatch to the requests waiting. Returns
    /// true when it was the answer to one of them and goes no further (RATE_LIMITED: the
    /// caller's error, not the handler's dispatch).
    pub(super) fn on_member_answer(&mut self, event: &str, data: &str) -> bool {
        if self.members.is_empty() {
            return false;
        }
        match self.members.on_dispatch(event, data) {
            Progress::Unrelated | Progress::Chunk => false,
            Progress::Done(answer, members) => {
                self.board().metrics().count_command(
                    crate::gateway::Opcode::RequestGuildMembers.code(),
                    "answered",
                );
                let _ = answer.send(Ok(members));
                // The chunks are also the handler's (a member cache may want them).
                false
            }
            Progress::Limited(answer, limited) => {
                let error = CommandError::RateLimited {
                    opcode: limited.opcode,
                    retry_after: limited.retry_after,
                    guild_id: limited.guild_id,
                };
                self.board()
                    .metrics()
                    .count_command(limited.opcode, error.metric_label());
                let _ = answer.send(Err(error));
                true
            }
        }
    }

    /// A new session (Identify): the answers the old one owed never come.
    pub(super) fn forget_member_requests(&mut self) {
        let shard = self.shard;
        let metrics = std::sync::Arc::clone(self.board().metrics());
        for answer in self.members.drain() {
            let error = CommandError::SessionLost { shard };
            metrics.count_command(
                crate::gateway::Opcode::RequestGuildMembers.code(),
                error.metric_label(),
            );
            let _ = answer.send(Err(error));
        }
    }
}
