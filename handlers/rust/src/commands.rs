//! Gateway commands back to the workers (`docs/bus-protocol.md`, "Commands back"): a core NATS request
//! on `S.commands.<total>.<shard>` with `{"op":N,"d":{...}}`; the worker holding that shard's live
//! session in layout `<total>` sends it within the connection's send limits and replies
//! `{"ok":true}` (op 8 with a nonce: `{"ok":true,"chunks":[...]}`) or
//! `{"ok":false,"error":{"kind":..,"message":..,"retryAfterMs":..}}`.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use shardset_contract::bus;

/// Gateway opcodes a handler typically sends (discord-api-docs `developers/topics/opcodes-and-status-codes.mdx`).
pub mod op {
    /// Presence Update.
    pub const PRESENCE_UPDATE: u8 = 3;
    /// Voice State Update.
    pub const VOICE_STATE_UPDATE: u8 = 4;
    /// Request Guild Members (answered by GUILD_MEMBERS_CHUNK events).
    pub const REQUEST_GUILD_MEMBERS: u8 = 8;
}

/// Sends commands for the bot of one stream.
#[derive(Clone)]
pub struct Commands {
    client: async_nats::Client,
    prefix: Arc<str>,
    /// The acting layout's shard count as last known (the handled event's `Shardset-Total`).
    total: u32,
    /// Where the acting workers keep the layout (`layout` = `{"total":N}`).
    layout: Option<kv::Store>,
    timeout: Duration,
}

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commands")
            .field("prefix", &self.prefix)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

/// The request body.
#[derive(Debug, Serialize)]
struct Request<'a> {
    op: u8,
    d: &'a serde_json::Value,
}

/// The reply body.
#[derive(Debug, Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default)]
    chunks: Vec<serde_json::Value>,
    #[serde(default)]
    error: Option<ReplyError>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplyError {
    kind: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    retry_after_ms: Option<u64>,
}

/// What the worker did with a command.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sent {
    /// For op 8 with a nonce: the `d` of every GUILD_MEMBERS_CHUNK answering it, in order.
    pub chunks: Vec<serde_json::Value>,
}

/// Why a command was not sent. `label` gives fixed metric labels.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// No worker holds that shard in that layout (it moved, or the shard is down).
    #[error("no worker takes commands for shard {shard} of layout {total}")]
    NoResponders { total: u32, shard: u32 },
    #[error("the worker did not reply in time")]
    TimedOut,
    /// The worker refused or failed: `kind` is `rate_limited` (with `retry_after`),
    /// `refused` (an opcode the worker owns, e.g. Identify), `invalid`, `not_connected`, ...
    #[error("the worker answered {kind}: {message}")]
    Worker {
        kind: String,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("the worker's reply is not the protocol's JSON: {0}")]
    BadReply(String),
    #[error("NATS request failed: {0}")]
    Transport(String),
}

impl CommandError {
    /// A fixed, low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NoResponders { .. } => "no_responders",
            Self::TimedOut => "timed_out",
            Self::Worker { .. } => "worker",
            Self::BadReply(_) => "bad_reply",
            Self::Transport(_) => "transport",
        }
    }
}

impl Commands {
    pub(crate) fn new(
        client: async_nats::Client,
        prefix: &str,
        layout: Option<kv::Store>,
        timeout: Duration,
    ) -> Self {
        Self {
            client,
            prefix: prefix.into(),
            total: 0,
            layout,
            timeout,
        }
    }

    /// The same, with `total` as the acting layout's shard count.
    pub fn with_total(&self, total: u32) -> Self {
        Self {
            total,
            ..self.clone()
        }
    }

    /// The shard count commands for a guild are addressed with.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// Sends gateway opcode `op` with payload `d` to shard `shard` of layout `total`.
    pub async fn send_to_shard(
        &self,
        total: u32,
        shard: u32,
        op: u8,
        d: &serde_json::Value,
    ) -> Result<Sent, CommandError> {
        let body = serde_json::to_vec(&Request { op, d })
            .map_err(|e| CommandError::BadReply(e.to_string()))?;
        let subject = bus::command_subject(&self.prefix, total, shard);
        let request = async_nats::Request::new()
            .payload(body.into())
            .timeout(Some(self.timeout));
        let reply = self
            .client
            .send_request(subject, request)
            .await
            .map_err(|e| match e.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    CommandError::NoResponders { total, shard }
                }
                async_nats::RequestErrorKind::TimedOut => CommandError::TimedOut,
                _ => CommandError::Transport(e.to_string()),
            })?;
        parse_reply(&reply.payload)
    }

    /// Sends opcode `op` to the shard holding `guild` in the acting layout. "No responders"
    /// means the layout moved (a reshard): the acting total is read again from the `layout` key
    /// and the command sent once more if it changed.
    pub async fn send_for_guild(
        &self,
        guild: u64,
        op: u8,
        d: &serde_json::Value,
    ) -> Result<Sent, CommandError> {
        let total = match self.total {
            0 => self.acting_total().await.unwrap_or(0),
            known => known,
        };
        if total == 0 {
            return Err(CommandError::NoResponders { total: 0, shard: 0 });
        }
        match self
            .send_to_shard(total, bus::shard_of_guild(guild, total), op, d)
            .await
        {
            Err(CommandError::NoResponders { .. }) => match self.acting_total().await {
                Some(now) if now != total => {
                    self.send_to_shard(now, bus::shard_of_guild(guild, now), op, d)
                        .await
                }
                _ => Err(CommandError::NoResponders {
                    total,
                    shard: bus::shard_of_guild(guild, total),
                }),
            },
            other => other,
        }
    }

    /// The acting layout's total from the ownership bucket's `layout` key, if a worker keeps it.
    async fn acting_total(&self) -> Option<u32> {
        #[derive(Deserialize)]
        struct LayoutValue {
            total: u32,
        }
        let value = self.layout.as_ref()?.get(bus::LAYOUT_KEY).await.ok()??;
        serde_json::from_slice::<LayoutValue>(&value)
            .ok()
            .map(|l| l.total)
            .filter(|t| *t > 0)
    }
}

/// Reads a worker's reply.
fn parse_reply(payload: &[u8]) -> Result<Sent, CommandError> {
    let reply: Reply =
        serde_json::from_slice(payload).map_err(|e| CommandError::BadReply(e.to_string()))?;
    if reply.ok {
        return Ok(Sent {
            chunks: reply.chunks,
        });
    }
    let error = reply.error.unwrap_or(ReplyError {
        kind: "unknown".into(),
        message: String::new(),
        retry_after_ms: None,
    });
    Err(CommandError::Worker {
        kind: error.kind,
        message: error.message,
        retry_after: error.retry_after_ms.map(Duration::from_millis),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_success_chunks_and_errors() {
        assert_eq!(parse_reply(br#"{"ok":true}"#), Ok(Sent::default()));
        let sent = parse_reply(br#"{"ok":true,"chunks":[{"chunk_index":0},{"chunk_index":1}]}"#)
            .expect("ok");
        assert_eq!(sent.chunks.len(), 2);
        assert_eq!(
            parse_reply(
                br#"{"ok":false,"error":{"kind":"rate_limited","message":"slow down","retryAfterMs":1500}}"#
            ),
            Err(CommandError::Worker {
                kind: "rate_limited".into(),
                message: "slow down".into(),
                retry_after: Some(Duration::from_millis(1500)),
            })
        );
        assert_eq!(parse_reply(b"nope").expect_err("bad").label(), "bad_reply");
    }
}
