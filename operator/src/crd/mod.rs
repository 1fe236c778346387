//! The `ShardSet` custom resource (`shardset.io/v1alpha1`): its spec (its status types are in
//! `status.rs` beside this file), the validation the API server applies before the operator
//! ever sees an object (OpenAPI schema plus CEL rules, each with a message that says what to
//! change), and the CRD as `make generate` writes it.
//!
//! `spec.shards` is a plain integer so that the scale subresource (`kubectl scale shardset X
//! --replicas=N`) can read and write it; "auto" is a separate `spec.autoShards` object rather than
//! a magic value of `shards`, and exactly one of the two is set. Scaling an auto ShardSet is
//! therefore refused with a message (the apiserver runs the CEL rules on `/scale` updates too).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
    TopologySpreadConstraint,
};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use shardset_contract::GatewayCompression;

mod bus;
mod status;
pub use bus::{BusLimits, BusSecretRef, BusSpec};
pub use status::{LayoutStatus, SessionStartLimitStatus, ShardSetStatus};

/// Discord's gateway intents that exist today: bits 0–16, 20, 21, 24 and 25
/// (discord-api-docs `developers/events/gateway.mdx`, "List of Intents").
pub const KNOWN_INTENTS: u64 = 0b11_0011_0001_1111_1111_1111_1111;

/// Longest ShardSet name: pod names are `<name>-<total>-<first>-<last>` and must stay within the
/// 63 characters of a label value and a hostname, with shard ids of up to five digits.
pub const MAX_NAME_LEN: usize = 40;

/// Env names the operator sets itself, or that every pod of a bot must share; `spec.pod.env`
/// may not override them (a literal `DISCORD_TOKEN` there would put the token into the pod spec;
/// a smaller `IDENTIFY_MARGIN_MS` in one ShardSet would let its Identifies land inside another's
/// window: docs/redis-protocol.md, "Timing").
pub const RESERVED_ENV: &[&str] = &[
    shardset_contract::env::SHARD_FIRST,
    shardset_contract::env::SHARD_LAST,
    shardset_contract::env::SHARD_TOTAL,
    shardset_contract::env::MAX_CONCURRENCY,
    shardset_contract::env::REDIS_URL,
    shardset_contract::env::REDIS_PASSWORD,
    shardset_contract::env::REDIS_CA_FILE,
    shardset_contract::env::DISCORD_API_URL,
    shardset_contract::env::DISCORD_TOKEN,
    shardset_contract::env::DISCORD_INTENTS,
    shardset_contract::env::SHARDSET_LAYOUT,
    shardset_contract::env::SHARDSET_NAME,
    shardset_contract::env::POD_NAME,
    shardset_contract::env::IDENTIFY_RESERVE,
    shardset_contract::env::IDENTIFY_WINDOW_MS,
    shardset_contract::env::IDENTIFY_MARGIN_MS,
    shardset_contract::env::GATEWAY_COMPRESSION,
    shardset_contract::env::HANDOVER_WINDOW_MS,
    shardset_contract::env::HANDOVER_CLAIM_TTL_MS,
    shardset_contract::env::NATS_URL,
    shardset_contract::env::NATS_USER,
    shardset_contract::env::NATS_PASSWORD,
    shardset_contract::env::NATS_TOKEN,
    shardset_contract::env::SHARDSET_STREAM,
    shardset_contract::env::SHARDSET_SUBJECT_PREFIX,
    shardset_contract::env::SHARDSET_PARTITIONS,
];

/// A bot's gateway shards: how many, how they are packed into pods, and what the pods need.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "shardset.io",
    version = "v1alpha1",
    kind = "ShardSet",
    plural = "shardsets",
    shortname = "shs",
    category = "discord",
    namespaced,
    status = "ShardSetStatus",
    derive = "PartialEq",
    doc = "A Discord bot's gateway shards, run as one worker pod per shard range.",
    scale(
        spec_replicas_path = ".spec.shards",
        status_replicas_path = ".status.shards",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Shards",
        type_ = "integer",
        json_path = ".status.shards",
        description = "Shard total of the target layout"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyShards",
        description = "Shards of the target layout whose pod is Ready"
    ),
    printcolumn(
        name = "Pods",
        type_ = "integer",
        json_path = ".status.pods",
        description = "Worker pods"
    ),
    printcolumn(
        name = "Guilds",
        type_ = "integer",
        json_path = ".status.guilds",
        description = "Guilds held by the target layout's shards"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Reason of the Ready condition",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    validation = Rule::new("size(self.metadata.name) <= 40")
        .message("metadata.name must be at most 40 characters: pod names append the shard total and range")
)]
#[x_kube(
    validation = Rule::new("has(self.shards) != has(self.autoShards)").message(
        "set exactly one of spec.shards (a fixed shard count) or spec.autoShards (count from Discord's recommendation); `kubectl scale` works only with spec.shards"
    ),
    validation = Rule::new("!has(self.shards) || self.shardsPerPod <= self.shards")
        .message("spec.shardsPerPod must not exceed spec.shards")
        .field_path(".shardsPerPod")
)]
#[serde(rename_all = "camelCase")]
pub struct ShardSetSpec {
    /// Total number of shards (Discord's `num_shards`). Omit it and set `autoShards` to follow
    /// Discord's recommendation instead. The scale subresource reads and writes this field
    /// (`kubectl scale --replicas`). A new total is a new layout: every shard of it identifies
    /// once (see `reshardStrategy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65536))]
    pub shards: Option<u32>,

