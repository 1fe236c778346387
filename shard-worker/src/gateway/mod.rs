//! Discord's gateway protocol, without I/O: what a shard reads, decides and sends.
//!
//! - [`session`]: one shard's lifecycle as a state machine, `step(input) -> actions`.
//! - [`opcode`]: the gateway opcodes, by name.
//! - [`envelope`]: `op`/`s`/`t` of a payload, `d` left raw (read once, by whoever needs it).
//! - [`field_scan`]: one top-level string field of `d` (its `id`), the rest unread.
//! - [`commands`]: the payloads a shard sends (Heartbeat, Identify, Resume) and its gateway URL.
//! - [`bot_commands`]: the commands a bot sends through its shards (op 3, 4, 8, raw), checked.
//! - [`members`]: op 8's answers (GUILD_MEMBERS_CHUNK, RATE_LIMITED) gathered by nonce.
//! - [`close_code`]: resume, identify anew, or stop, per gateway close code.
//! - [`compression`]: zstd-stream (the default), zlib-stream or none; one decoder per connection.
//! - [`ratelimit`]: 120 commands per 60 s per connection, with a heartbeat reserve.
//! - [`snowflake`]: reading ids as Discord writes them.
//! - [`trust`]: the resume URLs a shard may send its token to.
//!
//! The async loop that drives them over a WebSocket is [`crate::shard`].

pub mod bot_commands;
pub mod close_code;
pub mod commands;
pub mod compression;
pub mod envelope;
pub mod field_scan;
pub mod members;
pub mod opcode;
pub mod ratelimit;
pub mod session;
pub mod snowflake;
pub mod trust;

pub use opcode::Opcode;
