//! The thin async loop around one shard's [`session::Machine`](crate::gateway::session::Machine): it owns
//! the WebSocket, the inflater, the timers and the Identify permit, turns what happens into
//! inputs, and carries out the machine's actions. No Discord rule is decided here.
//!
//! Around each session sit the hand-over duties (DESIGN.md §3–4): take the shard's lease before
//! connecting, resume from the saved session if there is one, and on shutdown save the session,
//! close with a resumable code and release the lease, in that order. The Redis side of that
//! (lease, saved session, fatal marker) is in [`custody`], the end of a session in [`ending`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, info, warn};

use crate::gateway::close_code;
use crate::gateway::commands::{self, gateway_query};
use crate::gateway::compression::ZlibStream;
use crate::gateway::envelope;
use crate::gateway::opcode::Opcode;
use crate::gateway::ratelimit::CommandLimiter;
use crate::gateway::session::{Action, Input, Machine, Phase, Resumable, SessionConfig, Target};
use crate::handler::{Dispatch, Handler};
use crate::handover::acting::Acting;
use crate::identify::queue::{IdentifyQueue, Permit, WaitReason};
use crate::shard::records::Records;
use crate::worker::board::{Board, LiveSession, Slot};
use crate::worker::metrics::{EventLabels, ReasonLabels, ShardLabels};
use shardset_contract::token::Token;
use shardset_contract::{FatalMarker, ShardState};

mod custody;
mod ending;
pub mod records;

pub use custody::abandon;
use custody::{fatal_marker, marker_cleared, take_lease};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The reason (prefix) a shard stopped by the Identify-loop guard reports (`P:status`, `/readyz`).
pub const IDENTIFY_LOOP: &str = "IdentifyLoop";
type PermitFuture = Pin<Box<dyn Future<Output = Permit> + Send>>;

/// Settings shared by every shard of a worker.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// `num_shards` of the layout.
    pub total: u32,
    /// Gateway intents.
    pub intents: u64,
    /// The gateway URL from `GET /gateway/bot`.
    pub gateway_url: String,
    pub session: SessionConfig,
    /// TTL of the shard lease.
    pub lease_ttl: Duration,
    /// TTL of saved sessions (the resume window).
    pub resume_window: Duration,
    /// This pod's name (lease owners, logs).
    pub pod: String,
    /// WebSocket read buffer per connection (small: thousands of idle shards each hold one).
    pub read_buffer: usize,
}

/// What every shard of a worker shares.
pub struct Shared<H> {
    pub config: ShardConfig,
    pub token: Token,
    pub queue: Arc<dyn IdentifyQueue>,
    /// Leases and saved sessions; `None` runs without hand-over (tests, single process).
    pub records: Option<Records>,
    pub handler: Arc<H>,
    pub board: Arc<Board>,
    /// The layout's role during reshards (`P:active-layout`): whether and how it acts.
    pub acting: Arc<Acting>,
}

/// How a shard's task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Shut down; the session was saved for the next owner.
    Stopped,
    /// Closed for good (the gateway's close code; 0: stopped by the Identify-loop guard) and
    /// not retried while its marker (`Keys::fatal`) stayed.
    Fatal(u16),
}

enum SessionEnd {
    Stopped,
    /// Closed for good. `unwritten`: the marker Redis did not take yet (retried while waiting).
    /// `stood_down`: this process never tried (a marker stopped it): it tries once the marker
    /// is gone. A shard the gateway closed in this process stays down until the process ends:
    /// its configuration (token, intents) is the one Discord refused, and a retry after the
    /// operator cleared the markers for a new configuration would only mark the shard again,
    /// blocking the replacement pod that has the new one.
    Fatal {
        code: u16,
        unwritten: Option<FatalMarker>,
        stood_down: bool,
    },
    LeaseLost,
}

/// The longest a stopping shard waits for its handler to settle what it handled.
const SETTLE_WAIT: Duration = Duration::from_secs(5);

