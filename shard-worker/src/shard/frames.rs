//! From a WebSocket frame to the machine's inputs: decode (zstd-stream, zlib-stream), read the
//! envelope, and per opcode tell the machine; a dispatch goes to the handler first (in order),
//! then to the bus (if any), then is counted. The answers to the bot's op 8 are gathered on the
//! way ([`super::commanding`]).

use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tracing::{debug, info, warn};

use super::custody::resume_url_trusted;
use super::lag::HandledAt;
use super::runner::Runner;
use crate::command::within_dispatch;
use crate::gateway::close_code;
use crate::gateway::envelope;
use crate::gateway::members;
use crate::gateway::opcode::Opcode;
use crate::gateway::ratelimit::CommandLimiter;
use crate::gateway::session::{Input, Resumable};
use crate::handler::{Dispatch, Handler};
use crate::worker::bookkeeper::unix_ms;
use crate::worker::metrics::{EventLabels, ReasonLabels, ShardAfterLabels, ShardCodeLabels};

/// The gateway's `READY` fields we keep.
#[derive(Deserialize)]
struct ReadyData {
    session_id: String,
    resume_gateway_url: String,
}

/// The gateway's Hello field we keep.
#[derive(Deserialize)]
struct HelloData {
    heartbeat_interval: u64,
}

