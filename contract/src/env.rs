//! Environment variables of a worker pod: the operator writes them, the worker reads them. Each
//! has a command-line flag of the same meaning (`SHARD_FIRST` / `--shard-first`) for runs by
//! hand; the token is env-only.

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
/// Optional: a PEM file of the CA certificates a `rediss://` Redis is trusted by (instead of
/// the Mozilla roots compiled in); the operator mounts it from `spec.redis.tls.caSecretRef`.
pub const REDIS_CA_FILE: &str = "REDIS_CA_FILE";
/// Discord REST base (`https://discord.com/api`); the gateway URL comes from `/gateway/bot`.
pub const DISCORD_API_URL: &str = "DISCORD_API_URL";
/// The bot token. Set only by `secretKeyRef`, never as a literal, never logged.
pub const DISCORD_TOKEN: &str = "DISCORD_TOKEN";
/// Gateway intents bitfield.
pub const DISCORD_INTENTS: &str = "DISCORD_INTENTS";
/// The layout this pod belongs to (see [`crate::layout_name`]).
pub const SHARDSET_LAYOUT: &str = "SHARDSET_LAYOUT";
/// Name of the owning ShardSet (for logs and shard status).
pub const SHARDSET_NAME: &str = "SHARDSET_NAME";
/// This pod's name (downward API), written into leases and shard status.
pub const POD_NAME: &str = "POD_NAME";
/// Session starts kept in reserve: the worker never spends the budget below this.
pub const IDENTIFY_RESERVE: &str = "IDENTIFY_RESERVE";
/// Identify window in ms (Discord: 5000). Only shorter against a fake gateway, for tests.
pub const IDENTIFY_WINDOW_MS: &str = "IDENTIFY_WINDOW_MS";
/// Optional: extra hold of a used gate after the window, in ms (default: 300 at Discord's window,
/// enough for one lost segment of the Identify; 100 at a shorter window, against a fake). Covers
/// the time between our send and Discord's receipt. Every pod of a bot must use the same: a
/// ShardSet's `spec.pod.env` may not set it.
pub const IDENTIFY_MARGIN_MS: &str = "IDENTIFY_MARGIN_MS";
/// Optional: the gateway's transport compression, `zstd-stream` (default), `zlib-stream` or
/// `none` ([`crate::GatewayCompression`]).
pub const GATEWAY_COMPRESSION: &str = "GATEWAY_COMPRESSION";
/// Optional: the window of the gateway send limit (120 commands per window per connection), in
/// ms (Discord: 60000). Only shorter against a time-scaled fake gateway.
pub const GATEWAY_SEND_WINDOW_MS: &str = "GATEWAY_SEND_WINDOW_MS";
/// Optional: heartbeats in a row that may go without an ACK before the connection counts as
/// silent (a zombie connection) and is closed and resumed in place, no Identify spent. Default 1
/// (Discord's rule: the previous heartbeat not ACKed when the next is due), at most 3; a silent
/// shard is closed within `(n + 1)` heartbeat intervals of its last ACK.
pub const GATEWAY_SILENT_BEATS: &str = "GATEWAY_SILENT_BEATS";
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
/// Optional: a bearer token the Identify queue facade (`--queue-listen`) requires of every
/// request (`Authorization: Bearer <token>`). A secret: env only, set by `secretKeyRef` through
/// `spec.pod.env`, never logged.
pub const QUEUE_TOKEN: &str = "QUEUE_TOKEN";
/// Optional: the worker's HTTP listen address (default `0.0.0.0:8080`).
pub const WORKER_LISTEN: &str = "WORKER_LISTEN";
/// Optional: runtime threads of the worker (default 1; raise for pods with many busy shards).
pub const WORKER_THREADS: &str = "WORKER_THREADS";
/// Optional: `W` of the hand-over protocol (`docs/resharding.md`), in ms: the longest time
/// between two layouts receiving one event. Default [`crate::DEFAULT_HANDOVER_WINDOW_MS`];
/// the operator waits the same `W` (it sets this from `spec.handover.windowMs`).
pub const HANDOVER_WINDOW_MS: &str = "HANDOVER_WINDOW_MS";
/// Optional: how long a claim (`Keys::claim`) lives, in ms. Default
/// [`crate::DEFAULT_HANDOVER_CLAIM_TTL_MS`]; never below 3 × `HANDOVER_WINDOW_MS`.
pub const HANDOVER_CLAIM_TTL_MS: &str = "HANDOVER_CLAIM_TTL_MS";

