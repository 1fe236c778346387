//! The contract between the operator and the worker pods, in one place:
//! the env variables the operator writes into every worker pod, the worker's HTTP endpoints, and
//! the Redis key layout of the Identify protocol (documented in `docs/redis-protocol.md`) with the
//! records stored under those keys.
//!
//! The operator imports this module; nothing here does I/O, so both sides (and bots written with
//! other libraries, following the protocol document) agree by construction.

use serde::{Deserialize, Serialize};

/// Environment variables of a worker pod. Each has a command-line flag of the same meaning
/// (`SHARD_FIRST` / `--shard-first`) for runs by hand; the token is env-only.
pub mod env {
    /// First shard id this pod runs (inclusive).
    pub const SHARD_FIRST: &str = "SHARD_FIRST";
    /// Last shard id this pod runs (inclusive).
    pub const SHARD_LAST: &str = "SHARD_LAST";
    /// Total shard count of the layout (`num_shards` in Identify).
    pub const SHARD_TOTAL: &str = "SHARD_TOTAL";
    /// Optional override of Discord's `max_concurrency`; else read from `GET /gateway/bot`.
    pub const MAX_CONCURRENCY: &str = "MAX_CONCURRENCY";
    /// Redis URL (`redis://host:port/db`), shared by every pod of the bot.
    pub const REDIS_URL: &str = "REDIS_URL";
    /// Optional Redis password, set by the operator from `spec.redis.secretRef` by `secretKeyRef`.
    pub const REDIS_PASSWORD: &str = "REDIS_PASSWORD";
    /// Discord REST base (`https://discord.com/api`); the gateway URL comes from `/gateway/bot`.
    pub const DISCORD_API_URL: &str = "DISCORD_API_URL";
    /// The bot token. Set only by `secretKeyRef`, never as a literal, never logged.
    pub const DISCORD_TOKEN: &str = "DISCORD_TOKEN";
    /// Gateway intents bitfield.
    pub const DISCORD_INTENTS: &str = "DISCORD_INTENTS";
    /// The layout this pod belongs to (see [`super::layout_name`]).
    pub const SHARDSET_LAYOUT: &str = "SHARDSET_LAYOUT";
    /// Name of the owning ShardSet (for logs and shard status).
    pub const SHARDSET_NAME: &str = "SHARDSET_NAME";
    /// This pod's name (downward API), written into leases and shard status.
    pub const POD_NAME: &str = "POD_NAME";
    /// Session starts kept in reserve: the worker never spends the budget below this.
    pub const IDENTIFY_RESERVE: &str = "IDENTIFY_RESERVE";
    /// Identify window in ms (Discord: 5000). Only shorter against a fake gateway, for tests.
    pub const IDENTIFY_WINDOW_MS: &str = "IDENTIFY_WINDOW_MS";
    /// Optional: extra hold of a used gate after the window, in ms (default: 2 % of the window,
    /// between 50 and 250 ms). Covers the time between our send and Discord's receipt.
    pub const IDENTIFY_MARGIN_MS: &str = "IDENTIFY_MARGIN_MS";
    /// Optional: how long a saved session stays resumable, in ms (the TTL of `Keys::session`;
    /// default 180000). Only shorter against a time-scaled fake gateway.
    pub const RESUME_WINDOW_MS: &str = "RESUME_WINDOW_MS";
    /// Optional: an in-pod HTTP endpoint (e.g. `http://127.0.0.1:9000/dispatch`) that receives
    /// every dispatch the pod acts on, as JSON, in order per shard.
    pub const FORWARD_URL: &str = "FORWARD_URL";
    /// Optional: `true` makes the default worker answer each MESSAGE_CREATE it acts on with a
    /// REST reply `ack <message id>` (the demo's and the hand-over tests' visible action); unset,
    /// empty, `false`, `0`, `no` or `off`: it does not.
    pub const REPLY_TO_MESSAGES: &str = "REPLY_TO_MESSAGES";
    /// Optional: the worker's HTTP listen address (default `0.0.0.0:8080`).
    pub const WORKER_LISTEN: &str = "WORKER_LISTEN";
    /// Optional: runtime threads of the worker (default 1; raise for pods with many busy shards).
    pub const WORKER_THREADS: &str = "WORKER_THREADS";
    /// Optional: `W` of the hand-over protocol (`docs/resharding.md`), in ms: the longest time
    /// between two layouts receiving one event. Default [`super::DEFAULT_HANDOVER_WINDOW_MS`];
    /// the operator waits the same `W` (it sets this from `spec.handover.windowMs`).
    pub const HANDOVER_WINDOW_MS: &str = "HANDOVER_WINDOW_MS";
    /// Optional: how long a claim (`Keys::claim`) lives, in ms. Default
    /// [`super::DEFAULT_HANDOVER_CLAIM_TTL_MS`]; never below 3 × `HANDOVER_WINDOW_MS`.
    pub const HANDOVER_CLAIM_TTL_MS: &str = "HANDOVER_CLAIM_TTL_MS";
}

