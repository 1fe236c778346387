//! The records of the control API (`/control/...`), public and `Deserialize` so that tests can
//! read them over HTTP with the same types the fake writes. Snowflakes travel as strings, as in
//! Discord's own JSON; times are Unix milliseconds (`at_us` adds microseconds where windows are
//! compared).

use serde::{Deserialize, Serialize};

/// A rule of Discord's that a client broke. Each breach is one [`Violation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Two Identifies of one bucket (`shard_id % max_concurrency`) inside the Identify window,
    /// measured at arrival. Answered with op 9 `false`.
    IdentifyTooFast,
    /// An Identify with no session start left: every session is closed and the token is reset.
    BudgetExhausted,
    /// More than `send_limit` commands in one send window on one connection: close 4008.
    SendRateLimit,
    /// A shard would hold more than `max_guilds_per_shard` guilds: close 4011.
    ShardingRequired,
    /// Wrong (or reset) token in Identify or Resume: close 4004.
    AuthenticationFailed,
    /// A privileged intent the bot is not allowed: close 4014.
    DisallowedIntents,
    /// Unknown intent bits: close 4013.
    InvalidIntents,
    /// `shard` out of range or not a multiple of the large-bot shard count: close 4010.
    InvalidShard,
    /// A second Identify (or a Resume) on an authenticated connection: close 4005.
    AlreadyAuthenticated,
    /// A command other than Heartbeat before Identify/Resume: close 4003.
    NotAuthenticated,
    /// A payload that is not valid JSON or lacks a required field: close 4002.
    DecodeError,
    /// An opcode clients may not send: close 4001.
    UnknownOpcode,
    /// "An invalid payload for an opcode" (opcodes-and-status-codes.mdx, 4001): a command's `d`
    /// lacks a documented field or has one of the wrong type or out of its range
    /// (`large_threshold`; op 3's `status`; op 8 with more than 100 `user_ids`): close 4001.
    InvalidPayload,
    /// A Resume claiming a `seq` the session never sent: op 9 `false`.
    InvalidResumeSeq,
    /// No heartbeat within the interval plus tolerance: close 4000 (the session stays
    /// resumable, as the docs say).
    HeartbeatTimeout,
    /// A `v` query parameter other than 9 or 10: close 4012.
    InvalidApiVersion,
    /// A Resume on the gateway URL rather than READY's `resume_gateway_url` (gateway.mdx
    /// "Resuming"): op 9 `false`, so the client has to Identify anew. The session itself is left
    /// as it was.
    ResumeNotOnResumeUrl,
    /// A request for all members of a guild (op 8 with `query: ""` and `limit: 0`) within the
    /// window (30 s) of the previous one for that guild, bot-wide (change-log.mdx, "Introducing
    /// Rate Limit When Requesting All Guild Members"): answered with a RATE_LIMITED dispatch
    /// and no chunks.
    RequestAllMembersTooFast,
    /// op 4 or op 8 for a guild that the session's shard does not hold (or that is not one of
    /// the bot's): nothing is answered.
    GuildNotOnShard,
    /// op 8 with `query: ""` without the GUILD_MEMBERS intent (gateway-events.mdx, "Request
    /// Guild Members"): nothing is answered.
    MembersIntentRequired,
}

/// One breach of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub rule: Rule,
    /// Unix ms when the offending payload arrived.
    pub at_ms: u64,
    #[serde(default)]
    pub shard: Option<u32>,
    #[serde(default)]
    pub num_shards: Option<u32>,
    #[serde(default)]
    pub session_id: Option<String>,
    /// The connection (numbered from 1 in accept order).
    pub connection: u64,
    pub details: String,
}

/// What became of an Identify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifyOutcome {
    /// READY was sent; a session start was spent.
    Accepted,
    /// op 9 `false` (too fast for its bucket).
    InvalidSession,
    /// The connection was closed (`close_code` says why).
    Closed,
}

/// One Identify as it arrived at the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentifyRecord {
    /// Unix ms of arrival.
    pub at_ms: u64,
    /// Unix µs of arrival (the bucket window is checked at this precision): the kernel's
    /// receive timestamp of the bytes, not when the fake got round to them.
    pub at_us: u64,
    /// How long after arriving the fake judged it, in µs (its own lag under load).
    #[serde(default)]
    pub lag_us: u64,
    pub shard: u32,
    pub num_shards: u32,
    /// `shard % max_concurrency`.
    pub bucket: u32,
    pub outcome: IdentifyOutcome,
    #[serde(default)]
    pub close_code: Option<u16>,
    /// The new session, when accepted.
    #[serde(default)]
    pub session_id: Option<String>,
    pub connection: u64,
}