impl<H: Handler> Runner<'_, H> {
    /// The connection ended without the gateway's Close frame (a read error, a reset, the end of
    /// the stream). An Identify unanswered on it keeps its gate's first TTL: the error may be
    /// ours (a frame we refuse, a middlebox's reset) while the gateway goes on reading, and
    /// what our kernel or the network still carries could reach it later. Only READY, op 9 and
    /// the gateway's Close frame say it was read or never will be.
    fn lost_connection(&mut self) {
        self.ws = None;
        self.identify_in_flight = None;
    }

    pub(super) async fn on_frame(&mut self, frame: Option<Result<Message, WsError>>) -> Vec<Input> {
        // A dispatch's age counts from here (`super::lag`). The runtime's clock, the one the
        // heartbeat deadline is on (`Runner::turn_clock`).
        let arrived = Instant::now();
        let bytes = match frame {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Text(text))) => {
                let text = text.to_string();
                return Box::pin(self.on_payload_owned(text.into_bytes(), arrived)).await;
            }
            Some(Ok(Message::Close(frame))) => {
                self.ws = None;
                let code = frame.map(|f| u16::from(f.code));
                info!(shard_id = self.shard, code, "gateway closed the connection");
                if let Some(code) = code {
                    self.board()
                        .metrics()
                        .gateway_closes
                        .get_or_create(&ShardCodeLabels {
                            shard: self.shard,
                            code,
                        })
                        .inc();
                }
                return vec![Input::Closed { code }];
            }
            Some(Ok(_)) => return Vec::new(),
            Some(Err(WsError::Capacity(e))) => {
                // Over tungstenite's message or frame limit (the same cap as inflated messages).
                warn!(shard_id = self.shard, error = %e, "gateway message too large; reconnecting");
                self.count_refused("too_large");
                self.close(close_code::RESUMABLE_CLOSE).await;
                return vec![Input::Closed { code: None }];
            }
            Some(Err(e)) => {
                debug!(shard_id = self.shard, error = %e, "gateway connection lost");
                self.lost_connection();
                return vec![Input::Closed { code: None }];
            }
            None => {
                self.lost_connection();
                return vec![Input::Closed { code: None }];
            }
        };
        let Some(mut decoder) = self.decoder.take() else {
            return Vec::new();
        };
        let inputs = match decoder.push(&bytes) {
            Ok(Some(json)) => self.on_payload(json, arrived).await,
            Ok(None) => Vec::new(),
            Err(e) => {
                // Corrupt, or a decompression bomb stopped at the cap: the decoding context cannot
                // go on, the session can (resumed on a new connection).
                warn!(shard_id = self.shard, error = %e, "gateway message refused; reconnecting");
                self.count_refused(e.metric_label());
                self.close(close_code::RESUMABLE_CLOSE).await;
                vec![Input::Closed { code: None }]
            }
        };
        decoder.recycle();
        if self.ws.is_some() && self.decoder.is_none() {
            self.decoder = Some(decoder);
        }
        inputs
    }

    async fn on_payload_owned(&mut self, json: Vec<u8>, arrived: Instant) -> Vec<Input> {
        self.on_payload(&json, arrived).await
    }

    async fn on_payload(&mut self, json: &[u8], arrived: Instant) -> Vec<Input> {
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
                        Ok(ready) => {
                            // An untrusted resume URL is not dialled with the token: the session
                            // is resumed on the gateway URL instead, where Discord accepts it too.
                            let shared = self.shared;
                            let resume_gateway_url = if resume_url_trusted(
                                shared,
                                self.shard,
                                &ready.resume_gateway_url,
                                "ready",
                            ) {
                                ready.resume_gateway_url
                            } else {
                                shared.config.gateway_url.clone()
                            };
                            Some(Input::Ready(Resumable {
                                session_id: ready.session_id,
                                resume_gateway_url,
                            }))
                        }
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
                // An answer to the bot's own op 8 (RATE_LIMITED) is its caller's, not a
                // dispatch: neither handled nor counted as an event.
                if matches!(event, members::GUILD_MEMBERS_CHUNK | members::RATE_LIMITED)
                    && self.on_member_answer(event, data)
                {
                    self.slot.set_handled_seq(seq);
                    return input.into_iter().collect();
                }
                let shared = self.shared;
                let acting = &*shared.acting;
                if self.replaying && acting.reshard_under_way() {
                    self.board().metrics().handover_replays.inc();
                }
                // The session it arrived on: READY's own, or the one being resumed.
                let session = match &input {
                    Some(Input::Ready(ready)) => Some(ready.session_id.as_str()),
                    _ => self.machine.resumable().map(|r| r.session_id.as_str()),
                };
                let dispatch = Dispatch {
                    shard: self.shard,
                    seq,
                    session_id: session,
                    event,
                    data,
                    active: acting.may_act(),
                    acting,
                };
                self.slot.handler_took(arrived.into_std());
                within_dispatch(self.shard, shared.handler.dispatch(dispatch)).await;
                self.slot.handler_done();
                let now = HandledAt::now();
                self.last_dispatch
                    .set(now.unix_ms_at(arrived) as f64 / 1_000.0);
                self.ages
                    .handled(self.board(), self.slot, event, data, arrived, &now);
                self.turn_clock = Some(now.instant);
                // Taken by the bus before it counts as handled: a checkpoint taken in between
                // must not pass it.
                if let Some(bus) = &self.shared.bus
                    && !bus.take(self.shard, seq, event, data, session)
                {
                    self.pause_reading();
                }
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
                let after = self.machine.phase().invalid_session_after();
                info!(
                    shard_id = self.shard,
                    resumable, after, "invalid session (op 9)"
                );
                self.board()
                    .metrics()
                    .invalid_sessions
                    .get_or_create(&ShardAfterLabels {
                        shard: self.shard,
                        after,
                    })
                    .inc();
                vec![Input::InvalidSession { resumable }]
            }
            Some(Opcode::Hello) => match envelope.d.map(serde_json::from_str::<HelloData>) {
                Some(Ok(hello)) => {
                    let interval = Duration::from_millis(hello.heartbeat_interval.max(1));
                    self.limiter = CommandLimiter::new(interval, self.shared.config.send_window);
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
                let sent = self.heartbeat_sent.take();
                let metrics = self.board().metrics();
                if let Some(sent) = sent {
                    metrics
                        .heartbeat_latency
                        .get_or_create(&self.labels)
                        .set(sent.elapsed().as_secs_f64());
                }
                metrics
                    .last_heartbeat_ack
                    .get_or_create(&self.labels)
                    .set(unix_seconds());
                vec![Input::HeartbeatAck]
            }
            _ => Vec::new(),
        }
    }

    fn count_refused(&self, reason: &'static str) {
        self.board()
            .metrics()
            .gateway_message_errors
            .get_or_create(&ReasonLabels { reason })
            .inc();
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

/// Now as Unix seconds (ms precision), the unit of the `*_timestamp_seconds` gauges.
fn unix_seconds() -> f64 {
    unix_ms() as f64 / 1_000.0
}