/// Default `W` of the hand-over protocol: 10 s.
pub const DEFAULT_HANDOVER_WINDOW_MS: u64 = 10_000;
/// Default lifetime of a claim: 10 min (a claim only has to outlive `2 W`; the slack is cheap).
pub const DEFAULT_HANDOVER_CLAIM_TTL_MS: u64 = 600_000;

/// Port of the worker's HTTP server (`/healthz`, `/readyz`, `/metrics`).
pub const WORKER_HTTP_PORT: u16 = 8080;
/// Liveness path of the worker.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Readiness path of the worker: 200 when every owned shard is READY or RESUMED.
pub const READYZ_PATH: &str = "/readyz";
/// Prometheus metrics path of the worker.
pub const METRICS_PATH: &str = "/metrics";

/// Discord's Identify window: one Identify per rate-limit key per 5 s.
/// Source: discord-api-docs `developers/events/gateway.mdx`, "Session start limit".
pub const DISCORD_IDENTIFY_WINDOW_MS: u64 = 5_000;

/// The rate-limit key ("bucket") of a shard: `shard_id % max_concurrency`.
/// Source: discord-api-docs `developers/events/gateway.mdx`, "Max concurrency".
pub fn bucket(shard_id: u32, max_concurrency: u32) -> u32 {
    shard_id % max_concurrency.max(1)
}

/// The name of the layout that runs `total` shards. A layout is one complete set of sessions
/// with one `num_shards`; during a BlueGreen reshard two layouts run side by side.
pub fn layout_name(total: u32) -> String {
    total.to_string()
}