/// How often a shard closed for good looks whether its marker is still there.
const FATAL_MARKER_POLL: Duration = Duration::from_secs(5);

/// What to resume after taking the lease again: the saved record, or the session this task
/// still holds in memory when that is newer: the record is missing (Redis restarted without its
/// data while the shard stood down) or older (a checkpoint behind what this task handled). A
/// record of another session, or of the same session moved on, is another owner's: it wins.
fn newest(
    saved: Option<(Resumable, u64)>,
    held: Option<(Resumable, u64)>,
) -> Option<(Resumable, u64)> {
    match (saved, held) {
        (None, held) => held,
        (Some(saved), Some(held))
            if saved.0.session_id == held.0.session_id && held.1 >= saved.1 =>
        {
            Some(held)
        }
        (saved, _) => saved,
    }
}

/// Runs shard `shard` until `shutdown` turns true or the gateway closes it fatally.
pub async fn run<H: Handler>(
    shared: Arc<Shared<H>>,
    shard: u32,
    mut shutdown: watch::Receiver<bool>,
) -> Exit {
    let Some(slot) = shared.board.slot(shard).cloned() else {
        warn!(shard_id = shard, "shard is not on this worker's board");
        return Exit::Stopped;
    };
    // The session this task held when it lost its lease (self-fencing, or another owner).
    let mut held: Option<(Resumable, u64)> = None;
    loop {
        let owner = format!("{}/{:08x}", shared.config.pod, rand::random::<u32>());
        let saved = match &shared.records {
            Some(records) => {
                match Box::pin(take_lease(&shared, &slot, records, &owner, &mut shutdown)).await {
                    Some(saved) => newest(saved, held.take()),
                    None => {
                        shared.board.set_state(shard, ShardState::Stopped, None);
                        return Exit::Stopped;
                    }
                }
            }
            None => None,
        };
        if let Some((_, seq)) = &saved {
            slot.set_handled_seq(*seq);
            info!(shard_id = shard, seq, "resuming the saved session");
        }
        let seed = rand::random::<u64>();
        let machine = Machine::new(shared.config.session.clone(), saved, seed);
        let mut runner = Runner::new(&shared, &slot, shard, machine, owner);
        let end = runner.run(&mut shutdown).await;
        if matches!(end, SessionEnd::LeaseLost) {
            held = runner.machine.resumable().cloned().map(|r| {
                let handled = slot.handled_seq();
                (r, shared.handler.settled_seq(shard, handled))
            });
        }
        drop(runner);
        match end {
            SessionEnd::Stopped => return Exit::Stopped,
            SessionEnd::Fatal {
                code,
                unwritten,
                stood_down,
            } => {
                if marker_cleared(&shared, shard, unwritten, stood_down, &mut shutdown).await {
                    info!(
                        shard_id = shard,
                        "the shard's fatal marker was deleted: trying again"
                    );
                    continue;
                }
                return Exit::Fatal(code);
            }
            SessionEnd::LeaseLost => continue,
        }
    }
}

enum Wake {
    Frame(Option<Result<Message, WsError>>),
    Heartbeat,
    Deadline,
    Permit(Permit),
    Shutdown,
    LeaseLost,
}

/// The gateway's `READY` fields we keep.
#[derive(Deserialize)]
struct ReadyData {
    session_id: String,
    resume_gateway_url: String,
}

#[derive(Deserialize)]
struct HelloData {
    heartbeat_interval: u64,
}

