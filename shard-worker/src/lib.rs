//! Discord gateway shards for the ShardSet operator.
//!
//! The worker library: gateway sessions, the Redis Identify protocol, the [`handler::Handler`]
//! trait, and the default worker binary.
//!
//! Pure decisions, each with its unit tests:
//! - [`gateway`]: Discord's gateway protocol without I/O: the session machine
//!   (`step(input) -> actions`), opcodes, the envelope, command payloads, close codes,
//!   zlib-stream, the send limit.
//! - [`handover::roles`]: a layout's role during a reshard: act, skip, or claim first; the
//!   back-fill.
//!
//! I/O around them:
//! - [`shard`]: the async loop that drives one shard's machine over tokio-tungstenite.
//! - [`identify`]: the Identify queue trait and the Redis protocol (`docs/redis-protocol.md`).
//! - [`handover`]: the roles from Redis, event claims, acknowledgements (`docs/resharding.md`).
//! - [`handler`]: what happens to dispatches: the trait, the default handler, the forwarder.
//! - [`worker`]: a worker's shards run together: the board of their states, the bookkeeper
//!   (checkpoints, status records, lease renewals), the HTTP endpoints, the metrics.
//!
//! What the operator and the worker agree on (pod env, Redis keys and records, the token type, the
//! Discord REST client) is the `shardset-contract` crate.

pub mod gateway;
pub mod handler;
pub mod handover;
pub mod identify;
pub mod shard;
pub mod worker;
