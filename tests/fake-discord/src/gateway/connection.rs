//! One gateway connection: Hello, heartbeats, Identify/Resume, writing its session's dispatches,
//! the send limit, and the faults the control API injects. One task owns the socket, so frames
//! (and the zlib-stream context) stay in order without locks.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::encoder::Encoder;
pub use super::encoder::Transport;
use crate::control::{Fault, Rule};
use crate::payloads;
use crate::rules::{self, CloseCode, IdentifyFields, Micros, SendLimiter};
use crate::session::{Entry, Payload, Session};
use crate::state::{Command, Fake, IdentifyVerdict, Origin, ResumeOutcome};

/// Largest payload a client may send (gateway.mdx "Sending Events"); larger closes with 4002.
const MAX_CLIENT_PAYLOAD: usize = 4_096;
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

    /// Writes one frame (compressed when asked) and flushes.
    async fn send_raw(&mut self, json: &[u8]) -> Result<(), ()> {
        let message = self.encoder.single(json).map_err(|_| ())?;
        self.count_bytes();
        self.ws.send(message).await.map_err(|_| ())
    }

    /// Adds what the encoder wrote since last time to the shared counters.
    fn count_bytes(&mut self) {
        let stats = &self.fake.stats;
        let (json, wire) = (self.encoder.json_bytes, self.encoder.wire_bytes);
        stats
            .payload_bytes_sent
            .fetch_add(json - self.counted.0, Ordering::Relaxed);
        stats
            .wire_bytes_sent
            .fetch_add(wire - self.counted.1, Ordering::Relaxed);
        self.counted = (json, wire);
    }

    /// Writes the session's queued dispatches after the cursor, a batch at a time.
    async fn drain(&mut self) -> Option<End> {
        let session = self.session.clone()?;
        self.scratch.clear();
        if let Err(overrun) =
            session.take_after(self.cursor, self.fresh_from, BATCH, &mut self.scratch)
        {
            tracing::warn!(
                connection = self.id,
                session = %session.id,
                wanted = overrun.wanted,
                oldest = overrun.oldest,
                "client fell behind the replay buffer; closing"
            );
            self.fake.stats.overflows.fetch_add(1, Ordering::Relaxed);
            self.fake.end_session(&session);
            return Some(
                self.close(
                    CloseCode::UnknownError.code(),
                    "client too slow: dispatches were lost",
                )
                .await,
            );
        }
        if self.scratch.is_empty() {
            return None;
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let entries = std::mem::take(&mut self.scratch);
        let mut ready = false;
        let mut encoded = Ok(());
        for entry in &entries {
            encoded = match &entry.payload {
                Payload::Event(event) => {
                    self.encoder.push_dispatch(&event.name, entry.seq, &event.d)
                }
                Payload::GuildCreate(index) => {
                    self.guild_buf.clear();
                    payloads::write_guild_create(
                        &mut self.guild_buf,
                        &self.fake.bot,
                        *index,
                        session.large_threshold,
                    );
                    self.encoder
                        .push_dispatch("GUILD_CREATE", entry.seq, &self.guild_buf)
                }
                Payload::Ready(d) => {
                    ready = true;
                    self.encoder.push_dispatch("READY", entry.seq, d)
                }
                Payload::Resumed => {
                    self.encoder
                        .push_dispatch("RESUMED", entry.seq, payloads::RESUMED)
                }
            };
            if encoded.is_err() {
                break;
            }
        }
        let last_seq = entries.last().map_or(self.cursor, |e| e.seq);
        let count = entries.len() as u64;
        let full = entries.len() == BATCH;
        self.scratch = entries;
        if let Err(e) = encoded.and_then(|()| self.encoder.finish(&mut self.messages)) {
            tracing::error!(connection = self.id, error = %e, "dropping the connection");
            return Some(End::Dropped);
        }
        self.count_bytes();
        for message in self.messages.drain(..) {
            if self.ws.feed(message).await.is_err() {
                return Some(End::ByClient(None));
            }
        }
        if self.ws.flush().await.is_err() {
            return Some(End::ByClient(None));
        }
        self.cursor = last_seq;
        session.mark_sent(self.cursor, ready);
        self.fake
            .stats
            .dispatches_sent
            .fetch_add(count, Ordering::Relaxed);
        if full {
            // More may be queued: come back after looking at the socket.
            session.wake.notify_one();
        }
        None
    }

    async fn command(&mut self, command: Command) -> Option<End> {
        match command {
            Command::Close { code, reason } => Some(self.close(code, &reason).await),
            Command::Superseded => {
                // The session lives on in the connection that resumed it.
                self.session = None;
                Some(
                    self.close(CloseCode::UnknownError.code(), "session resumed elsewhere")
                        .await,
                )
            }
            Command::Fault(fault) => self.fault(fault).await,
        }
    }

    async fn fault(&mut self, fault: Fault) -> Option<End> {
        tracing::info!(connection = self.id, ?fault, "injecting fault");
        match fault {
            Fault::Reconnect => {
                if self.send_raw(payloads::RECONNECT).await.is_err() {
                    return Some(End::ByClient(None));
                }
                let grace = Duration::from_millis(self.fake.config.reconnect_grace_ms);
                self.reconnect_deadline = Some(Box::pin(sleep_until(Instant::now() + grace)));
            }
            Fault::InvalidSession { resumable } => {
                if !resumable && let Some(session) = self.session.take() {
                    self.fake.end_session(&session);
                }
                if self
                    .send_raw(payloads::invalid_session(resumable))
                    .await
                    .is_err()
                {
                    return Some(End::ByClient(None));
                }
            }
            Fault::Zombie { enabled } => self.zombie = enabled,
            Fault::HeartbeatRequest => {
                if self.send_raw(payloads::HEARTBEAT_REQUEST).await.is_err() {
                    return Some(End::ByClient(None));
                }
            }
            Fault::Close { code, reason } => {
                let reason = reason.unwrap_or_else(|| "closed by fault injection".into());
                return Some(self.close(code, &reason).await);
            }
            Fault::Drop => return Some(End::Dropped),
            Fault::Delay { ms } => self.delay = Duration::from_millis(ms),
        }
        None
    }

    async fn inbound(&mut self, message: Message) -> Option<End> {
        let at = self.fake.clock.now_us();
        let data = match message {
            Message::Text(text) => Bytes::from(text),
            Message::Binary(data) => data,
            Message::Close(frame) => {
                return Some(End::ByClient(frame.map(|f| u16::from(f.code))));
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {
                // tungstenite queued the pong; push it out.
                return self.ws.flush().await.err().map(|_| End::ByClient(None));
            }
        };
        if !self.limiter.admit(at) {
            let details = format!(
                "more than {} commands within {} ms",
                self.fake.config.send_limit, self.fake.config.send_window_ms
            );
            return Some(
                self.breach(Rule::SendRateLimit, CloseCode::RateLimited, details)
                    .await,
            );
        }
        if data.len() > MAX_CLIENT_PAYLOAD {
            let details = format!("payload of {} bytes exceeds 4096", data.len());
            return Some(
                self.breach(Rule::DecodeError, CloseCode::DecodeError, details)
                    .await,
            );
        }
        let payload: Value = match serde_json::from_slice(&data) {
            Ok(value @ Value::Object(_)) => value,
            _ => {
                return Some(
                    self.breach(
                        Rule::DecodeError,
                        CloseCode::DecodeError,
                        "payload is not a JSON object",
                    )
                    .await,
                );
            }
        };
        let Some(op) = payload.get("op").and_then(Value::as_u64) else {
            return Some(
                self.breach(
                    Rule::DecodeError,
                    CloseCode::DecodeError,
                    "payload has no numeric `op`",
                )
                .await,
            );
        };
        let d = payload.get("d").unwrap_or(&Value::Null);
        match op {
            1 => self.heartbeat(at).await,
            2 => self.identify(d, at).await,
            6 => self.resume(d).await,
            // Presence, voice state, request guild members, soundboard sounds, channel info.
            3 | 4 | 8 | 31 | 43 => {
                if self.session.is_none() {
                    let details = format!("op {op} before Identify");
                    return Some(
                        self.breach(Rule::NotAuthenticated, CloseCode::NotAuthenticated, details)
                            .await,
                    );
                }
                None
            }
            _ => {
                let details = format!("op {op} is not a command clients may send");
                Some(
                    self.breach(Rule::UnknownOpcode, CloseCode::UnknownOpcode, details)
                        .await,
                )
            }
        }
    }

    async fn heartbeat(&mut self, at: Micros) -> Option<End> {
        self.fake.stats.heartbeats.fetch_add(1, Ordering::Relaxed);
        let deadline = deadline_after(&self.fake, at, self.fake.config.heartbeat_interval_ms);
        self.heartbeat_deadline.as_mut().reset(deadline);
        if self.zombie {
            return None;
        }
        self.send_raw(payloads::HEARTBEAT_ACK)
            .await
            .err()
            .map(|()| End::ByClient(None))
    }

    async fn identify(&mut self, d: &Value, at: Micros) -> Option<End> {
        if self.session.is_some() {
            return Some(
                self.breach(
                    Rule::AlreadyAuthenticated,
                    CloseCode::AlreadyAuthenticated,
                    "a second Identify on an authenticated connection",
                )
                .await,
            );
        }
        let Some(fields) = identify_fields(d) else {
            return Some(
                self.breach(
                    Rule::DecodeError,
                    CloseCode::DecodeError,
                    "Identify `d` lacks a string `token`",
                )
                .await,
            );
        };
        let verdict = self
            .fake
            .identify(self.id, &fields, at, &self.params.resume_url);
        match verdict {
            IdentifyVerdict::Ready(session) => {
                self.session = Some(session);
                self.cursor = 0;
                self.fresh_from = 0;
                self.drain().await
            }
            IdentifyVerdict::InvalidSession => self
                .send_raw(payloads::invalid_session(false))
                .await
                .err()
                .map(|()| End::ByClient(None)),
            IdentifyVerdict::Close(code, _) => {
                Some(self.close(code.code(), code.description()).await)
            }
        }
    }

    async fn resume(&mut self, d: &Value) -> Option<End> {
        if self.session.is_some() {
            return Some(
                self.breach(
                    Rule::AlreadyAuthenticated,
                    CloseCode::AlreadyAuthenticated,
                    "Resume on an authenticated connection",
                )
                .await,
            );
        }
        let token = d.get("token").and_then(Value::as_str);
        let session_id = d.get("session_id").and_then(Value::as_str);
        let (Some(token), Some(session_id)) = (token, session_id) else {
            return Some(
                self.breach(
                    Rule::DecodeError,
                    CloseCode::DecodeError,
                    "Resume `d` lacks `token` or `session_id`",
                )
                .await,
            );
        };
        let seq = d.get("seq").and_then(Value::as_u64).unwrap_or(0);
        match self.fake.resume(self.id, token, session_id, seq) {
            ResumeOutcome::Resumed {
                session,
                resumed_seq,
            } => {
                tracing::debug!(connection = self.id, session = %session.id, seq, "resumed");
                self.session = Some(session);
                self.cursor = seq;
                self.fresh_from = resumed_seq;
                self.drain().await
            }
            ResumeOutcome::Invalid => self
                .send_raw(payloads::invalid_session(false))
                .await
                .err()
                .map(|()| End::ByClient(None)),
            ResumeOutcome::Close(code, _) => {
                Some(self.close(code.code(), code.description()).await)
            }
        }
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

/// The fields of an Identify's `d`; `None` without a token.
fn identify_fields(d: &Value) -> Option<IdentifyFields> {
    let token = d.get("token")?.as_str()?.to_owned();
    // A malformed `shard` is kept as an out-of-range one, so it fails as 4010 like Discord.
    let shard = d.get("shard").and_then(Value::as_array).map(|a| {
        match (
            a.first().and_then(Value::as_u64),
            a.get(1).and_then(Value::as_u64),
            a.len(),
        ) {
            (Some(s), Some(n), 2) => [s, n],
            _ => [u64::MAX, 0],
        }
    });
    Some(IdentifyFields {
        token,
        has_properties: d.get("properties").is_some_and(Value::is_object),
        shard,
        intents: d.get("intents").and_then(Value::as_u64),
        large_threshold: d.get("large_threshold").and_then(Value::as_u64),
    })
}
