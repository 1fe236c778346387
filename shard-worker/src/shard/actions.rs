//! Carrying out the session machine's actions: heartbeats within the send limit, Identify with
//! its permit (confirmed once the gateway answers it, its Identify streak recorded before it
//! leaves), Resume,
//! timers, asking for the permit (after checking the fatal marker), and what a live session, a
//! lasting one or a stop means for the shard.

use std::sync::Arc;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::custody::{fatal_marker, forget_identify_streak, record_identify_streak};
use super::runner::{Runner, Step, silent_reason};
use crate::gateway::commands;
use crate::gateway::session::{Action, Input};
use crate::handler::Handler;
use crate::identify::queue::WaitReason;
use crate::worker::board::LiveSession;
use crate::worker::metrics::ReasonLabels;
use shardset_contract::ShardState;

impl<H: Handler> Runner<'_, H> {
    /// Carries out one action of the machine; what it leads to may be more inputs.
    pub(super) async fn execute(&mut self, action: Action) -> Step {
        match action {
            Action::Connect(target) => {
                // No new connection while the bus has no room: it would not be read, and its
                // Hello would go unanswered. It opens once the bus has room.
                if self.bus_room.is_some() {
                    self.connect_after_pause = Some(target);
                    return Step::Continue;
                }
                return Step::Inputs(vec![self.connect(target).await]);
            }
            // A silent connection's peer does not answer: no close handshake to wait for.
            Action::Disconnect { code } if self.silent.is_some() => self.abandon(code).await,
            Action::Disconnect { code } => self.close(code).await,
            Action::SendHeartbeat { seq, requested } => {
                let payload = commands::heartbeat(seq);
                // Regular beats use the reserve (never delayed by ordinary commands, waiting
                // only if the window is full of beats); an answer to the server's request only
                // what ordinary commands may use, else it is skipped: the next regular beat
                // carries the same seq, and a server asking over and over cannot push the
                // connection past the send limit (close 4008).
                loop {
                    match self.limiter.try_heartbeat(Instant::now(), requested) {
                        Ok(()) => break,
                        Err(_) if requested => {
                            debug!(
                                shard_id = self.shard,
                                "heartbeat request not answered: no room under the send limit"
                            );
                            return Step::Continue;
                        }
                        Err(wait) => tokio::time::sleep(wait).await,
                    }
                }
                self.heartbeat_sent = Some(Instant::now());
                self.send(payload).await;
            }
            Action::SendIdentify => {
                let Some(permit) = self.permit.take() else {
                    return Step::Inputs(vec![Input::Deadline]);
                };
                // The send limit first: a wait there must not outlast the permit.
                self.limiter.acquire().await;
                // The Identify-loop guard's count goes to Redis before the Identify leaves.
                if let Some(records) = &self.shared.records
                    && !record_identify_streak(records, self.shard, self.machine.identify_streak())
                        .await
                {
                    permit.release().await;
                    return Step::Inputs(vec![Input::Deadline]);
                }
                if !permit.is_valid() {
                    // Taking the gate took so long that its TTL may not cover a window any more.
                    permit.release().await;
                    return Step::Inputs(vec![Input::Deadline]);
                }
                let config = &self.shared.config;
                let payload = commands::identify(
                    &self.shared.token,
                    self.shard,
                    config.total,
                    config.intents,
                );
                if self.ws.is_none() {
                    // No connection: nothing can have left.
                    permit.release().await;
                    return Step::Continue;
                }
                // A new session: what the old one owed (op 8 answers) will not come.
                self.forget_member_requests();
                let sent = self.send(payload).await;
                // A failed send may still have put the Identify on the wire (a write error
                // after some bytes left, a connection reset after the flush): count it as sent,
                // so the window runs and the session start stays spent. Giving the gate back
                // could let a second Identify into the bucket within 5 s. A sent one's window
                // starts at the gateway's answer (`InFlight`, held window + the answer margin);
                // a failed one's now, as the connection it was on is broken (what had left
                // arrived or never will), held window + the send margin as no answer says so.
                if sent {
                    self.identify_in_flight = Some(permit.in_flight());
                } else {
                    permit.sent().await;
                }
                self.board()
                    .metrics()
                    .identifies
                    .get_or_create(&self.labels)
                    .inc();
                if sent {
                    debug!(shard_id = self.shard, "Identify sent");
                } else {
                    debug!(
                        shard_id = self.shard,
                        "Identify send failed; counted as sent (bytes may have left)"
                    );
                }
            }
            Action::SendResume { session_id, seq } => {
                self.replaying = true;
                self.limiter.acquire().await;
                let payload = commands::resume(&self.shared.token, &session_id, seq);
                self.send(payload).await;
            }
            Action::ArmHeartbeat(after) => {
                let at = Instant::now() + after;
                self.heartbeat_at = Some(at);
                self.heartbeat_timer.as_mut().reset(at);
            }
            Action::DisarmHeartbeat => self.heartbeat_at = None,
            Action::SetDeadline(after) => {
                let at = Instant::now() + after;
                self.deadline_at = Some(at);
                self.deadline_timer.as_mut().reset(at);
            }
            Action::ClearDeadline => self.deadline_at = None,
            Action::RequestPermit => {
                let shared = self.shared;
                if let Some(marker) = fatal_marker(shared.records.as_ref(), self.shard).await
                    && marker.applies_to(shared.config.intents)
                {
                    return Step::End(Box::pin(self.stand_down(marker)).await);
                }
                let queue = Arc::clone(&self.shared.queue);
                let board = Arc::clone(&self.shared.board);
                let shard = self.shard;
                self.permit_asked = Some(Instant::now());
                self.permit_future = Some(Box::pin(async move {
                    let report = |reason: WaitReason| {
                        board
                            .metrics()
                            .identify_waits
                            .get_or_create(&ReasonLabels {
                                reason: reason.metric_label(),
                            })
                            .inc();
                        let state = match reason {
                            WaitReason::Budget => ShardState::WaitingForBudget,
                            _ => ShardState::WaitingForGate,
                        };
                        board.set_state(shard, state, Some(reason.label().to_owned()));
                    };
                    queue.acquire(shard, &report).await
                }));
            }
            Action::CancelPermit => self.drop_permit().await,
            Action::SessionLive { resumed } => {
                if let Some(r) = self.machine.resumable() {
                    self.slot.lock().session = Some(LiveSession {
                        session_id: r.session_id.clone(),
                        resume_gateway_url: r.resume_gateway_url.clone(),
                    });
                }
                let metrics = self.board().metrics();
                if resumed {
                    metrics.resumes.get_or_create(&self.labels).inc();
                }
                info!(
                    shard_id = self.shard,
                    resumed,
                    seq = self.machine.seq(),
                    "session live"
                );
            }
            Action::ForgetIdentifyStreak => {
                if let Some(records) = &self.shared.records {
                    forget_identify_streak(records, self.shard).await;
                }
            }
            Action::Zombie { unacked, interval } => {
                warn!(
                    shard_id = self.shard,
                    unacked,
                    ?interval,
                    "silent connection: no heartbeat ACK (a zombie connection); closing and resuming"
                );
                self.board()
                    .metrics()
                    .silent_connections
                    .get_or_create(&self.labels)
                    .inc();
                self.silent = Some(silent_reason(unacked));
            }
            Action::Stop { code } => return Step::End(Box::pin(self.stop(code)).await),
        }
        Step::Continue
    }

    /// The gateway answered the Identify in flight (READY, op 9): the bucket's window runs
    /// from now, held window + the answer margin.
    pub(super) async fn identify_answered(&mut self) {
        if let Some(in_flight) = self.identify_in_flight.take() {
            in_flight.answered().await;
            debug!(
                shard_id = self.shard,
                "Identify answered: its window runs from now"
            );
        }
    }

    /// The gateway's Close frame came before an answer (a connection lost otherwise has
    /// cleared the Identify in flight first): held window + the send margin from now.
    pub(super) async fn identify_closed(&mut self) {
        if let Some(in_flight) = self.identify_in_flight.take() {
            in_flight.closed().await;
            debug!(
                shard_id = self.shard,
                "gateway closed before answering the Identify: its window runs from now"
            );
        }
    }

    pub(super) async fn drop_permit(&mut self) {
        // Unanswered: the gate keeps its first TTL (`InFlight`).
        self.identify_in_flight = None;
        self.permit_future = None;
        self.permit_asked = None;
        if let Some(permit) = self.permit.take() {
            permit.release().await;
        }
    }
}
