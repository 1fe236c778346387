//! The stored status of a ShardSet, as users and the scale subresource read it: counts, Discord's
//! figures, the layouts and the conditions. Built by `crate::status`; only its shape is here.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::{Deserialize, Serialize};

/// What the operator observed, for users and for the scale subresource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardSetStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Shard total of the target layout (fixed, or derived from Discord for `autoShards`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// Shards of the target layout whose pod is Ready (a worker is Ready when all its shards are).
    #[serde(default)]
    pub ready_shards: u32,
    /// Worker pods of this ShardSet, all layouts.
    #[serde(default)]
    pub pods: u32,
    /// Ready worker pods, all layouts.
    #[serde(default)]
    pub ready_pods: u32,
    /// Guilds held by the target layout's shards, from the workers' status in Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guilds: Option<u64>,
    /// Discord's recommended shard count (`GET /gateway/bot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended_shards: Option<u32>,
    /// Identify buckets in use: `spec.maxConcurrency` or Discord's `max_concurrency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Discord's daily session start budget, as last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_start_limit: Option<SessionStartLimitStatus>,
    /// The bot's application (user) id; keys its Redis state and lets cleanup find it after the
    /// token Secret is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<String>,
    /// The running and the wanted layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<LayoutStatus>,
    /// Label selector of this ShardSet's pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// `Ready` (the target layout is fully up), `Available` (the bot handles events: alert on
    /// this one), `Progressing`, `Degraded` and `Resharding`, with reasons a user can act on.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// `session_start_limit` of `GET /gateway/bot`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionStartLimitStatus {
    /// Session starts per 24 h.
    pub total: u32,
    /// Session starts left until `resetAt`.
    pub remaining: u32,
    /// When `remaining` goes back to `total`.
    pub reset_at: Time,
}

/// The layouts of a ShardSet. A layout is one complete set of sessions with one shard total.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LayoutStatus {
    /// The layout that acts on events (during a hand-over: the one it started from), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// The layout the spec asks for.
    pub target: String,
    /// The hand-over under way, `<from>→<to>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<String>,
    /// The reshard step (the `Resharding` condition's reason) while one is under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Revision of the layout roles in Redis (`P:active-layout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// When the target layout last changed (`autoShards` reshards at most once per
    /// `minReshardIntervalSeconds` from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_since: Option<Time>,
}
