//! Discord's gateway protocol, without I/O: what a shard reads, decides and sends.
//!
//! - [`session`]: one shard's lifecycle as a state machine, `step(input) -> actions`.
//! - [`opcode`]: the gateway opcodes, by name.
//! - [`envelope`]: `op`/`s`/`t` of a payload, `d` left raw (read once, by whoever needs it).
//! - [`commands`]: the payloads a shard sends (Heartbeat, Identify, Resume) and its gateway URL.
//! - [`close_code`]: resume, identify anew, or stop, per gateway close code.
//! - [`compression`]: zlib-stream inflate, one context per connection.
//! - [`ratelimit`]: 120 commands per 60 s per connection, with a heartbeat reserve.
//! - [`trust`]: the resume URLs a shard may send its token to.
//!
//! The async loop that drives them over a WebSocket is [`crate::shard`].

pub mod close_code;
pub mod commands;
pub mod compression;
pub mod envelope;
pub mod opcode;
pub mod ratelimit;
pub mod session;
pub mod trust;

pub use opcode::Opcode;
