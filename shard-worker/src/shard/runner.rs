//! The select loop of one session: feeds the machine what happens (a frame, a timer, the
//! Identify permit, shutdown, a lost lease) and carries out the actions it returns
//! ([`super::actions`]), reporting the phase on the board. Frames are decoded in
//! [`super::frames`], the socket handled in [`super::connection`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::debug;

use super::commanding::WaitingMembers;
use super::config::Shared;
use super::connection::Connection;
use super::lag::DispatchAge;
use crate::bus::room::RoomWait;
use crate::command::Inbox;
use crate::gateway::close_code;
use crate::gateway::compression::Decoder;
use crate::gateway::ratelimit::CommandLimiter;
use crate::gateway::session::{Input, Machine, Phase, Target};
use crate::handler::Handler;
use crate::identify::queue::{InFlight, Permit};
use crate::worker::board::{Board, Slot};
use crate::worker::metrics::ShardLabels;
use shardset_contract::{FatalMarker, SILENT_REASON, ShardState};

pub(super) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub(super) type PermitFuture = Pin<Box<dyn Future<Output = Permit> + Send>>;

/// The reason (prefix) a shard stopped by the Identify-loop guard reports (`P:status`, `/readyz`).
pub const IDENTIFY_LOOP: &str = "IdentifyLoop";

/// The reason a shard whose connection fell silent after `unacked` heartbeats reports while it
/// heals (`P:status`, `/readyz`), starting with [`SILENT_REASON`] until its session is live
/// again.
pub(super) fn silent_reason(unacked: u32) -> String {
    format!(
        "{SILENT_REASON}: {unacked} heartbeats in a row got no ACK (a zombie connection); reconnecting to resume"
    )
}