/// The Redis keys of one bot. Every key shares the hash tag `{<app_id>}` so that the Lua scripts
/// of the protocol run on Redis Cluster too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys of the bot (application) `app_id`.
    pub fn new(app_id: u64) -> Self {
        Self {
            prefix: format!("shardset:{{{app_id}}}"),
        }
    }

    /// The common prefix `shardset:{<app_id>}`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Marker with no TTL; its absence means Redis lost data and no gate is granted for a window.
    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    /// The Identify gate of one bucket (`shard_id % max_concurrency`).
    pub fn gate(&self, bucket: u32) -> String {
        format!("{}:gate:{bucket}", self.prefix)
    }

    /// Remaining session starts (from `/gateway/bot`), expiring at Discord's `reset_after`.
    pub fn budget(&self) -> String {
        format!("{}:budget", self.prefix)
    }

    /// Saved session of one shard of a layout, for hand-over and crash recovery.
    pub fn session(&self, total: u32, shard: u32) -> String {
        format!("{}:session:{total}:{shard}", self.prefix)
    }

    /// Which pod owns the live session of one shard of a layout.
    pub fn lease(&self, total: u32, shard: u32) -> String {
        format!("{}:lease:{total}:{shard}", self.prefix)
    }

    /// Shard state for the operator's status summary.
    pub fn status(&self, total: u32, shard: u32) -> String {
        format!("{}:status:{total}:{shard}", self.prefix)
    }

    /// The waiting line of one bucket (ZSET of shard ids): lower shard ids identify first.
    pub fn queue(&self, bucket: u32) -> String {
        format!("{}:queue:{bucket}", self.prefix)
    }

    /// When each waiter of one bucket last asked (HASH shard id → ms), to drop departed waiters.
    pub fn seen(&self, bucket: u32) -> String {
        format!("{}:seen:{bucket}", self.prefix)
    }

    /// The `max_concurrency` (bucket map) of the last granted gate, kept for `connect_bound`
    /// after each grant: `take_gate.lua` refuses callers with another map meanwhile, so two
    /// bucket maps are never live at once.
    pub fn max_concurrency(&self) -> String {
        format!("{}:max-concurrency", self.prefix)
    }

    /// A shard of a layout closed for good by the gateway (4004, 4010–4014): the reason, kept for
    /// the budget period. Checked before every Identify, so a restarted pod does not spend a
    /// session start on a shard Discord already refused; deleted by the operator when the
    /// ShardSet changes (a new token, intents or shard count).
    pub fn fatal(&self, total: u32, shard: u32) -> String {
        format!("{}:fatal:{total}:{shard}", self.prefix)
    }

    /// The roles of the layouts ([`LayoutRoles`] as JSON): which layout acts on events.
    pub fn active_layout(&self) -> String {
        format!("{}:active-layout", self.prefix)
    }

    /// A claim on one event during a hand-over (`docs/resharding.md`); `event_key` is the 32 hex
    /// digits of [`crate::roles::ClaimKey`].
    pub fn claim(&self, event_key: &str) -> String {
        format!("{}:claim:{event_key}", self.prefix)
    }

    /// A `SCAN MATCH` pattern for every key of one layout kind, e.g. `pattern("session")`.
    pub fn pattern(&self, kind: &str) -> String {
        format!("{}:{kind}:*", self.prefix)
    }
}

/// A session saved for the next owner of the shard (`Keys::session`), as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    pub session_id: String,
    /// Sequence number of the last dispatch that was handled; a resume replays what follows.
    pub seq: u64,
    pub resume_gateway_url: String,
    /// Unix time in ms when the record was written.
    pub saved_at_ms: u64,
}

/// How long a shard closed for good stays marked (`Keys::fatal`): Discord's session-start budget
/// period (24 h). A marker that expires lets the shard try once more, at most once a period.
pub const FATAL_MARKER_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// Why a shard of a layout was closed for good (`Keys::fatal`), as JSON. The worker writes it when
/// the gateway closes a shard with 4004 or 4010–4014 (or the Identify-loop guard stops it), and
/// reads it before every Identify: while it exists, the shard does not Identify (whichever pod
/// runs it, however often the pod restarts), unless the pod's intents differ from `intents`.
/// Deleting it lets a pod that was held back by it try again (a pod whose own Identify was
/// refused stays down until it is replaced).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FatalMarker {
    /// The gateway's close code; `None` when the Identify-loop guard stopped the shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// The same text as the shard's status `reason`.
    pub reason: String,
    /// The pod that saw it.
    #[serde(default)]
    pub pod: String,
    /// Unix time in ms when it was written.
    #[serde(default)]
    pub at_ms: u64,
    /// The intents of the refused Identify: a pod configured with other intents (the fix for
    /// 4013/4014) is not held back by the marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intents: Option<u64>,
}

impl FatalMarker {
    /// Reads a marker; a value that is not the JSON record (written by hand) is its reason.
    pub fn parse(value: &str) -> Self {
        serde_json::from_str(value).unwrap_or_else(|_| Self {
            code: None,
            reason: value.to_owned(),
            pod: String::new(),
            at_ms: 0,
            intents: None,
        })
    }

    /// Whether the marker holds back a shard whose pod identifies with `intents`: always, unless
    /// it names other intents.
    pub fn applies_to(&self, intents: u64) -> bool {
        self.intents.is_none_or(|refused| refused == intents)
    }
}