struct Runner<'a, H> {
    shared: &'a Shared<H>,
    slot: &'a Slot,
    shard: u32,
    owner: String,
    machine: Machine,
    ws: Option<Ws>,
    /// The connection's inflater (taken out while a payload borrows its output).
    inflater: Option<ZlibStream>,
    limiter: CommandLimiter,
    heartbeat_at: Option<Instant>,
    heartbeat_sent: Option<Instant>,
    deadline_at: Option<Instant>,
    /// Timers kept across loop turns (re-registering two timers per dispatch is measurable).
    heartbeat_timer: Pin<Box<tokio::time::Sleep>>,
    deadline_timer: Pin<Box<tokio::time::Sleep>>,
    permit_future: Option<PermitFuture>,
    permit: Option<Permit>,
    permit_asked: Option<Instant>,
    connections: u64,
    phase: Phase,
    /// From sending Resume until RESUMED: the dispatches in between are replays.
    replaying: bool,
    /// Per-event counters, looked up without allocating after the first of each kind.
    counters: HashMap<Box<str>, Counter>,
    labels: ShardLabels,
}

impl<'a, H: Handler> Runner<'a, H> {
    fn new(
        shared: &'a Shared<H>,
        slot: &'a Slot,
        shard: u32,
        machine: Machine,
        owner: String,
    ) -> Self {
        Self {
            shared,
            slot,
            shard,
            owner,
            machine,
            ws: None,
            inflater: None,
            limiter: CommandLimiter::new(Duration::from_secs(41)),
            heartbeat_at: None,
            heartbeat_sent: None,
            deadline_at: None,
            heartbeat_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            deadline_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            permit_future: None,
            permit: None,
            permit_asked: None,
            connections: 0,
            phase: Phase::Idle,
            replaying: false,
            counters: HashMap::new(),
            labels: ShardLabels { shard },
        }
    }

    fn board(&self) -> &Board {
        &self.shared.board
    }

    async fn run(&mut self, shutdown: &mut watch::Receiver<bool>) -> SessionEnd {
        let mut pending = self.machine.step(Input::Start);
        // Long-lived futures for the rare events, polled cheaply on every turn.
        let shutdown_requested = shutdown.wait_for(|s| *s);
        tokio::pin!(shutdown_requested);
        let slot = self.slot;
        let lease_lost = slot.lease_lost.notified();
        tokio::pin!(lease_lost);
        loop {
            // Carry out the actions; they may produce more inputs (connect results).
            let mut i = 0;
            while i < pending.len() {
                let action = pending[i].clone();
                i += 1;
                // Boxed: actions are rare (connects, heartbeats) and their futures are large;
                // inline they would sit in every idle shard's task.
                match Box::pin(self.execute(action)).await {
                    Step::Continue => {}
                    Step::Inputs(inputs) => {
                        for input in inputs {
                            pending.extend(self.machine.step(input));
                        }
                    }
                    Step::End(end) => return end,
                }
            }
            pending.clear();
            self.report_phase();

            // Frames first: while a socket has data the other branches are not even polled.
            // A frame already in tungstenite's buffer is returned without touching the socket
            // (no cooperative budget spent), so a shard that is behind always has a frame ready
            // and would never see its heartbeat timer: check that deadline by hand first (one
            // clock read per turn), or a slow handler turns into a zombie connection.
            let heartbeat_due = self.heartbeat_at.is_some_and(|at| Instant::now() >= at);
            let wake = if heartbeat_due {
                Wake::Heartbeat
            } else {
                tokio::select! {
                    biased;
                    frame = next_frame(&mut self.ws) => Wake::Frame(frame),
                    () = &mut self.heartbeat_timer, if self.heartbeat_at.is_some() => Wake::Heartbeat,
                    () = &mut self.deadline_timer, if self.deadline_at.is_some() => Wake::Deadline,
                    permit = await_permit(&mut self.permit_future) => Wake::Permit(permit),
                    _ = &mut shutdown_requested => Wake::Shutdown,
                    () = &mut lease_lost => Wake::LeaseLost,
                }
            };
            let inputs = match wake {
                Wake::Frame(frame) => self.on_frame(frame).await,
                Wake::Heartbeat => {
                    self.heartbeat_at = None;
                    vec![Input::HeartbeatDue]
                }
                Wake::Deadline => {
                    self.deadline_at = None;
                    vec![Input::Deadline]
                }
                Wake::Permit(permit) => {
                    self.permit_future = None;
                    if let Some(asked) = self.permit_asked.take() {
                        self.board()
                            .metrics()
                            .identify_wait
                            .observe(asked.elapsed().as_secs_f64());
                    }
                    self.permit = Some(permit);
                    vec![Input::PermitGranted]
                }
                Wake::Shutdown => vec![Input::Shutdown],
                Wake::LeaseLost => {
                    if !self.slot.lease_lost_flag.load(Ordering::Acquire) {
                        lease_lost.set(slot.lease_lost.notified());
                        continue;
                    }
                    self.drop_permit().await;
                    self.close(close_code::RESUMABLE_CLOSE).await;
                    return SessionEnd::LeaseLost;
                }
            };
            for input in inputs {
                pending.extend(self.machine.step(input));
            }
        }
    }

