//! One gateway connection: one task owns the socket, so frames (and the zlib-stream context) stay
//! in order without locks. This file holds the connection's state, its select loop (shutdown,
//! control commands, client frames, its session's new dispatches, the heartbeat and reconnect
//! deadlines) and the close; the files beside it hold what each arm does:
//! - `inbound.rs`: the client's frames (the send limit, decoding, Heartbeat, Identify, Resume);
//! - `client_commands.rs`: the commands of an authenticated client (op 3, 4, 8, 31, 43);
//! - `outbound.rs`: writing Hello, answers and the session's dispatches, and counting bytes;
//! - `commands.rs`: what the control plane asks (closes, superseded sessions, injected faults).

mod client_commands;
mod commands;
mod inbound;
mod outbound;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::encoder::Encoder;
pub use super::encoder::Transport;
use crate::control::Rule;
use crate::payloads;
use crate::rules::{self, CloseCode, Micros, SendLimiter};
use crate::session::{Entry, Session};
use crate::state::logs::Origin;
use crate::state::{Command, Fake};

/// Dispatches written per wake-up before looking at the socket again.
const BATCH: usize = 256;
/// How long to wait for the client's close frame after sending ours.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// What the upgrade request asked for.
#[derive(Debug, Clone)]
pub struct Params {
    pub transport: Transport,
    /// `Some(v)` when `v` is not a version the gateway serves (closes with 4012).
    pub bad_version: Option<String>,
    /// `Some(e)` when `encoding` is not `json` (the fake does not speak ETF).
    pub bad_encoding: Option<String>,
    /// This connection's resume URL (READY `resume_gateway_url`).
    pub resume_url: String,
    /// When the connection's bytes arrived (kernel receive timestamps, `crate::arrival`).
    pub arrivals: crate::arrival::Arrivals,
    /// The connection came in on a resume URL: the only place a Resume is accepted.
    pub on_resume_url: bool,
}

/// How the connection ended.
enum End {
    /// Close frame sent with this code.
    Closed(u16),
    /// The client closed (with its code, if any) or the TCP connection dropped.
    ByClient(Option<u16>),
    /// We dropped the TCP connection (fault).
    Dropped,
}

struct Connection<S> {
    fake: Arc<Fake>,
    id: u64,
    ws: WebSocketStream<S>,
    encoder: Encoder,
    params: Params,
    limiter: SendLimiter,
    session: Option<Arc<Session>>,
    /// The last sequence number written.
    cursor: u64,
    /// READY/RESUMED entries from this sequence number on belong to this connection.
    fresh_from: u64,
    /// Fires when the client has missed its heartbeat; reset by each heartbeat.
    heartbeat_deadline: Pin<Box<Sleep>>,
    /// When the last heartbeat (or Hello) arrived (or was sent), to see late heartbeats.
    last_beat: Micros,
    /// After an injected op 7: fires when the client has not reconnected in time.
    reconnect_deadline: Option<Pin<Box<Sleep>>>,
    zombie: bool,
    delay: Duration,
    scratch: Vec<Entry>,
    messages: Vec<Message>,
    guild_buf: Vec<u8>,
    /// Encoder totals already added to the shared counters.
    counted: (u64, u64),
}

/// Serves one upgraded connection until it closes.
pub async fn serve<S>(fake: Arc<Fake>, ws: WebSocketStream<S>, params: Params)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let encoder = match Encoder::new(params.transport) {
        Ok(encoder) => encoder,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up transport compression");
            return;
        }
    };
    let (id, commands) = fake.connect();
    let interval = fake.config.heartbeat_interval_ms;
    let mut conn = Connection {
        encoder,
        limiter: SendLimiter::new(fake.config.send_limit, fake.config.send_window_ms),
        heartbeat_deadline: Box::pin(sleep_until(deadline_after(
            &fake,
            fake.clock.now_us(),
            interval,
        ))),
        last_beat: fake.clock.now_us(),
        fake,
        id,
        ws,
        params,
        session: None,
        cursor: 0,
        fresh_from: 0,
        reconnect_deadline: None,
        zombie: false,
        delay: Duration::ZERO,
        scratch: Vec::with_capacity(BATCH),
        messages: Vec::with_capacity(BATCH),
        guild_buf: Vec::with_capacity(4_096),
        counted: (0, 0),
    };
    let end = conn.run(commands).await;
    let code = match end {
        End::Closed(code) => Some(code),
        End::ByClient(code) => code,
        End::Dropped => None,
    };
    tracing::debug!(connection = id, ?code, "connection ended");
    conn.fake.disconnect(id, conn.session.as_ref(), code);
}

