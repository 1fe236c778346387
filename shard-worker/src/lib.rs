//! Discord gateway shards for the ShardSet operator.
//!
//! The worker library: gateway sessions, the Redis Identify protocol, the [`handler::Handler`]
//! trait, and the default worker binary.
//!
//! Pure decisions, each with its unit tests:
//! - [`session`]: one shard's lifecycle as a state machine, `step(input) -> actions`.
//! - [`close_code`]: resume, identify anew, or stop, per gateway close code.
//! - [`compression`]: zlib-stream inflate, one context per connection.
//! - [`envelope`]: `op`/`s`/`t` of a payload, `d` left raw (read once, by whoever needs it).
//! - [`ratelimit`]: 120 commands per 60 s per connection, with a heartbeat reserve.
//! - [`roles`]: a layout's role during a reshard: act, skip, or claim first; the back-fill.
//!
//! I/O around them:
//! - [`shard`]: the async loop that drives one shard's machine over tokio-tungstenite.
//! - [`identify`]: the Identify queue trait and the Redis protocol (`docs/redis-protocol.md`).
//! - [`board`], [`bookkeeper`]: shard states, checkpoints, status records and lease renewals.
//! - [`acting`]: the roles from Redis, event claims, acknowledgements (`docs/resharding.md`).
//! - [`handler`], [`default_handler`], [`forward`]: what happens to dispatches.
//! - [`worker`], [`server`], [`metrics`]: a worker's shards, its HTTP endpoints, its metrics.
//!
//! What the operator and the worker agree on (pod env, Redis keys and records, the token type, the
//! Discord REST client) is the `shardset-contract` crate.

pub mod acting;
pub mod board;
pub mod bookkeeper;
pub mod close_code;
pub mod compression;
pub mod default_handler;
pub mod envelope;
pub mod forward;
pub mod handler;
pub mod identify;
pub mod metrics;
pub mod ratelimit;
pub mod roles;
pub mod server;
pub mod session;
pub mod shard;
pub mod worker;
