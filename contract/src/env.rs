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
