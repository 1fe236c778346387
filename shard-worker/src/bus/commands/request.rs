//! A command back as it travels on the bus (`docs/bus-protocol.md`, "Commands back"), without
//! I/O: the request body read into a [`BotCommand`] (or the reply refusing it), and the reply
//! written from what the shard did with it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::command::{BotCommand, CommandError, EncodeError, Members};
use crate::gateway::Opcode;
use crate::gateway::bot_commands::MAX_NONCE_BYTES;
use crate::gateway::snowflake::opt_snowflake;

/// The largest request body read at all. A command's payload is at most 4,096 bytes
/// ([`crate::gateway::bot_commands::MAX_PAYLOAD_BYTES`]); a body far past it is refused unread.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What a request asks the shard to do.
#[derive(Debug)]
pub enum Parsed {
    /// Send it; reply once written.
    Send(BotCommand),
    /// op 8 with a nonce: send it as written, reply with the chunks carrying `nonce`.
    Members {
        command: BotCommand,
        guild_id: u64,
        nonce: String,
    },
}

/// A reply to a request.
#[derive(Debug)]
pub enum Reply {
    Ok {
        /// op 8 with a nonce: each chunk's raw `d`, in order.
        chunks: Option<Vec<Box<RawValue>>>,
    },
    Failed {
        kind: &'static str,
        message: String,
        retry_after: Option<Duration>,
    },
}

/// The reply's `error.kind`s (`docs/bus-protocol.md`, "Commands back"), also the `result`
/// labels of `shardset_bus_commands_total` beside `ok`.
pub mod kind {
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const REFUSED: &str = "refused";
    pub const INVALID: &str = "invalid";
    pub const NOT_CONNECTED: &str = "not_connected";
    pub const TIMED_OUT: &str = "timed_out";
    /// The reply (op 8's chunks) is larger than the NATS server carries.
    pub const TOO_LARGE: &str = "too_large";
}

impl Reply {
    pub fn sent() -> Self {
        Self::Ok { chunks: None }
    }

    pub fn chunks(members: Members) -> Self {
        Self::Ok {
            chunks: Some(members.chunk_data),
        }
    }

    pub fn failed(kind: &'static str, message: impl Into<String>) -> Self {
        Self::Failed {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The `result` label it is counted under: `ok` or the error's kind.
    pub fn result(&self) -> &'static str {
        match self {
            Self::Ok { .. } => "ok",
            Self::Failed { kind, .. } => kind,
        }
    }

    /// What the shard's command `error` means to the caller. `waited` is how long a command
    /// may wait for room in the send limit before it counts as rate limited (the retry hint).
    pub fn of_error(error: &CommandError, waited: Duration) -> Self {
        let message = error.to_string();
        let (kind, retry_after) = match error {
            CommandError::Refused(EncodeError::Invalid(_)) => (kind::INVALID, None),
            CommandError::Refused(_) => (kind::REFUSED, None),
            CommandError::RateLimited { retry_after, .. } => {
                (kind::RATE_LIMITED, Some(*retry_after))
            }
            // The send limit (120 per 60 s, heartbeats' room kept) let it through in time.
            CommandError::QueueTimeout { .. } | CommandError::QueueFull { .. } => {
                (kind::RATE_LIMITED, Some(waited))
            }
            CommandError::NoAnswer { .. } => (kind::TIMED_OUT, None),
            // Not live (resuming), gone, or the connection dropped while writing (the message
            // says it may have reached Discord).
            CommandError::NotLive { .. }
            | CommandError::UnknownShard { .. }
            | CommandError::ShardStopped { .. }
            | CommandError::SendFailed { .. }
            | CommandError::SessionLost { .. }
            | CommandError::InsideDispatch { .. } => (kind::NOT_CONNECTED, None),
        };
        Self::Failed {
            kind,
            message,
            retry_after,
        }
    }

    /// The reply's JSON.
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            ok: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            chunks: Option<&'a [Box<RawValue>]>,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<ErrorBody<'a>>,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct ErrorBody<'a> {
            kind: &'a str,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            retry_after_ms: Option<u64>,
        }
        let body = match self {
            Self::Ok { chunks } => Body {
                ok: true,
                chunks: chunks.as_deref(),
                error: None,
            },
            Self::Failed {
                kind,
                message,
                retry_after,
            } => Body {
                ok: false,
                chunks: None,
                error: Some(ErrorBody {
                    kind,
                    message,
                    retry_after_ms: retry_after.map(|d| d.as_millis() as u64),
                }),
            },
        };
        // Strings, numbers and raw JSON already checked: writing cannot fail.
        serde_json::to_vec(&body).unwrap_or_else(|_| br#"{"ok":false}"#.to_vec())
    }
}