/// The state of one shard as the worker reports it under `Keys::status`, as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ShardState {
    /// Connecting or waiting for Hello.
    Connecting,
    /// Waiting for the bucket's Identify gate.
    WaitingForGate,
    /// Waiting because the daily session-start budget is at the reserve.
    WaitingForBudget,
    /// Waiting for another pod to release the shard's lease.
    WaitingForLease,
    /// Identify sent, READY not yet received.
    Identifying,
    /// Resume sent, RESUMED not yet received.
    Resuming,
    /// READY or RESUMED: receiving dispatches.
    Ready,
    /// Lost the connection; will reconnect.
    Reconnecting,
    /// Closed with a code that forbids reconnecting (4004, 4010–4014); `reason` says which.
    Fatal,
    /// Stopped (shutdown).
    Stopped,
}

/// One shard's status record (`Keys::status`), refreshed by the worker with a TTL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    pub state: ShardState,
    /// Guilds the shard holds (from READY plus GUILD_CREATE/DELETE).
    pub guilds: u32,
    pub pod: String,
    /// Why the shard is in this state, when it is not `Ready` (a close code, "budget at reserve").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Unix time in ms of the last update.
    pub updated_at_ms: u64,
    /// The `revision` of [`LayoutRoles`] the worker has applied (its acknowledgement; 0: the
    /// document was unset). Every dispatch handled after this record was written follows it.
    #[serde(default)]
    pub layout_revision: u64,
}

/// What a layout does with its events during a reshard (`docs/resharding.md`, "Roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Acts on every event: the steady state.
    Active,
    /// Connected and caching, acts on nothing.
    Standby,
    /// Acts on an event only after winning its claim (`SET P:claim:<key> NX`).
    Claiming,
    /// Acts on nothing; on shutdown ends its sessions (close 1000) instead of handing them over.
    Retired,
}

impl Role {
    /// Whether the handler may act at all (unconditionally or through a claim).
    pub fn may_act(self) -> bool {
        matches!(self, Self::Active | Self::Claiming)
    }

    /// A fixed label (metrics, logs).
    pub fn label(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Standby => "standby",
            Self::Claiming => "claiming",
            Self::Retired => "retired",
        }
    }
}

/// The document under `Keys::active_layout`, written only by the operator (compare-and-set on
/// `revision`), read by every worker. Unset: every layout is active (one layout, no reshard ever
/// ran). Set: a layout it does not name does **not** act (a leftover pod of an abandoned layout
/// must never act).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayoutRoles {
    /// Grows by one with every change of `roles`; workers acknowledge it in
    /// [`ShardStatus::layout_revision`].
    pub revision: u64,
    /// Role per layout name ([`layout_name`]).
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, Role>,
    /// Operator bookkeeping, ignored by workers: the hand-over under way (source layout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Operator bookkeeping: the layout a hand-over brings in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Operator bookkeeping: Redis time (ms) when every shard concerned had acknowledged
    /// `revision` (the `W` waits run from it, on one clock whichever operator replica leads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_at_ms: Option<u64>,
    /// Operator bookkeeping: Redis time (ms) when the hand-over began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
}

impl LayoutRoles {
    /// The role of `layout` under `doc` (see the type's documentation for the defaults).
    pub fn role_of(doc: Option<&Self>, layout: &str) -> Role {
        match doc {
            None => Role::Active,
            Some(doc) => doc.roles.get(layout).copied().unwrap_or(Role::Standby),
        }
    }