/// A session as the fake holds it (live, or disconnected but still resumable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub session_id: String,
    pub shard: u32,
    pub num_shards: u32,
    pub bucket: u32,
    pub intents: u64,
    /// Sequence number of the last dispatch queued for the session.
    pub seq: u64,
    /// Sequence number of the last dispatch written to the current connection.
    pub sent_seq: u64,
    /// READY was written to a connection.
    pub ready: bool,
    /// A connection is attached now.
    pub connected: bool,
    #[serde(default)]
    pub connection: Option<u64>,
    /// While disconnected: Unix ms until which a Resume is accepted.
    #[serde(default)]
    pub resumable_until_ms: Option<u64>,
    /// Guilds routed to this session (READY's `guilds`).
    pub guilds: u32,
    /// Successful resumes of this session.
    pub resumes: u32,
    /// Dispatches kept for replay.
    pub buffered: usize,
    pub created_at_ms: u64,
}

/// Why a session ended (it can never be resumed again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SessionEnd {
    /// op 9 Invalid Session `false` (the fault): Discord invalidated it.
    InvalidSession,
    /// Its connection closed (by either side) with a code that ends a session (1000, 1001,
    /// 4007, 4009, ...); `None`: no code.
    Closed {
        #[serde(default)]
        code: Option<u16>,
    },
    /// Nobody resumed it within the resume window.
    Expired,
    /// Its client fell further behind than the replay buffer.
    Overflow,
    /// The token was reset (budget exhausted) or the fake was reset.
    Terminated,
}

impl SessionEnd {
    /// Discord invalidated the session itself (op 9 `false`, close 4007 or 4009): what was
    /// written to its socket and not read when it ended is not replayed to anyone. Every other
    /// end is the client's doing (or the test's reset).
    pub fn invalidated_by_gateway(self) -> bool {
        matches!(
            self,
            Self::InvalidSession
                | Self::Closed {
                    code: Some(4007 | 4009)
                }
        )
    }
}

/// Every session the fake ever started (`GET /control/session_history`), ended or not: how far
/// its dispatches were written to a socket, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionHistory {
    pub session_id: String,
    pub shard: u32,
    pub num_shards: u32,
    pub created_at_ms: u64,
    /// The highest sequence number written to any of its connections: every dispatch
    /// `1..=written_seq` went out on a socket at least once.
    pub written_seq: u64,
    pub resumes: u32,
    /// `None` while it is live or resumable.
    #[serde(default)]
    pub ended: Option<SessionEnd>,
}

/// Two sessions of one shard (same `shard` and `num_shards`) live at once
/// (`GET /control/overlaps`): both attached to a connection, so the bot would receive (and act
/// on) that shard's events twice. Recorded when the second one attaches (Identify or Resume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionOverlap {
    /// Unix ms when the second session attached.
    pub at_ms: u64,
    pub shard: u32,
    pub num_shards: u32,
    /// The session that attached, and its connection.
    pub session_id: String,
    pub connection: u64,
    /// The session that was already live, and its connection.
    pub live_session_id: String,
    pub live_connection: u64,
}

/// What the fake did with a command (`CommandRecord.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandOutcome {
    /// Taken, nothing to answer: op 3, op 4, and the opcodes the fake does not model (31, 43).
    Accepted,
    /// op 8 answered with `chunks` GUILD_MEMBERS_CHUNK dispatches.
    Answered,
    /// op 8 answered with a RATE_LIMITED dispatch (`retry_after`), no chunks.
    RateLimited,
    /// Nothing answered, as on Discord: the guild is not on the session's shard, or all members
    /// were asked for without the GUILD_MEMBERS intent. A violation says which.
    Ignored,
}

/// A command a client sent on an authenticated connection (op 3 Presence Update, op 4 Voice
/// State Update, op 8 Request Guild Members, and the opcodes the fake does not model, such as
/// 31 and 43), in arrival order. A payload that breaks its opcode's shape closes the connection
/// (`invalid_payload`) and is not recorded here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// Unix ms of arrival.
    pub at_ms: u64,
    /// Unix µs of arrival.
    pub at_us: u64,
    /// The connection (numbered from 1 in accept order).
    pub connection: u64,
    pub session_id: String,
    pub shard: u32,
    pub num_shards: u32,
    pub op: u8,
    /// The command's `d`, as sent.
    pub d: serde_json::Value,
    pub outcome: CommandOutcome,
    /// op 8: the GUILD_MEMBERS_CHUNK dispatches queued (0 otherwise).
    #[serde(default)]
    pub chunks: u32,
    /// op 8 rate limited: the RATE_LIMITED dispatch's `retry_after`, in seconds.
    #[serde(default)]
    pub retry_after: Option<f64>,
}