/// What the board shows for a shard in `phase` on its `connections`-th connection, with the
/// reason of a silent connection it heals from, if any: a silent shard says so until its session
/// is live again (or the shard stops for good, which says why instead).
pub(super) fn shard_report(
    phase: Phase,
    connections: u64,
    silent: Option<&str>,
) -> (ShardState, Option<String>) {
    let state = match phase {
        Phase::Idle | Phase::Connecting | Phase::AwaitingHello if connections <= 1 => {
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
        Phase::Active | Phase::Stopped | Phase::IdentifyLoop => None,
        _ => silent.map(str::to_owned),
    };
    (state, reason)
}

/// How one session (one lease held) ended.
pub(super) enum SessionEnd {
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

enum Wake {
    Frame(Option<Result<Message, WsError>>),
    Heartbeat,
    Deadline,
    /// A command arrived, or the head's time came (room in the limiter, or its wait ran out).
    Command,
    Permit(Permit),
    BusRoom,
    Shutdown,
    LeaseLost,
}

/// One session of one shard: the machine and everything its actions touch.
pub(super) struct Runner<'a, H> {
    pub(super) shared: &'a Shared<H>,
    pub(super) slot: &'a Slot,
    pub(super) shard: u32,
    pub(super) owner: String,
    pub(super) machine: Machine,
    pub(super) ws: Option<Connection<'a>>,
    /// The connection's decoder (taken out while a payload borrows its output).
    pub(super) decoder: Option<Decoder>,
    pub(super) limiter: CommandLimiter,
    pub(super) heartbeat_at: Option<Instant>,
    /// A clock read taken this turn once the last dispatch's handler returned: the next turn's
    /// heartbeat check uses it instead of reading the clock again (none when an action ran in
    /// between: an action may wait).
    pub(super) turn_clock: Option<Instant>,
    pub(super) heartbeat_sent: Option<Instant>,
    pub(super) deadline_at: Option<Instant>,
    /// Timers kept across loop turns (re-registering two timers per dispatch is measurable).
    pub(super) heartbeat_timer: Pin<Box<tokio::time::Sleep>>,
    pub(super) deadline_timer: Pin<Box<tokio::time::Sleep>>,
    pub(super) permit_future: Option<PermitFuture>,
    pub(super) permit: Option<Permit>,
    pub(super) permit_asked: Option<Instant>,
    /// The Identify sent on this connection and not answered yet: its window starts at the
    /// answer ([`crate::identify::queue::InFlight`]).
    pub(super) identify_in_flight: Option<InFlight>,
    pub(super) connections: u64,
    pub(super) phase: Phase,
    /// From sending Resume until RESUMED: the dispatches in between are replays.
    pub(super) replaying: bool,
    /// Set while the bus has no room for this shard's next dispatch: the gateway is not read
    /// until it resolves ([`Runner::pause_reading`]).
    pub(super) bus_room: Option<RoomWait>,
    /// A connection the machine asked for while the gateway was paused, opened on resuming.
    pub(super) connect_after_pause: Option<Target>,
    /// Per-event counters, looked up without allocating after the first of each kind.
    pub(super) counters: HashMap<Box<str>, Counter>,
    pub(super) labels: ShardLabels,
    /// The shard's `last_dispatch_timestamp_seconds`, set on every dispatch (looked up once).
    pub(super) last_dispatch: Gauge<f64, AtomicU64>,
    /// The layout's dispatch age histograms and the lag bound.
    pub(super) ages: DispatchAge,
    /// The shard's command channel (lent by the task for this session; `None`: no commands).
    pub(super) inbox: Option<Inbox>,
    /// When to look at the inbox's head again.
    pub(super) command_at: Option<Instant>,
    pub(super) command_timer: Pin<Box<tokio::time::Sleep>>,
    /// Look at the inbox before waiting again (liveness changed, an order arrived).
    pub(super) commands_due: bool,
    /// op 8 requests sent on this session, waiting for their chunks.
    pub(super) members: WaitingMembers,
    /// Set when the connection was found silent ([`silent_reason`]), until the session is live
    /// again: the board's reason meanwhile.
    pub(super) silent: Option<String>,
}

impl<'a, H: Handler> Runner<'a, H> {
    pub(super) fn new(
        shared: &'a Shared<H>,
        slot: &'a Slot,
        shard: u32,
        machine: Machine,
        owner: String,
        inbox: Option<Inbox>,
    ) -> Self {
        Self {
            shared,
            slot,
            shard,
            owner,
            machine,
            ws: None,
            decoder: None,
            limiter: CommandLimiter::new(Duration::from_secs(41), shared.config.send_window),
            heartbeat_at: None,
            turn_clock: None,
            heartbeat_sent: None,
            deadline_at: None,
            heartbeat_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            deadline_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            permit_future: None,
            permit: None,
            permit_asked: None,
            identify_in_flight: None,
            connections: 0,
            phase: Phase::Idle,
            replaying: false,
            bus_room: None,
            connect_after_pause: None,
            counters: HashMap::new(),
            labels: ShardLabels { shard },
            last_dispatch: shared
                .board
                .metrics()
                .last_dispatch
                .get_or_create(&ShardLabels { shard })
                .clone(),
            ages: DispatchAge::new(
                &shared.board,
                shared.acting.layout(),
                shared.acting.lag_bound_ms(),
            ),
            inbox,
            command_at: None,
            command_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            commands_due: true,
            members: WaitingMembers::default(),
            silent: None,
        }
    }

    pub(super) fn board(&self) -> &Board {
        &self.shared.board
    }

    pub(super) async fn run(&mut self, shutdown: &mut watch::Receiver<bool>) -> SessionEnd {
        let mut pending = self.machine.step(Input::Start);
        // Long-lived futures for the rare events, polled cheaply on every turn.
        let shutdown_requested = shutdown.wait_for(|s| *s);
        tokio::pin!(shutdown_requested);
        let slot = self.slot;
        let lease_lost = slot.lease_lost.notified();
        tokio::pin!(lease_lost);
        loop {
            // A lost lease first, before any action: the fence may have shut the socket down
            // (`worker/fence.rs`), and the machine, seeing it closed, would reconnect and resume
            // without the lease.
            if self.slot.lease_lost_flag.load(Ordering::Acquire) {
                // Boxed, as every rare future here: inline, the largest of them sets the size
                // of every shard's task for its whole life.
                return Box::pin(self.give_up_session()).await;
            }
            // The last handler's clock read stands for now only if nothing can wait before the
            // heartbeat check (no action, no command).
            let turn_clock = self
                .turn_clock
                .take()
                .filter(|_| pending.is_empty() && !self.commands_due);
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
            if self.commands_due {
                Box::pin(self.advance_commands()).await;
            }

            // Frames first: while a socket has data the other branches are not even polled.
            // A frame already in tungstenite's buffer is returned without touching the socket
            // (no cooperative budget spent), so a shard that is behind always has a frame ready
            // and would never see its heartbeat timer: check that deadline by hand first (one
            // clock read per turn, the last handler's when it stands: `turn_clock`), or a slow
            // handler turns into a zombie connection.
            let heartbeat_due = self
                .heartbeat_at
                .is_some_and(|at| turn_clock.unwrap_or_else(Instant::now) >= at);
            let wake = if heartbeat_due {
                Wake::Heartbeat
            } else {
                tokio::select! {
                    biased;
                    frame = next_frame(&mut self.ws), if self.bus_room.is_none() => Wake::Frame(frame),
                    () = await_bus_room(&mut self.bus_room) => Wake::BusRoom,
                    () = &mut self.heartbeat_timer, if self.heartbeat_at.is_some() => Wake::Heartbeat,
                    () = &mut self.deadline_timer, if self.deadline_at.is_some() => Wake::Deadline,
                    permit = await_permit(&mut self.permit_future) => Wake::Permit(permit),
                    _ = &mut shutdown_requested => Wake::Shutdown,
                    () = &mut lease_lost => Wake::LeaseLost,
                    () = receive_order(&mut self.inbox) => Wake::Command,
                    () = &mut self.command_timer, if self.command_at.is_some() => Wake::Command,
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
                Wake::Command => {
                    self.command_at = None;
                    self.commands_due = true;
                    continue;
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
                Wake::BusRoom => {
                    self.bus_room = None;
                    debug!(shard_id = self.shard, "the bus has room again: reading on");
                    match self.connect_after_pause.take() {
                        // Boxed: a WebSocket handshake's state is kilobytes.
                        Some(target) => vec![Box::pin(self.connect(target)).await],
                        None => Vec::new(),
                    }
                }
                Wake::Shutdown => vec![Input::Shutdown],
                Wake::LeaseLost => {
                    // Ended at the top of the loop if the flag is set; else a stale wake-up.
                    lease_lost.set(slot.lease_lost.notified());
                    continue;
                }
            };
            for input in inputs {
                match input {
                    Input::Ready(_) | Input::InvalidSession { .. } => {
                        self.turn_clock = None;
                        self.identify_answered().await;
                    }
                    Input::Closed { .. } => {
                        self.turn_clock = None;
                        self.identify_closed().await;
                    }
                    _ => {}
                }
                pending.extend(self.machine.step(input));
            }
        }
    }

    /// The lease is lost: the session goes (closed resumably, if the fence left the socket
    /// open) and the task waits for the lease again.
    async fn give_up_session(&mut self) -> SessionEnd {
        self.close(close_code::RESUMABLE_CLOSE).await;
        self.drop_permit().await;
        SessionEnd::LeaseLost
    }

    pub(super) fn report_phase(&mut self) {
        let phase = self.machine.phase();
        if phase == self.phase {
            return;
        }
        if (phase == Phase::Active) != (self.phase == Phase::Active) {
            self.note_liveness(phase);
        }
        self.phase = phase;
        if phase == Phase::Active {
            self.silent = None;
        }
        let (state, mut reason) = shard_report(phase, self.connections, self.silent.as_deref());
        if phase == Phase::IdentifyLoop {
            reason = Some(self.identify_loop_reason());
        }
        self.board().set_state(self.shard, state, reason);
        if self.machine.resumable().is_none() {
            self.slot.lock().session = None;
        }
    }

    /// The bus has no room for this shard's next dispatch (in flight at its bound, or the bus
    /// refusing): stop reading the gateway until it has (`docs/bus-protocol.md`, "What the
    /// publisher must do", 4). Heartbeats, timers and shutdown go on; a long pause leaves the
    /// heartbeat ACKs unread, so the connection turns zombie and closes resumably; the next
    /// connection waits for the end of the pause, and the shard resumes (no Identify).
    pub(super) fn pause_reading(&mut self) {
        if let Some(bus) = &self.shared.bus {
            debug!(
                shard_id = self.shard,
                "no room on the bus: pausing the gateway"
            );
            self.bus_room = Some(bus.wait_for_room(self.shard));
        }
    }

    pub(super) fn identify_loop_reason(&self) -> String {
        format!(
            "{IDENTIFY_LOOP}: {} Identifies in a row led to no session lasting {:?}",
            self.machine.identify_streak(),
            self.shared.config.session.stable_after
        )
    }
}

/// What carrying out one action led to.
pub(super) enum Step {
    Continue,
    Inputs(Vec<Input>),
    End(SessionEnd),
}

async fn next_frame(ws: &mut Option<Connection<'_>>) -> Option<Result<Message, WsError>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

/// The next order of the inbox, while it has no head (pending otherwise, or without one).
async fn receive_order(inbox: &mut Option<Inbox>) {
    match inbox {
        Some(inbox) if !inbox.holds_head() => inbox.receive().await,
        _ => std::future::pending().await,
    }
}

async fn await_bus_room(wait: &mut Option<RoomWait>) {
    match wait {
        Some(wait) => wait.await,
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
    fn a_silent_shard_says_so_until_its_session_is_live_again() {
        let silent = silent_reason(1);
        assert!(silent.starts_with(SILENT_REASON), "{silent}");
        for (phase, state) in [
            (Phase::Connecting, ShardState::Reconnecting),
            (Phase::AwaitingHello, ShardState::Reconnecting),
            (Phase::Backoff, ShardState::Reconnecting),
            (Phase::Resuming, ShardState::Resuming),
            // A resume that failed: the Identify that follows heals it too.
            (Phase::AwaitingPermit, ShardState::WaitingForGate),
            (Phase::Identifying, ShardState::Identifying),
        ] {
            assert_eq!(
                shard_report(phase, 2, Some(&silent)),
                (state, Some(silent.clone())),
                "{phase:?}"
            );
        }
        assert_eq!(
            shard_report(Phase::Active, 2, Some(&silent)),
            (ShardState::Ready, None)
        );
        assert_eq!(
            shard_report(Phase::Fatal(4004), 2, Some(&silent)).0,
            ShardState::Fatal
        );
        assert_ne!(
            shard_report(Phase::Fatal(4004), 2, Some(&silent)).1,
            Some(silent.clone()),
            "a fatal close says why instead"
        );
        assert_eq!(
            shard_report(Phase::Connecting, 1, None),
            (ShardState::Connecting, None)
        );
    }
}
