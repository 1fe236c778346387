//! The records stored under the protocol's keys: saved sessions, fatal markers, shard status
//! and the layouts' roles during a reshard, as camelCase JSON (`docs/redis-protocol.md`).

use serde::{Deserialize, Serialize};

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

/// The first word of a shard's status `reason` from the moment the worker found its connection
/// silent (heartbeats without ACK: a zombie connection) until its session is live again; the
/// operator lists such shards in the `Ready` condition's message.
pub const SILENT_REASON: &str = "Silent";

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
    /// How many times this shard fell behind since its pod started: it left `ready` (a
    /// reconnect, a resume) or handled a dispatch later than the lag bound
    /// ([`crate::handover_lag_bound_ms`]). The operator restarts a hand-over's `W` countdown when
    /// it changes, however short the lapse was (`docs/resharding.md`, "What bounds W").
    #[serde(default)]
    pub lapses: u64,
    /// Set while the shard handles dispatches later than the lag bound: the worst lag seen
    /// since it fell behind, ms. Absent while it keeps up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind_ms: Option<u64>,
    /// With a bus (`spec.bus`): whether the pod's publisher can publish now (its
    /// `shardset_bus_accepting`): `false` from a failed publish or a lost connection until the
    /// next acknowledgement, while the shard stops reading the gateway. Absent without a bus
    /// (and in records of workers older than this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus_accepting: Option<bool>,
}

impl ShardStatus {
    /// The shard is healing a silent connection (reason [`SILENT_REASON`]).
    pub fn healing_silence(&self) -> bool {
        self.state != ShardState::Ready
            && self
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with(SILENT_REASON))
    }

    /// The shard receives and keeps up: READY, and handling within the lag bound.
    pub fn keeping_up(&self) -> bool {
        self.state == ShardState::Ready && self.behind_ms.is_none()
    }
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
    /// Operator bookkeeping: Redis time (ms) when the step's `W` countdown started: every shard
    /// concerned had acknowledged `revision` and every shard of both layouts kept up (the `W`
    /// waits run from it, on one clock whichever operator replica leads). Rewritten when a shard
    /// lapsed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_at_ms: Option<u64>,
    /// Operator bookkeeping: a digest of every running shard's `(pod, lapses)` of both layouts
    /// when the countdown started; another digest later means a shard lapsed meanwhile (even
    /// between two reads of the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_mark: Option<u64>,
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
    fn records_round_trip_as_camel_case_json() {
        let status = ShardStatus {
            state: ShardState::WaitingForGate,
            guilds: 7,
            pod: "bot-16-0-3".into(),
            reason: None,
            updated_at_ms: 1,
            layout_revision: 3,
            lapses: 2,
            behind_ms: Some(6_100),
            bus_accepting: Some(false),
        };
        let json = serde_json::to_string(&status).expect("serialize");
        assert_eq!(
            json,
            r#"{"state":"waitingForGate","guilds":7,"pod":"bot-16-0-3","updatedAtMs":1,"layoutRevision":3,"lapses":2,"behindMs":6100,"busAccepting":false}"#
        );
        assert_eq!(
            serde_json::from_str::<ShardStatus>(&json).expect("parse"),
            status
        );
    }

    #[test]
    fn records_without_the_bus_field_still_parse() {
        // A worker without a bus, or older than `busAccepting`, writes none.
        let old = r#"{"state":"ready","guilds":1,"pod":"p","updatedAtMs":1}"#;
        let status = serde_json::from_str::<ShardStatus>(old).expect("parse");
        assert_eq!(status.bus_accepting, None);
        let json = serde_json::to_string(&status).expect("serialize");
        assert!(!json.contains("busAccepting"), "{json}");
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
        assert_eq!((status.lapses, status.behind_ms), (0, None));
        assert!(status.keeping_up());
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