fn deadline_after(fake: &Fake, from: Micros, interval_ms: u64) -> Instant {
    let at = rules::heartbeat_deadline(from, interval_ms);
    Instant::from_std(fake.clock.instant_of(at))
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async fn run(&mut self, mut commands: mpsc::UnboundedReceiver<Command>) -> End {
        if let Some(v) = self.params.bad_version.clone() {
            self.violation(
                Rule::InvalidApiVersion,
                format!("gateway version v={v} is not served (use 10)"),
            );
            return self
                .close(
                    CloseCode::InvalidApiVersion.code(),
                    CloseCode::InvalidApiVersion.description(),
                )
                .await;
        }
        if let Some(e) = self.params.bad_encoding.clone() {
            tracing::warn!(connection = self.id, encoding = %e, "unsupported encoding");
            return self
                .close(
                    CloseCode::DecodeError.code(),
                    "the fake speaks encoding=json only",
                )
                .await;
        }
        let hello = payloads::hello(self.fake.config.heartbeat_interval_ms);
        if self.send_raw(&hello).await.is_err() {
            return End::ByClient(None);
        }
        self.last_beat = self.fake.clock.now_us();
        let mut shutdown = self.fake.shutdown.subscribe();
        loop {
            let session = self.session.clone();
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    return self.close(1001, "fake-discord is shutting down").await;
                }
                Some(command) = commands.recv() => {
                    if let Some(end) = self.command(command).await {
                        return end;
                    }
                }
                message = self.ws.next() => {
                    let message = match message {
                        Some(Ok(message)) => message,
                        // Past the WebSocket's own cap (1 MiB), far past Discord's 4,096 bytes.
                        Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, .. }))) => {
                            return self.oversize(size).await;
                        }
                        Some(Err(_)) | None => return End::ByClient(None),
                    };
                    if let Some(end) = self.inbound(message).await {
                        return end;
                    }
                }
                () = wake(session.as_deref()) => {
                    if let Some(end) = self.drain().await {
                        return end;
                    }
                }
                () = self.heartbeat_deadline.as_mut() => {
                    self.violation(Rule::HeartbeatTimeout, format!(
                        "no heartbeat within {} ms plus tolerance",
                        self.fake.config.heartbeat_interval_ms
                    ));
                    return self.close(CloseCode::UnknownError.code(), "heartbeat timed out").await;
                }
                () = wait(self.reconnect_deadline.as_mut()) => {
                    return self.close(CloseCode::UnknownError.code(), "reconnect requested").await;
                }
            }
        }
    }

    fn origin(&self) -> Origin<'_> {
        Origin {
            connection: self.id,
            session: self.session.as_deref(),
            shard: None,
        }
    }

    fn violation(&self, rule: Rule, details: impl Into<String>) {
        self.fake.violation(rule, self.origin(), details);
    }

    /// Sends a close frame, waits briefly for the client's, and ends. The session's fate is
    /// settled before the frame leaves, so reports are right as soon as the client sees it.
    async fn close(&mut self, code: u16, reason: &str) -> End {
        if let Some(session) = self.session.take() {
            self.fake.release(self.id, &session, Some(code));
        }
        let frame = CloseFrame {
            code: WsCloseCode::from(code),
            reason: Utf8Bytes::from(reason.to_owned()),
        };
        let _ = self.ws.close(Some(frame)).await;
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
        End::Closed(code)
    }

    /// Closes for a breach of `rule`.
    async fn breach(&mut self, rule: Rule, code: CloseCode, details: impl Into<String>) -> End {
        self.violation(rule, details);
        self.close(code.code(), code.description()).await
    }
}

/// Resolves when the timer fires (never, without one).
async fn wait(timer: Option<&mut Pin<Box<Sleep>>>) {
    match timer {
        Some(timer) => timer.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the session has new entries (never, without a session).
async fn wake(session: Option<&Session>) {
    match session {
        Some(session) => session.wake.notified().await,
        None => std::future::pending().await,
    }
}