    /// Derive the shard total from Discord's `GET /gateway/bot` recommendation instead of
    /// `shards` (exactly one of the two; `kubectl scale` is refused then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_shards: Option<AutoShards>,

    /// Shards run by each pod (at most `shards`). Ranges are contiguous; the last pod may run
    /// fewer. A new value on the same total repacks the pods one at a time.
    #[serde(default = "default_shards_per_pod")]
    #[schemars(range(min = 1, max = 65536))]
    pub shards_per_pod: u32,

    /// The Secret key holding the bot token, in the ShardSet's namespace. The token reaches pods
    /// only by `secretKeyRef`; a new token in the Secret rolls the pods one at a time.
    pub token_secret_ref: TokenSecretRef,

    /// Gateway intents bitfield (e.g. 513 = GUILDS | GUILD_MESSAGES; default 1 = GUILDS). Only
    /// Discord's bits 0-16, 20, 21, 24 and 25 are accepted. New intents roll the pods and let
    /// shards refused for their intents (4013, 4014) try again.
    #[serde(default = "default_intents")]
    #[x_kube(validation = Rule::new(
        "self < 67108864 && (self / 131072) % 8 == 0 && (self / 4194304) % 4 == 0"
    ).message(
        "spec.intents must be a Discord intents bitfield: only bits 0-16, 20, 21, 24 and 25 exist (e.g. 513 = GUILDS | GUILD_MESSAGES)"
    ))]
    #[schemars(range(min = 0))]
    pub intents: u64,

    /// Worker container image. Omit it to run the worker image the operator was released with
    /// (the operator chart's `workerImage`, the operator's `--worker-image`); a new default then
    /// rolls the pods one at a time, each resuming its sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,

    /// The Redis every pod of the bot shares (Identify gates, budget, leases, saved sessions,
    /// shard status, layout roles). One bot per Redis key space: its keys are
    /// `shardset:{<application id>}:*`.
    pub redis: RedisSpec,

    /// Discord REST settings; defaults talk to discord.com.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewaySpec>,

    /// Override of Discord's `max_concurrency` (Identify buckets), normally read from
    /// `GET /gateway/bot`. Workers accept only a divisor of Discord's value (fewer, coarser
    /// buckets); with any other their shards do not identify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrency: Option<u32>,

    /// How a new shard total replaces the running layout (other changes of the pods always roll
    /// one pod at a time, each resuming its sessions).
    #[serde(default)]
    pub reshard_strategy: ReshardStrategy,

    /// Timing of the BlueGreen hand-over between layouts (`docs/resharding.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<HandoverSpec>,

    /// Session starts (Identifies) kept in reserve: workers never spend the daily budget below
    /// it, and a reshard that would need them is refused.
    #[serde(default)]
    pub identify_reserve: u32,

    /// The bot tier: publish every dispatch to NATS JetStream for handler services in any
    /// language (`docs/bus-protocol.md`). Unset: the pods handle events themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus: Option<BusSpec>,

    /// Settings of the worker pods (the operator builds the rest of each pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodOverrides>,
}

fn default_shards_per_pod() -> u32 {
    1
}

fn default_intents() -> u64 {
    1
}

/// Shard count from Discord's recommendation.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AutoShards {
    /// Target guilds per shard (default 1000). The total is Discord's recommendation (one shard
    /// per 1,000 guilds) scaled to this target, never below the recommendation, and rounded up to
    /// a multiple of `max_concurrency` for large bots. Discord allows at most 2,500 guilds per
    /// shard; a lower target runs more, smaller shards.
    #[serde(default = "default_guilds_per_shard")]
    #[schemars(range(min = 100, max = 2500))]
    pub guilds_per_shard: u32,
    /// The operator reshards by itself when Discord's recommendation moves the total, at most
    /// once per this many seconds (default one day: a reshard spends one session start per new
    /// shard, and the budget is daily).
    #[serde(default = "default_min_reshard_interval")]
    #[schemars(range(min = 60))]
    pub min_reshard_interval_seconds: u32,
}

