//! `spec.bus`: the bot tier's bus (NATS JetStream). When it is set, every worker pod publishes
//! every dispatch to the bot's stream for handler services in any language
//! (`docs/bus-protocol.md`); the operator only hands the settings to the pods (the first worker
//! creates the stream, its handler groups' consumers and the handlers' bucket).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The bus the worker pods publish every dispatch to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BusSpec {
    /// NATS server URL, `nats://host:4222` (several comma-separated for a cluster). Credentials
    /// belong in `secretRef`, not in the URL: the URL is visible in the pod spec.
    #[schemars(regex(pattern = r"^(nats|tls)://[^@]+$"), length(max = 2048))]
    pub url: String,
    /// The Secret holding the NATS credentials (user and password, or a token), if NATS needs
    /// them. They reach the pods only by `secretKeyRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<BusSecretRef>,
    /// The JetStream stream (default `shardset-<namespace>-<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]+$"), length(min = 1, max = 255))]
    pub stream: Option<String>,
    /// The subject prefix (default `shardset.<namespace>.<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"),
        length(min = 1, max = 200)
    )]
    pub subject_prefix: Option<String>,
    /// Guild partitions: the unit of order and of handler scaling (a guild's events stay in one
    /// partition, whatever the shard count). Fixed once the stream exists: it is part of the
    /// stream's metadata, so it cannot change on a running ShardSet.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "spec.bus.partitions cannot change: it is part of the stream's metadata (make a new stream, with a new spec.bus.stream, to change it)"
    ))]
    pub partitions: u32,
    /// Handler groups whose consumers exist before the first publish (default `[default]`):
    /// a group added later sees only what is published after it joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub handler_groups: Option<Vec<String>>,
    /// The stream's limits. A full stream refuses new messages (`discard: new`) and the shards
    /// stop reading the gateway until handlers make room: nothing is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<BusLimits>,
}

fn default_partitions() -> u32 {
    shardset_contract::bus::DEFAULT_PARTITIONS
}

/// Where the NATS credentials live.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.tokenKey) != (has(self.userKey) || has(self.passwordKey))").message(
    "spec.bus.secretRef: set tokenKey, or userKey and passwordKey"
))]
#[x_kube(validation = Rule::new("has(self.userKey) == has(self.passwordKey)").message(
    "spec.bus.secretRef: userKey and passwordKey go together"
))]
pub struct BusSecretRef {
    /// Secret name, in the ShardSet's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub user_key: Option<String>,
    /// Key of the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub password_key: Option<String>,
    /// Key of a token (instead of user and password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub token_key: Option<String>,
}

/// Limits of the stream and of what a worker holds unacknowledged.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BusLimits {
    /// The stream's `max_bytes` (default unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_bytes: Option<u64>,
    /// The stream's `max_msgs` (default unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_messages: Option<u64>,
    /// The stream's `max_age`, in seconds (default unlimited). Messages older than this are
    /// removed even if no handler took them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_age_seconds: Option<u64>,
    /// The stream's replicas in a NATS cluster (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: Option<u32>,
    /// Dispatches one worker pod holds taken from the gateway and not yet acknowledged by the
    /// stream (default 4096); at the bound its shards stop reading the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_in_flight: Option<u32>,
}
