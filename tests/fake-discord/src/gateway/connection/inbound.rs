//! The client's frames: the send limit, the payload size and JSON checks, then each command by
//! opcode: Heartbeat (ACK unless a zombie fault holds it back; a late one is recorded), Identify
//! and Resume (admitted by the state, see `state/admission.rs`; a Resume only on the resume
//! URL), and the commands that need a session (`client_commands.rs`).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::SinkExt;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;

use super::{Connection, End, deadline_after};
use crate::commands::ClientCommand;
use crate::control::{LateHeartbeat, Rule};
use crate::payloads;
use crate::rules::{self, CloseCode, IdentifyFields, Micros, US_PER_MS};
use crate::state::admission::{IdentifyVerdict, ResumeOutcome};

/// Largest payload a client may send (gateway.mdx "Sending Events"); larger closes with 4002.
const MAX_CLIENT_PAYLOAD: usize = 4_096;

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    pub(super) async fn inbound(&mut self, message: Message) -> Option<End> {
        // Every rule times the frame at its arrival, not at this (possibly late) moment.
        let at = self.params.arrivals.arrival(self.fake.clock.now_us());
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
            return Some(self.oversize(data.len()).await);
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
            _ => match ClientCommand::from_op(op) {
                Some(command) => self.client_command(command, d, at).await,
                None => {
                    let details = format!("op {op} is not a command clients may send");
                    Some(
                        self.breach(Rule::UnknownOpcode, CloseCode::UnknownOpcode, details)
                            .await,
                    )
                }
            },
        }
    }

    /// Closes 4002 for a payload over 4,096 bytes (`size` bytes).
    pub(super) async fn oversize(&mut self, size: usize) -> End {
        let details = format!("payload of {size} bytes exceeds {MAX_CLIENT_PAYLOAD}");
        self.breach(Rule::DecodeError, CloseCode::DecodeError, details)
            .await
    }

    async fn heartbeat(&mut self, at: Micros) -> Option<End> {
        self.fake.stats.heartbeats.fetch_add(1, Ordering::Relaxed);
        let config = &self.fake.config;
        let (interval, slack) = (config.heartbeat_interval_ms, config.heartbeat_slack_ms);
        if let Some(late) = rules::heartbeat_lateness(self.last_beat, at, interval, slack) {
            let session = self.session.as_deref();
            self.fake.record_late_heartbeat(LateHeartbeat {
                at_ms: at / US_PER_MS,
                connection: self.id,
                session_id: session.map(|s| s.id.clone()),
                shard: session.map(|s| s.shard),
                num_shards: session.map(|s| s.num_shards),
                gap_ms: (at - self.last_beat) / US_PER_MS,
                late_ms: late / US_PER_MS,
            });
        }
        self.last_beat = at;
        let deadline = deadline_after(&self.fake, at, interval);
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
        if !self.params.on_resume_url {
            // Discord disconnects such sessions sooner (change-log.mdx, "Session-specific
            // Gateway Resume URLs"); the fake refuses at once, so the mistake cannot go unseen.
            self.fake
                .stats
                .resumes_failed
                .fetch_add(1, Ordering::Relaxed);
            self.violation(
                Rule::ResumeNotOnResumeUrl,
                format!(
                    "Resume of session {session_id} on the gateway URL; resume on READY's \
                     resume_gateway_url ({})",
                    self.params.resume_url
                ),
            );
            return self
                .send_raw(payloads::invalid_session(false))
                .await
                .err()
                .map(|()| End::ByClient(None));
        }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn identify_fields_reads_every_field() {
        let d = json!({
            "token": "Bot t", "properties": {"os": "linux"}, "shard": [3, 8],
            "intents": 513, "large_threshold": 100,
        });
        let fields = identify_fields(&d).expect("a token is present");
        assert_eq!(
            fields,
            IdentifyFields {
                token: "Bot t".into(),
                has_properties: true,
                shard: Some([3, 8]),
                intents: Some(513),
                large_threshold: Some(100),
            }
        );
    }

    #[test]
    fn identify_fields_needs_a_string_token() {
        assert_eq!(identify_fields(&json!({"shard": [0, 1]})), None);
        assert_eq!(identify_fields(&json!({"token": 42})), None);
    }

    #[test]
    fn a_malformed_shard_becomes_an_out_of_range_one() {
        // So that validation closes it with 4010 (Invalid Shard), as Discord does.
        for shard in [
            json!([1]),
            json!([1, 2, 3]),
            json!(["1", 2]),
            json!([-1, 2]),
        ] {
            let fields = identify_fields(&json!({"token": "t", "shard": shard})).expect("token");
            assert_eq!(fields.shard, Some([u64::MAX, 0]), "shard {shard}");
        }
        let fields = identify_fields(&json!({"token": "t", "properties": "x"})).expect("token");
        assert_eq!((fields.shard, fields.has_properties), (None, false));
    }
}