fn default_guilds_per_shard() -> u32 {
    1000
}

fn default_min_reshard_interval() -> u32 {
    86_400
}

/// Timing of the BlueGreen hand-over.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HandoverSpec {
    /// `W`: the longest time between the two layouts handling one event, in ms (default
    /// 10000). A hand-over waits it three times: after the new layout is ready, after both
    /// claim, after the old one retires (`docs/resharding.md`). Too short a value can let an
    /// event be handled twice or not at all when a shard falls that far behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 600000))]
    pub window_ms: Option<u32>,
    /// How long a claim on an event lives in Redis, in ms (default 600000). Workers use at
    /// least 3 × W whatever is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1000, max = 86400000))]
    pub claim_ttl_ms: Option<u32>,
}

impl HandoverSpec {
    /// `W` in ms.
    pub fn window_ms(spec: Option<&Self>) -> u64 {
        spec.and_then(|h| h.window_ms)
            .map_or(shardset_contract::DEFAULT_HANDOVER_WINDOW_MS, u64::from)
    }
}

/// Where the bot token lives.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TokenSecretRef {
    /// Secret name, in the ShardSet's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret (default `token`).
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_token_key() -> String {
    "token".into()
}

/// The bot's Redis.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(
    validation = Rule::new(
        "!has(self.tls) || self.url.startsWith('rediss://') || self.url.startsWith('rediss+sentinel://')"
    )
    .message("spec.redis.tls needs a rediss:// or rediss+sentinel:// URL in spec.redis.url")
        .field_path(".tls")
)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// `redis://host:port/db`, or `rediss://` for TLS: the server's certificate must match the
    /// host and chain to a public root (the Mozilla roots built into the worker and the
    /// operator), or to the CA of `tls.caSecretRef`. Under Redis Sentinel,
    /// `redis+sentinel://[:password@]sentinel-0:26379,sentinel-1,…/<master group>[/db]` (or
    /// `rediss+sentinel://` for TLS to the sentinels and the servers): the primary is asked of
    /// the sentinels at every reconnect, so a failover moves the workers and the operator to the
    /// promoted replica. The sentinels' own password, if they have one, goes in
    /// `?sentinel_password=`; the servers' in `secretRef`.
    #[schemars(regex(pattern = r"^rediss?(\+sentinel)?://.+"), length(max = 2048))]
    pub url: String,
    /// Secret key holding the Redis password, if Redis needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<RedisSecretRef>,
    /// TLS settings of a `rediss://` Redis whose certificate a private CA signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RedisTlsSpec>,
}

/// How a `rediss://` Redis is trusted.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RedisTlsSpec {
    /// Secret key holding the CA certificates (PEM) that signed the Redis server's
    /// certificate. Only these are trusted (not the public roots). Mounted read-only into the
    /// worker pods (env `REDIS_CA_FILE`) and read by the operator for its own connection.
    pub ca_secret_ref: RedisCaSecretRef,
}

/// Where the Redis CA bundle lives.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RedisCaSecretRef {
    /// Secret name, in the ShardSet's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret (default `ca.crt`, as cert-manager and the chart write it).
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca.crt".into()
}

/// Where the Redis password lives.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RedisSecretRef {
    /// Secret name, in the ShardSet's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret (default `password`).
    #[serde(default = "default_redis_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_redis_key() -> String {
    "password".into()
}

/// Discord gateway and REST settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[x_kube(
    validation = Rule::new("!has(self.identifyWindowMs) || self.identifyWindowMs >= 5000 || has(self.apiUrl)")
        .message("spec.gateway.identifyWindowMs below 5000 (Discord's Identify window) is only allowed together with spec.gateway.apiUrl pointing at a fake Discord")
        .field_path(".identifyWindowMs")
)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// REST base URL (default `https://discord.com/api`), for proxies and the fake Discord. The
    /// gateway URL itself comes from `GET /gateway/bot`, as for any client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://.+"), length(max = 2048))]
    pub api_url: Option<String>,
    /// Identify window in milliseconds (Discord: 5000): one Identify per bucket per window.
    /// Below 5000 only together with `apiUrl` (a fake Discord).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600000))]
    pub identify_window_ms: Option<u32>,
    /// Transport compression of the gateway connections (the worker's default: zstd-stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<GatewayCompression>,
}