// The bot tier's bus (`docs/bus-protocol.md`). The handler libraries read the names they share
// with the worker (`NATS_*`, `SHARDSET_STREAM`, `SHARDSET_LEASE_TTL_MS`) from here too.

/// Optional: the bus, `nats://host:4222` (several comma-separated; credentials may be in the
/// URL). Set: the worker publishes every dispatch to NATS JetStream and checkpoints a dispatch
/// only once the stream acknowledged it.
pub const NATS_URL: &str = "NATS_URL";
/// Optional: NATS user name (with [`NATS_PASSWORD`]).
pub const NATS_USER: &str = "NATS_USER";
/// Optional: NATS password (with [`NATS_USER`]); set by `secretKeyRef` only, never logged.
pub const NATS_PASSWORD: &str = "NATS_PASSWORD";
/// Optional: NATS token; set by `secretKeyRef` only, never logged.
pub const NATS_TOKEN: &str = "NATS_TOKEN";
/// Optional: path of a NATS credentials file (user JWT and NKey seed), e.g. a mounted Secret.
pub const NATS_CREDS_FILE: &str = "NATS_CREDS_FILE";
/// The bot's stream (required with [`NATS_URL`] in the worker): by default
/// `shardset-<namespace>-<shardset>` ([`crate::bus::default_stream_name`]).
pub const SHARDSET_STREAM: &str = "SHARDSET_STREAM";
/// The subject prefix `S` (required with [`NATS_URL`] in the worker): by default
/// `shardset.<namespace>.<shardset>` ([`crate::bus::default_subject_prefix`]).
pub const SHARDSET_SUBJECT_PREFIX: &str = "SHARDSET_SUBJECT_PREFIX";
/// Optional: the number of guild partitions `P` (default [`crate::bus::DEFAULT_PARTITIONS`]);
/// must match the stream's metadata.
pub const SHARDSET_PARTITIONS: &str = "SHARDSET_PARTITIONS";
/// Optional: whether the worker creates the stream, its consumers and the handlers' bucket when
/// missing (default `true`); `false` when the operator or a person manages them (the worker then
/// waits for the stream and checks its metadata).
pub const SHARDSET_BUS_CREATE_STREAM: &str = "SHARDSET_BUS_CREATE_STREAM";
/// Optional: the handler groups whose consumers the stream's creator makes before the first
/// publish, comma-separated (default `default`).
pub const SHARDSET_BUS_GROUPS: &str = "SHARDSET_BUS_GROUPS";
/// Optional: the lease TTL in ms (default 10000): the handlers' bucket `max_age` and the
/// consumers' `ack_wait` when this process creates them.
pub const SHARDSET_LEASE_TTL_MS: &str = "SHARDSET_LEASE_TTL_MS";
/// Optional: the stream's `max_bytes` when the worker creates or updates it (default unlimited).
pub const SHARDSET_BUS_MAX_BYTES: &str = "SHARDSET_BUS_MAX_BYTES";
/// Optional: the stream's `max_msgs` (default unlimited).
pub const SHARDSET_BUS_MAX_MESSAGES: &str = "SHARDSET_BUS_MAX_MESSAGES";
/// Optional: the stream's `max_age` in ms (default unlimited).
pub const SHARDSET_BUS_MAX_AGE_MS: &str = "SHARDSET_BUS_MAX_AGE_MS";
/// Optional: the stream's `num_replicas` (default 1).
pub const SHARDSET_BUS_REPLICAS: &str = "SHARDSET_BUS_REPLICAS";
/// Optional: the stream's duplicate window in ms (default 120000; shorter only in tests).
pub const SHARDSET_BUS_DUPLICATE_WINDOW_MS: &str = "SHARDSET_BUS_DUPLICATE_WINDOW_MS";
/// Optional: dispatches of this process taken and not yet acknowledged by the stream, at most
/// (default 4096); at the bound the shards stop reading the gateway.
pub const SHARDSET_BUS_MAX_IN_FLIGHT: &str = "SHARDSET_BUS_MAX_IN_FLIGHT";
/// Optional: the same bound in payload bytes (default 67108864, 64 MiB).
pub const SHARDSET_BUS_MAX_IN_FLIGHT_BYTES: &str = "SHARDSET_BUS_MAX_IN_FLIGHT_BYTES";
/// Optional: the same bound per shard, in dispatches (default 1024).
pub const SHARDSET_BUS_SHARD_MAX_IN_FLIGHT: &str = "SHARDSET_BUS_SHARD_MAX_IN_FLIGHT";