    fn report_phase(&mut self) {
        let phase = self.machine.phase();
        if phase == self.phase {
            return;
        }
        self.phase = phase;
        let state = match phase {
            Phase::Idle | Phase::Connecting | Phase::AwaitingHello if self.connections <= 1 => {
                ShardState::Connecting
            }
            Phase::Idle | Phase::Connecting | Phase::AwaitingHello | Phase::Backoff => {
                ShardState::Reconnecting
            }
            Phase::AwaitingPermit => ShardState::WaitingForGate,
            Phase::Identifying => ShardState::Identifying,
            Phase::Resuming => ShardState::Resuming,
            Phase::Active => ShardState::Ready,
            Phase::Fatal(_) | Phase::IdentifyLoop => ShardState::Fatal,
            Phase::Stopped => ShardState::Stopped,
        };
        let reason = match phase {
            Phase::Fatal(code) => Some(close_code::fatal_reason(code).to_owned()),
            Phase::IdentifyLoop => Some(self.identify_loop_reason()),
            _ => None,
        };
        self.board().set_state(self.shard, state, reason);
        if self.machine.resumable().is_none() {
            self.slot.lock().session = None;
        }
    }

    fn identify_loop_reason(&self) -> String {
        format!(
            "{IDENTIFY_LOOP}: {} Identifies in a row led to no session lasting {:?}",
            self.machine.identify_streak(),
            self.shared.config.session.stable_after
        )
    }

    async fn execute(&mut self, action: Action) -> Step {
        match action {
            Action::Connect(target) => return Step::Inputs(vec![self.connect(target).await]),
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
                let sent = self.send(payload).await;
                // A failed send may still have put the Identify on the wire (a write error
                // after some bytes left, a connection reset after the flush): count it as sent,
                // so the window runs and the session start stays spent. Giving the gate back
                // could let a second Identify into the bucket within 5 s.
                permit.sent().await;
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
            Action::Zombie => warn!(
                shard_id = self.shard,
                "no heartbeat ACK: zombie connection, reconnecting"
            ),
            Action::Stop { code } => return Step::End(Box::pin(self.stop(code)).await),
        }
        Step::Continue
    }

    async fn drop_permit(&mut self) {
        self.permit_future = None;
        self.permit_asked = None;
        if let Some(permit) = self.permit.take() {
            permit.release().await;
        }
    }