/// How a new shard total replaces the running layout.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum ReshardStrategy {
    /// The new layout's pods start in standby beside the old ones; once all are READY, roles in
    /// Redis hand the events over so that each is acted on exactly once; then the old layout's
    /// pods are deleted. No gap (`docs/resharding.md`).
    #[default]
    BlueGreen,
    /// Stop the old layout, then start the new one (a gap in event handling).
    Recreate,
}

/// `imagePullPolicy` of the worker container.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// The parts of the worker pods users may set. Any change rolls the pods one at a time, each
/// resuming its sessions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Extra labels on the pods (the operator's own labels win).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Extra annotations on the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Resources of the worker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node selector of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations of the pods. The operator adds its own for `node.kubernetes.io/unreachable`
    /// and `not-ready` (30 s, so pods leave a lost node soon); one here for the same key
    /// replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Affinity of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Topology spread of the pods. Unset: the operator spreads each layout's pods over nodes
    /// (`kubernetes.io/hostname`, `maxSkew` 1, `ScheduleAnyway`). Set (even to `[]`): these
    /// replace it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// Extra environment variables. The operator's own variables (the env contract) cannot be
    /// overridden here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new(
        "self.all(e, !(e.name in ['SHARD_FIRST', 'SHARD_LAST', 'SHARD_TOTAL', 'MAX_CONCURRENCY', 'REDIS_URL', 'REDIS_PASSWORD', 'REDIS_CA_FILE', 'DISCORD_API_URL', 'DISCORD_TOKEN', 'DISCORD_INTENTS', 'SHARDSET_LAYOUT', 'SHARDSET_NAME', 'POD_NAME', 'IDENTIFY_RESERVE', 'IDENTIFY_WINDOW_MS', 'IDENTIFY_MARGIN_MS', 'GATEWAY_COMPRESSION', 'HANDOVER_WINDOW_MS', 'HANDOVER_CLAIM_TTL_MS', 'NATS_URL', 'NATS_USER', 'NATS_PASSWORD', 'NATS_TOKEN', 'SHARDSET_STREAM', 'SHARDSET_SUBJECT_PREFIX', 'SHARDSET_PARTITIONS']))"
    ).message(
        "spec.pod.env must not set the variables the operator sets itself (SHARD_*, DISCORD_*, REDIS_*, SHARDSET_*, POD_NAME, MAX_CONCURRENCY, IDENTIFY_*, GATEWAY_COMPRESSION, HANDOVER_*, NATS_*): use the matching spec fields (spec.bus for the bus), and spec.tokenSecretRef for the token"
    ))]
    pub env: Option<Vec<EnvVar>>,
    /// Secrets for pulling the worker image from a private registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// `imagePullPolicy` of the worker container (default: Kubernetes', `IfNotPresent` unless
    /// the tag is `latest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// Priority class of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub priority_class_name: Option<String>,
}

impl ShardSetSpec {
    /// The REST base URL the operator and the pods use.
    pub fn api_url(&self) -> &str {
        self.gateway
            .as_ref()
            .and_then(|g| g.api_url.as_deref())
            .unwrap_or(shardset_contract::rest::DEFAULT_API_URL)
    }
}

/// Where `make generate` writes the CRD, relative to the repository root.
pub const CRD_PATH: &str = "crds/shardset.io_shardsets.yaml";

/// A field's doc comment as `kubectl explain` should show it: `kubectl explain` wraps text to the
/// terminal itself, so the hard line breaks of a `///` comment (wrapped at 100 columns in the
/// source) come out as ragged lines. Lines of a paragraph are joined; blank lines (paragraphs) and
/// list items (`- `) keep their breaks.
fn reflow_description(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines().map(str::trim) {
        let at_line_start = out.is_empty() || out.ends_with('\n');
        if line.is_empty() {
            if !out.is_empty() && !out.ends_with("\n\n") {
                out.push_str(if at_line_start { "\n" } else { "\n\n" });
            }
            continue;
        }
        if !at_line_start {
            out.push(if line.starts_with("- ") { '\n' } else { ' ' });
        }
        out.push_str(line);
    }
    out.trim_end().to_owned()
}