    /// True while the document names more than one layout: a hand-over may need what the
    /// active layout acted on recently (its back-fill), so workers remember it.
    pub fn reshard_under_way(doc: Option<&Self>) -> bool {
        doc.is_some_and(|d| d.roles.len() > 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let keys = Keys::new(42);
        for key in [
            keys.epoch(),
            keys.gate(3),
            keys.budget(),
            keys.session(16, 5),
            keys.lease(16, 5),
            keys.status(16, 5),
            keys.active_layout(),
            keys.queue(3),
            keys.seen(3),
            keys.max_concurrency(),
            keys.claim("00ff"),
            keys.fatal(16, 5),
        ] {
            assert!(key.starts_with("shardset:{42}:"), "{key}");
        }
        assert_eq!(keys.gate(3), "shardset:{42}:gate:3");
        assert_eq!(keys.session(16, 5), "shardset:{42}:session:16:5");
        assert_eq!(keys.pattern("lease"), "shardset:{42}:lease:*");
        assert_eq!(keys.fatal(16, 5), "shardset:{42}:fatal:16:5");
        assert_eq!(keys.pattern("fatal"), "shardset:{42}:fatal:*");
    }

    #[test]
    fn bucket_is_shard_modulo_concurrency() {
        assert_eq!(bucket(0, 16), 0);
        assert_eq!(bucket(17, 16), 1);
        assert_eq!(bucket(5, 1), 0);
        // A zero concurrency is treated as one rather than dividing by zero.
        assert_eq!(bucket(5, 0), 0);
    }

    #[test]
    fn records_round_trip_as_camel_case_json() {
        let status = ShardStatus {
            state: ShardState::WaitingForGate,
            guilds: 7,
            pod: "bot-16-0-3".into(),
            reason: None,
            updated_at_ms: 1,
            layout_revision: 3,
        };
        let json = serde_json::to_string(&status).expect("serialize");
        assert_eq!(
            json,
            r#"{"state":"waitingForGate","guilds":7,"pod":"bot-16-0-3","updatedAtMs":1,"layoutRevision":3}"#
        );
        assert_eq!(
            serde_json::from_str::<ShardStatus>(&json).expect("parse"),
            status
        );
    }

    #[test]
    fn fatal_markers_round_trip_and_accept_plain_text() {
        let marker = FatalMarker {
            code: Some(4014),
            reason: "disallowed intents (4014)".into(),
            pod: "bot-2-0-1".into(),
            at_ms: 5,
            intents: Some(515),
        };
        let json = serde_json::to_string(&marker).expect("json");
        assert_eq!(
            json,
            r#"{"code":4014,"reason":"disallowed intents (4014)","pod":"bot-2-0-1","atMs":5,"intents":515}"#
        );
        assert_eq!(FatalMarker::parse(&json), marker);
        assert!(marker.applies_to(515));
        assert!(!marker.applies_to(513), "other intents may try");
        let by_hand = FatalMarker::parse("keep shard 3 down");
        assert_eq!(by_hand.code, None);
        assert_eq!(by_hand.reason, "keep shard 3 down");
        assert!(
            by_hand.applies_to(513),
            "a marker without intents holds every pod back"
        );
    }

    #[test]
    fn older_status_records_read_with_revision_zero() {
        let old = r#"{"state":"ready","guilds":1,"pod":"p","updatedAtMs":1}"#;
        let status: ShardStatus = serde_json::from_str(old).expect("parse");
        assert_eq!(status.layout_revision, 0);
    }

    #[test]
    fn roles_default_to_active_only_without_a_document() {
        assert_eq!(LayoutRoles::role_of(None, "16"), Role::Active);
        let doc: LayoutRoles =
            serde_json::from_str(r#"{"revision":7,"roles":{"16":"claiming","32":"standby"}}"#)
                .expect("parse");
        assert_eq!(LayoutRoles::role_of(Some(&doc), "16"), Role::Claiming);
        assert_eq!(LayoutRoles::role_of(Some(&doc), "32"), Role::Standby);
        assert_eq!(
            LayoutRoles::role_of(Some(&doc), "8"),
            Role::Standby,
            "a layout the document does not name never acts"
        );
        assert!(LayoutRoles::reshard_under_way(Some(&doc)));
        assert!(!LayoutRoles::reshard_under_way(None));
        assert_eq!(
            serde_json::to_string(&doc).expect("json"),
            r#"{"revision":7,"roles":{"16":"claiming","32":"standby"}}"#
        );
    }
}