/// A heartbeat that came later than the heartbeat interval plus `--heartbeat-slack-ms` after
/// the connection's previous one (or after Hello, for the first). Discord closes only at its own
/// timeout (`heartbeat_timeout`); this shows a client whose heartbeats slip before that.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateHeartbeat {
    /// Unix ms of arrival.
    pub at_ms: u64,
    pub connection: u64,
    /// The session on the connection, if it had one yet.
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub shard: Option<u32>,
    #[serde(default)]
    pub num_shards: Option<u32>,
    /// Time since the previous heartbeat (or Hello), ms.
    pub gap_ms: u64,
    /// How much longer than the heartbeat interval the gap was, ms.
    pub late_ms: u64,
}

/// Which records `GET /control/commands` and `GET /control/late_heartbeats` list (query
/// parameters; each one absent matches all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_shards: Option<u32>,
    /// Commands only: this opcode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<u8>,
}

impl RecordFilter {
    /// Whether a record of this session, shard and opcode matches.
    pub fn matches(
        &self,
        session_id: Option<&str>,
        shard: Option<[u32; 2]>,
        op: Option<u8>,
    ) -> bool {
        self.session_id
            .as_deref()
            .is_none_or(|id| session_id == Some(id))
            && self
                .shard
                .is_none_or(|s| shard.is_some_and(|[id, _]| id == s))
            && self
                .num_shards
                .is_none_or(|n| shard.is_some_and(|[_, total]| total == n))
            && self.op.is_none_or(|o| op == Some(o))
    }
}

/// `session_start_limit`, as `/gateway/bot` would answer now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetInfo {
    pub total: u32,
    pub remaining: u32,
    pub reset_after: u64,
    pub max_concurrency: u32,
}

/// Running totals since start (or the last reset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Counters {
    pub connections_open: u64,
    pub connections_total: u64,
    pub identifies: u64,
    pub identifies_accepted: u64,
    pub resumes: u64,
    pub resumes_failed: u64,
    pub heartbeats: u64,
    /// Dispatch frames written to connections (replays included).
    pub dispatches_sent: u64,
    /// Uncompressed JSON bytes of those frames.
    pub payload_bytes_sent: u64,
    /// Bytes on the wire after compression (all frames).
    pub wire_bytes_sent: u64,
    /// Events generated by the world (synthetic load, injected events, replies).
    pub events_generated: u64,
    /// Sessions closed because their client fell further behind than the replay buffer.
    pub overflows: u64,
    pub violations: u64,
    /// The longest an Identify waited in the fake between arriving and being judged, in µs.
    #[serde(default)]
    pub identify_lag_max_us: u64,
    /// Commands recorded in `/control/commands`.
    #[serde(default)]
    pub commands: u64,
    /// Heartbeats recorded in `/control/late_heartbeats`.
    #[serde(default)]
    pub heartbeats_late: u64,
    /// Times a session attached while another session of its shard was live
    /// (`/control/overlaps`).
    #[serde(default)]
    pub session_overlaps: u64,
    pub sessions: u64,
    pub token_reset: bool,
    pub budget: Option<BudgetInfo>,
}

/// The synthetic load (`GET`/`POST /control/load`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadSettings {
    /// MESSAGE_CREATE events per second over all guilds (0 stops the load).
    pub rate: u32,
    /// Approximate bytes of each event's `d`.
    #[serde(default = "default_payload_bytes")]
    pub payload_bytes: usize,
    /// Percentage of DMs (routed to shard 0 only).
    #[serde(default)]
    pub dm_percent: u8,
}

fn default_payload_bytes() -> usize {
    1_024
}

/// The load's settings and what it generated so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadStatus {
    pub running: bool,
    #[serde(flatten)]
    pub settings: LoadSettings,
    /// Synthetic messages generated since start.
    pub generated: u64,
}

/// Which connections a fault applies to. Empty: all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_shards: Option<u32>,
}