/// The CRD to install: the derived one, with the unsigned integer formats schemars writes
/// (`uint32`, `uint64`) replaced by the OpenAPI ones the apiserver knows (it warns on every apply
/// otherwise), the `minimum: 0` beside them keeping the meaning, and descriptions reflowed for
/// `kubectl explain` ([`reflow_description`]).
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    fn fix(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(description)) = map.get_mut("description") {
                    *description = reflow_description(description);
                }
                if let Some(serde_json::Value::String(format)) = map.get_mut("format") {
                    match format.as_str() {
                        "uint32" => *format = "int32".into(),
                        "uint64" => *format = "int64".into(),
                        _ => {}
                    }
                }
                map.values_mut().for_each(fix);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(fix),
            _ => {}
        }
    }
    let crd = ShardSet::crd();
    let Ok(mut json) = serde_json::to_value(&crd) else {
        return crd;
    };
    fix(&mut json);
    serde_json::from_value(json).unwrap_or(crd)
}

/// The CRD as the checked-in YAML file holds it (what `crdgen` prints).
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    let yaml = serde_saphyr::to_string(&crd())?;
    Ok(format!(
        "# Generated from operator/src/crd.rs by `make generate` (crdgen). Do not edit.\n{yaml}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn checked_in_crd_is_fresh() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../crds/shardset.io_shardsets.yaml"
        );
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == crd_yaml().expect("yaml"),
            "{CRD_PATH} is stale: run `make generate` and commit it"
        );
    }

    #[test]
    fn descriptions_are_reflowed_for_kubectl_explain() {
        assert_eq!(
            reflow_description(
                "One line\nwrapped here.\n\nA second\nparagraph:\n- item one\n  goes on\n- item two"
            ),
            "One line wrapped here.\n\nA second paragraph:\n- item one goes on\n- item two"
        );
        let json = schema_json().to_string();
        assert!(
            !json.contains("(default\\n10000)"),
            "a description still holds the source's hard line breaks"
        );
    }

    fn schema_json() -> serde_json::Value {
        serde_json::to_value(crd()).expect("crd to json")
    }

    #[test]
    fn only_openapi_integer_formats() {
        let json = schema_json().to_string();
        assert!(!json.contains("uint32") && !json.contains("uint64"));
        assert!(json.contains("\"int32\""));
    }

    #[test]
    fn crd_names_and_subresources() {
        let crd = ShardSet::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("shardsets.shardset.io"));
        assert_eq!(crd.spec.names.short_names, Some(vec!["shs".to_string()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        let sub = version.subresources.as_ref().expect("subresources");
        assert!(sub.status.is_some());
        let scale = sub.scale.as_ref().expect("scale");
        assert_eq!(scale.spec_replicas_path, ".spec.shards");
        assert_eq!(scale.status_replicas_path, ".status.shards");
        let columns: Vec<_> = version
            .additional_printer_columns
            .as_ref()
            .expect("columns")
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            ["Shards", "Ready", "Pods", "Guilds", "Status", "Age"]
        );
    }

    #[test]
    fn schema_carries_the_cel_rules() {
        let json = schema_json().to_string();
        for needle in [
            "has(self.shards) != has(self.autoShards)",
            "self.shardsPerPod <= self.shards",
            "identifyWindowMs >= 5000",
            "size(self.metadata.name) <= 40",
            "(self / 131072) % 8 == 0",
            "'DISCORD_TOKEN'",
        ] {
            assert!(json.contains(needle), "missing rule {needle}");
        }
    }

    #[test]
    fn known_intents_mask_matches_the_cel_rule() {
        // The CEL rule cannot use bit operators; it checks the three gaps arithmetically.
        // This proves the arithmetic and the mask agree on every single bit.
        for bit in 0..27u32 {
            let value = 1u64 << bit;
            let cel = value < 67_108_864
                && (value / 131_072).is_multiple_of(8)
                && (value / 4_194_304).is_multiple_of(4);
            assert_eq!(cel, KNOWN_INTENTS & value != 0, "bit {bit}");
        }
    }

    #[test]
    fn reserved_env_matches_the_cel_rule() {
        let json = schema_json().to_string();
        for name in RESERVED_ENV {
            assert!(
                json.contains(&format!("'{name}'")),
                "{name} not in CEL rule"
            );
        }
    }

    #[test]
    fn defaults_fill_in() {
        let spec: ShardSetSpec = serde_json::from_value(serde_json::json!({
            "shards": 4,
            "tokenSecretRef": {"name": "bot"},
            "image": "worker:dev",
            "redis": {"url": "redis://redis:6379"}
        }))
        .expect("parse");
        assert_eq!(spec.shards_per_pod, 1);
        assert_eq!(spec.intents, 1);
        assert_eq!(spec.token_secret_ref.key, "token");
        assert_eq!(spec.reshard_strategy, ReshardStrategy::BlueGreen);
        assert_eq!(spec.api_url(), "https://discord.com/api");
    }
}
