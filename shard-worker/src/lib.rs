//! Discord gateway shards for the ShardSet operator: the worker library, and the default worker
//! binary built on it (`src/bin/shard-worker.rs`).
//!
//! A bot implements [`handler::Handler`] and runs a whole worker with [`worker::Builder`]
//! (`examples/bot.rs`); it sends gateway commands with the builder's [`command::Commands`]
//! (`examples/commands.rs`). The library's rooms, one job each:
//!
//! - [`gateway`]: Discord's gateway protocol without I/O, each part with its unit tests: the
//!   session machine (`step(input) -> actions`), opcodes, the envelope, the command payloads,
//!   close codes, transport compression (zstd-stream, zlib-stream), the send limit.
//! - [`shard`]: the per-shard runner, one async task per shard around its machine over
//!   tokio-tungstenite, and the shard's custody across pods (lease, saved session, fatal marker,
//!   its records in Redis).
//! - [`identify`]: the Identify queue: the trait, the Redis gate and budget
//!   (`docs/redis-protocol.md`), an in-memory queue, the HTTP facade for other libraries.
//! - [`handover`]: resharding as a worker sees it: a layout's role, event claims, the back-fill
//!   and the acknowledgements (`docs/resharding.md`).
//! - [`handler`]: what happens to dispatches: the trait, the default handler (guild cache,
//!   forwarder, replies).
//! - [`command`]: what the bot sends through its shards: the [`command::Commands`] handle
//!   (presence, voice state, member requests, raw opcodes), within each connection's send limit.
//! - [`bus`]: every dispatch published to NATS JetStream for handler services
//!   (`docs/bus-protocol.md`), checkpointed only once acknowledged.
//! - [`worker`]: a worker's shards run together: the builder and its settings, the board of
//!   shard states, the bookkeeper (checkpoints, status records, lease renewals), the HTTP
//!   endpoints, the metrics.
//!
//! What the operator and the worker agree on (pod env, Redis keys and records, the token type, the
//! Discord REST client) is the `shardset-contract` crate.

pub mod bus;
pub mod command;
pub mod gateway;
pub mod handler;
pub mod handover;
pub mod identify;
pub mod shard;
pub mod worker;