/// A fault to inject (`POST /control/faults`, body `{"kind": ..., <target fields>}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Send op 7 Reconnect; close with 4000 if the client has not after the grace period.
    Reconnect,
    /// Send op 9 Invalid Session; `resumable: false` ends the session.
    InvalidSession {
        #[serde(default)]
        resumable: bool,
    },
    /// Stop (or resume) answering heartbeats with op 11.
    Zombie {
        #[serde(default = "yes")]
        enabled: bool,
    },
    /// Send op 1 Heartbeat: the client must heartbeat at once.
    HeartbeatRequest,
    /// Close the connection with this code.
    Close {
        code: u16,
        #[serde(default)]
        reason: Option<String>,
    },
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Hold every frame to the client for this many ms (0 ends the delay).
    Delay { ms: u64 },
}

fn yes() -> bool {
    true
}

/// A fault and its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRequest {
    #[serde(flatten)]
    pub fault: Fault,
    #[serde(flatten)]
    pub target: Target,
}

/// How many connections a fault reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultResult {
    pub affected: u32,
}

/// Create synthetic messages now (`POST /control/messages`), as users posting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRequest {
    /// The guild (a snowflake, string or number); absent: a DM (routed to shard 0).
    #[serde(default, with = "opt_snowflake")]
    pub guild_id: Option<u64>,
    #[serde(default)]
    pub content: Option<String>,
    /// How many messages (default 1).
    #[serde(default)]
    pub count: Option<u32>,
}

/// The ids of created messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagesCreated {
    pub ids: Vec<String>,
}

/// Any dispatch (`POST /control/dispatch`): routed by `guild_id` like Discord's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispatchRequest {
    /// Event name, e.g. `GUILD_UPDATE`.
    pub t: String,
    pub d: serde_json::Value,
    /// Absent: shard 0 only.
    #[serde(default, with = "opt_snowflake")]
    pub guild_id: Option<u64>,
}

/// How many sessions an injected dispatch reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchResult {
    pub sessions: u32,
}

/// Overrides of the session start budget (`POST /control/budget`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetUpdate {
    #[serde(default)]
    pub remaining: Option<u32>,
}

/// For the synthetic messages created in `[since_ms, until_ms)`: how many got exactly one
/// reply (`POST /channels/{id}/messages` with `message_reference`), none, or more than one.
/// A reply is a message the bot *created*: a create answered with an earlier message because of
/// its `nonce` and `enforce_nonce: true` creates nothing and is not counted (see `deduplicated`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepliesReport {
    pub since_ms: u64,
    pub until_ms: u64,
    pub messages: u64,
    pub exactly_once: u64,
    pub none: u64,
    pub multiple: u64,
    /// Replies counted (to messages of the period).
    pub replies: u64,
    /// Replies since start to messages the fake does not know (or forgot).
    pub replies_to_unknown: u64,
    /// Creates since start answered with an earlier message of the same `nonce` in the same
    /// channel (`enforce_nonce: true`), so neither created nor counted as replies.
    #[serde(default)]
    pub deduplicated: u64,
    /// Up to 20 ids of messages without a reply.
    pub unanswered_sample: Vec<String>,
    /// Up to 20 ids of messages with more than one reply.
    pub multiple_sample: Vec<String>,
}

/// Routing help for tests: the guilds a shard receives (`GET /control/guilds?shard=&num_shards=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuildList {
    pub shard: u32,
    pub num_shards: u32,
    pub guild_ids: Vec<String>,
}

/// Serde for an optional snowflake: written as a string, read from a string or a number.
pub mod opt_snowflake {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.serialize_str(&v.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Str(String),
            Num(u64),
        }
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Num(n)) => Ok(Some(n)),
            Some(Raw::Str(s)) => s.parse().map(Some).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_requests_are_flat_json() {
        let req: FaultRequest =
            serde_json::from_str(r#"{"kind":"close","code":4000,"shard":3}"#).expect("parse");
        assert_eq!(
            req,
            FaultRequest {
                fault: Fault::Close {
                    code: 4000,
                    reason: None
                },
                target: Target {
                    shard: Some(3),
                    ..Target::default()
                },
            }
        );
        let req: FaultRequest = serde_json::from_str(r#"{"kind":"zombie"}"#).expect("parse");
        assert_eq!(req.fault, Fault::Zombie { enabled: true });
        assert_eq!(req.target, Target::default());
    }

    #[test]
    fn snowflakes_read_from_strings_and_numbers() {
        let a: MessageRequest = serde_json::from_str(r#"{"guild_id":"42"}"#).expect("parse");
        let b: MessageRequest = serde_json::from_str(r#"{"guild_id":42}"#).expect("parse");
        assert_eq!(a.guild_id, Some(42));
        assert_eq!(b.guild_id, Some(42));
        assert_eq!(
            serde_json::to_string(&a).expect("json"),
            r#"{"guild_id":"42","content":null,"count":null}"#
        );
    }
}