    async fn connect(&mut self, target: Target) -> Input {
        let base = match &target {
            Target::Gateway => self.shared.config.gateway_url.as_str(),
            Target::Resume(url) => url.as_str(),
        };
        let Some(url) = gateway_query(base) else {
            warn!(shard_id = self.shard, url = base, "invalid gateway URL");
            return Input::ConnectFailed;
        };
        self.connections += 1;
        if self.connections > 1 {
            self.board()
                .metrics()
                .reconnects
                .get_or_create(&self.labels)
                .inc();
        }
        let config = WebSocketConfig::default()
            .read_buffer_size(self.shared.config.read_buffer)
            .write_buffer_size(0);
        let connect =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true);
        match tokio::time::timeout(self.shared.config.session.hello_timeout, connect).await {
            Ok(Ok((ws, _))) => {
                self.ws = Some(ws);
                self.inflater = Some(ZlibStream::new());
                Input::Connected
            }
            Ok(Err(e)) => {
                debug!(shard_id = self.shard, error = %e, "gateway connect failed");
                Input::ConnectFailed
            }
            Err(_) => Input::ConnectFailed,
        }
    }

    async fn close(&mut self, code: u16) {
        if let Some(mut ws) = self.ws.take() {
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: "".into(),
            };
            // The close handshake (RFC 6455 §5.5.1): send ours, then read until the gateway's
            // answer. Exiting right after sending could reset the connection with frames unread,
            // and the gateway might never see our code (1000 would then not end the session).
            // Boxed: rare, and large next to an idle shard's state.
            let closing = Box::pin(tokio::time::timeout(Duration::from_secs(2), async move {
                if ws.close(Some(frame)).await.is_ok() {
                    while let Some(Ok(message)) = ws.next().await {
                        if message.is_close() {
                            break;
                        }
                    }
                }
            }));
            let _ = closing.await;
        }
    }

    async fn send(&mut self, payload: String) -> bool {
        let Some(ws) = self.ws.as_mut() else {
            return false;
        };
        match ws.send(Message::text(payload)).await {
            Ok(()) => true,
            Err(e) => {
                debug!(shard_id = self.shard, error = %e, "gateway send failed");
                false
            }
        }
    }

    async fn on_frame(&mut self, frame: Option<Result<Message, WsError>>) -> Vec<Input> {
        let bytes = match frame {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Text(text))) => {
                let text = text.to_string();
                return Box::pin(self.on_payload_owned(text.into_bytes())).await;
            }
            Some(Ok(Message::Close(frame))) => {
                self.ws = None;
                let code = frame.map(|f| u16::from(f.code));
                info!(shard_id = self.shard, code, "gateway closed the connection");
                return vec![Input::Closed { code }];
            }
            Some(Ok(_)) => return Vec::new(),
            Some(Err(e)) => {
                debug!(shard_id = self.shard, error = %e, "gateway connection lost");
                self.ws = None;
                return vec![Input::Closed { code: None }];
            }
            None => {
                self.ws = None;
                return vec![Input::Closed { code: None }];
            }
        };
        let Some(mut inflater) = self.inflater.take() else {
            return Vec::new();
        };
        let inputs = match inflater.push(&bytes) {
            Ok(Some(json)) => self.on_payload(json).await,
            Ok(None) => Vec::new(),
            Err(e) => {
                warn!(shard_id = self.shard, error = %e, "corrupt zlib stream; reconnecting");
                self.close(close_code::RESUMABLE_CLOSE).await;
                vec![Input::Closed { code: None }]
            }
        };
        inflater.recycle();
        if self.ws.is_some() && self.inflater.is_none() {
            self.inflater = Some(inflater);
        }
        inputs
    }

    async fn on_payload_owned(&mut self, json: Vec<u8>) -> Vec<Input> {
        self.on_payload(&json).await
    }

    async fn on_payload(&mut self, json: &[u8]) -> Vec<Input> {
        let envelope = match envelope::parse(json) {
            Ok(e) => e,
            Err(e) => {
                warn!(shard_id = self.shard, error = %e, "unparsable gateway payload skipped");
                return Vec::new();
            }
        };
        match envelope.opcode() {
            Some(Opcode::Dispatch) => {
                let (Some(seq), Some(event)) = (envelope.s, envelope.t.as_deref()) else {
                    return Vec::new();
                };
                let data = envelope.d.unwrap_or("null");
                // The machine learns the seq first (heartbeats carry it), then the handler runs.
                let actions = self.machine.step(Input::Dispatch { seq });
                debug_assert!(actions.is_empty());
                let input = match event {
                    "READY" => match serde_json::from_str::<ReadyData>(data) {
                        Ok(ready) => Some(Input::Ready(Resumable {
                            session_id: ready.session_id,
                            resume_gateway_url: ready.resume_gateway_url,
                        })),
                        Err(e) => {
                            warn!(shard_id = self.shard, error = %e, "malformed READY");
                            None
                        }
                    },
                    "RESUMED" => {
                        self.replaying = false;
                        Some(Input::Resumed)
                    }
                    _ => None,
                };
                let acting = &*self.shared.acting;
                if self.replaying && acting.reshard_under_way() {
                    self.board().metrics().handover_replays.inc();
                }
                let dispatch = Dispatch {
                    shard: self.shard,
                    seq,
                    event,
                    data,
                    active: acting.may_act(),
                    acting,
                };
                self.shared.handler.dispatch(dispatch).await;
                self.slot.set_handled_seq(seq);
                self.count(event);
                input.into_iter().collect()
            }
            Some(Opcode::Heartbeat) => vec![Input::HeartbeatRequest],
            Some(Opcode::Reconnect) => {
                info!(shard_id = self.shard, "gateway asked to reconnect (op 7)");
                vec![Input::Reconnect]
            }
            Some(Opcode::InvalidSession) => {
                let resumable = envelope.d.is_some_and(|d| d.trim() == "true");
                info!(shard_id = self.shard, resumable, "invalid session (op 9)");
                vec![Input::InvalidSession { resumable }]
            }
            Some(Opcode::Hello) => match envelope.d.map(serde_json::from_str::<HelloData>) {
                Some(Ok(hello)) => {
                    let interval = Duration::from_millis(hello.heartbeat_interval.max(1));
                    self.limiter = CommandLimiter::new(interval);
                    vec![Input::Hello {
                        heartbeat_interval: interval,
                    }]
                }
                _ => {
                    warn!(shard_id = self.shard, "malformed Hello");
                    Vec::new()
                }
            },
            Some(Opcode::HeartbeatAck) => {
                if let Some(sent) = self.heartbeat_sent.take() {
                    self.board()
                        .metrics()
                        .heartbeat_latency
                        .get_or_create(&self.labels)
                        .set(sent.elapsed().as_secs_f64());
                }
                vec![Input::HeartbeatAck]
            }
            _ => Vec::new(),
        }
    }

    fn count(&mut self, event: &str) {
        if let Some(counter) = self.counters.get(event) {
            counter.inc();
            return;
        }
        let counter = self
            .board()
            .metrics()
            .events
            .get_or_create(&EventLabels {
                event: event.to_owned(),
            })
            .clone();
        counter.inc();
        self.counters.insert(event.into(), counter);
    }
}

enum Step {
    Continue,
    Inputs(Vec<Input>),
    End(SessionEnd),
}

async fn next_frame(ws: &mut Option<Ws>) -> Option<Result<Message, WsError>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

async fn await_permit(future: &mut Option<PermitFuture>) -> Permit {
    match future {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_of_the_record_and_the_held_session_is_resumed() {
        let session = |id: &str, seq: u64| {
            Some((
                Resumable {
                    session_id: id.into(),
                    resume_gateway_url: "ws://r".into(),
                },
                seq,
            ))
        };
        assert_eq!(
            newest(None, session("a", 5)),
            session("a", 5),
            "record lost"
        );
        assert_eq!(newest(session("a", 3), session("a", 5)), session("a", 5));
        assert_eq!(
            newest(session("a", 9), session("a", 5)),
            session("a", 9),
            "moved on by another owner"
        );
        assert_eq!(
            newest(session("b", 1), session("a", 5)),
            session("b", 1),
            "another owner's session"
        );
        assert_eq!(newest(session("a", 3), None), session("a", 3));
        assert_eq!(newest(None, None), None);
    }
}