#[derive(Deserialize)]
struct Body<'a> {
    op: Option<serde_json::Value>,
    #[serde(borrow)]
    d: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MemberFields {
    #[serde(default, deserialize_with = "opt_snowflake")]
    guild_id: Option<u64>,
    #[serde(default)]
    nonce: Option<serde_json::Value>,
}

/// Reads a request body: `{"op": <integer>, "d": <payload>}`. `d` is sent as written; op 8's
/// `guild_id` and `nonce` are read to match its chunks.
pub fn parse(body: &[u8]) -> Result<Parsed, Reply> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Reply::from(EncodeError::TooLarge { bytes: body.len() }));
    }
    let body: Body<'_> = serde_json::from_slice(body)
        .map_err(|e| Reply::failed(kind::INVALID, format!("not a JSON command: {e}")))?;
    let op = body
        .op
        .as_ref()
        .and_then(serde_json::Value::as_u64)
        .and_then(|op| u8::try_from(op).ok())
        .ok_or_else(|| Reply::failed(kind::INVALID, "`op` must be an integer opcode (0-255)"))?;
    let d = body.d.map_or_else(
        || RawValue::from_string("null".to_owned()),
        |d| Ok(d.to_owned()),
    );
    let d = d.map_err(|_| Reply::failed(kind::INVALID, "`d` is not JSON"))?;
    let command = BotCommand::Raw { op, d };
    // Opcode and size first: an Identify is refused whatever its `d`.
    command.encode().map_err(Reply::from)?;
    if op != Opcode::RequestGuildMembers.code() {
        return Ok(Parsed::Send(command));
    }
    let BotCommand::Raw { d, .. } = &command else {
        return Ok(Parsed::Send(command));
    };
    let not_object = || Reply::failed(kind::INVALID, "op 8's `d` must be an object");
    // serde reads a struct from an array too: only an object is one.
    if !d.get().starts_with('{') {
        return Err(not_object());
    }
    let fields: MemberFields = serde_json::from_str(d.get()).map_err(|_| not_object())?;
    let Some(guild_id) = fields.guild_id else {
        return Err(Reply::failed(
            kind::INVALID,
            "op 8's `d` needs a `guild_id` snowflake",
        ));
    };
    match fields.nonce {
        None | Some(serde_json::Value::Null) => Ok(Parsed::Send(command)),
        Some(serde_json::Value::String(nonce)) if nonce.len() <= MAX_NONCE_BYTES => {
            Ok(Parsed::Members {
                command,
                guild_id,
                nonce,
            })
        }
        Some(_) => Err(Reply::failed(
            kind::INVALID,
            "op 8's `nonce` must be a string of at most 32 bytes (Discord echoes no longer one)",
        )),
    }
}

impl From<EncodeError> for Reply {
    fn from(error: EncodeError) -> Self {
        Self::of_error(&CommandError::Refused(error), Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn kind_of(body: &[u8]) -> &'static str {
        parse(body).expect_err("refused").result()
    }

    fn json_of(reply: &Reply) -> Value {
        serde_json::from_slice(&reply.to_json()).expect("json")
    }

    #[test]
    fn commands_are_sent_as_written() {
        let body = br#"{"op":3,"d":{"since":null,"activities":[],"status":"online","afk":false}}"#;
        let Ok(Parsed::Send(command)) = parse(body) else {
            panic!("a presence");
        };
        assert_eq!(
            command.encode().expect("encode"),
            r#"{"op":3,"d":{"since":null,"activities":[],"status":"online","afk":false}}"#
        );
        // An opcode the worker does not model, and one without `d`.
        assert!(
            matches!(parse(br#"{"op":43,"d":{"guild_id":"1"}}"#), Ok(Parsed::Send(c)) if c.opcode() == 43)
        );
        let Ok(Parsed::Send(bare)) = parse(br#"{"op":31}"#) else {
            panic!("no d");
        };
        assert_eq!(bare.encode().expect("encode"), r#"{"op":31,"d":null}"#);
    }

    #[test]
    fn op_8_with_a_nonce_waits_for_its_chunks() {
        let body =
            br#"{"op":8,"d":{"guild_id":"81384788765712384","query":"","limit":0,"nonce":"h-1"}}"#;
        let Ok(Parsed::Members {
            guild_id, nonce, ..
        }) = parse(body)
        else {
            panic!("members");
        };
        assert_eq!((guild_id, nonce.as_str()), (81_384_788_765_712_384, "h-1"));
        let no_nonce = br#"{"op":8,"d":{"guild_id":"1","query":"","limit":0}}"#;
        assert!(matches!(parse(no_nonce), Ok(Parsed::Send(_))));
        assert_eq!(kind_of(br#"{"op":8,"d":{"query":""}}"#), kind::INVALID);
        assert_eq!(kind_of(br#"{"op":8,"d":[1]}"#), kind::INVALID);
        let long = format!(
            r#"{{"op":8,"d":{{"guild_id":"1","nonce":"{}"}}}}"#,
            "n".repeat(33)
        );
        assert_eq!(kind_of(long.as_bytes()), kind::INVALID);
        assert_eq!(
            kind_of(br#"{"op":8,"d":{"guild_id":"1","nonce":5}}"#),
            kind::INVALID
        );
    }

    #[test]
    fn bad_bodies_are_refused_or_invalid() {
        for refused in [
            &br#"{"op":2,"d":{"token":"x"}}"#[..],
            br#"{"op":1,"d":5}"#,
            br#"{"op":6}"#,
        ] {
            assert_eq!(kind_of(refused), kind::REFUSED, "{refused:?}");
        }
        let big = format!(r#"{{"op":3,"d":{{"x":"{}"}}}}"#, "a".repeat(5_000));
        assert_eq!(kind_of(big.as_bytes()), kind::REFUSED);
        let huge = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(kind_of(&huge), kind::REFUSED);
        for invalid in [
            &b"not json"[..],
            b"",
            b"[3]",
            br#"{"d":{}}"#,
            br#"{"op":"3"}"#,
            br#"{"op":3.5}"#,
            br#"{"op":-1}"#,
            br#"{"op":256}"#,
            b"\xff\xfe",
        ] {
            assert_eq!(kind_of(invalid), kind::INVALID, "{invalid:?}");
        }
    }

    #[test]
    fn replies_have_the_protocols_shape() {
        assert_eq!(json_of(&Reply::sent()), json!({"ok": true}));
        let members = Members {
            chunk_data: vec![RawValue::from_string(r#"{"chunk_index":0}"#.into()).expect("raw")],
            ..Members::default()
        };
        assert_eq!(
            json_of(&Reply::chunks(members)),
            json!({"ok": true, "chunks": [{"chunk_index": 0}]})
        );
        let limited = CommandError::RateLimited {
            opcode: 8,
            retry_after: Duration::from_millis(27_250),
            guild_id: Some(7),
        };
        let reply = Reply::of_error(&limited, Duration::from_secs(2));
        assert_eq!(reply.result(), kind::RATE_LIMITED);
        let body = json_of(&reply);
        assert_eq!(body["ok"], false);
        assert_eq!(body["error"]["kind"], "rate_limited");
        assert_eq!(body["error"]["retryAfterMs"], 27_250);
        let queued = CommandError::QueueTimeout {
            shard: 0,
            after: Duration::from_secs(2),
        };
        assert_eq!(
            json_of(&Reply::of_error(&queued, Duration::from_secs(2)))["error"]["retryAfterMs"],
            2_000
        );
        let not_live = CommandError::NotLive {
            shard: 0,
            waited: Duration::ZERO,
        };
        let body = json_of(&Reply::of_error(&not_live, Duration::ZERO));
        assert_eq!(body["error"]["kind"], "not_connected");
        assert!(body["error"].get("retryAfterMs").is_none());
        let late = CommandError::NoAnswer {
            shard: 0,
            after: Duration::from_secs(7),
        };
        assert_eq!(Reply::of_error(&late, Duration::ZERO).result(), "timed_out");
    }
}
