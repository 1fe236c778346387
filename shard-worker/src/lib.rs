//! Discord gateway shards for the ShardSet operator.
//!
//! The crate is both the worker library (gateway sessions, the Redis Identify protocol, the
//! `Handler` trait) and the home of everything the operator and the worker must agree on.
//!
//! - [`contract`]: the pod env contract and the Redis key layout, shared with the operator.
//! - [`token`]: the bot token in a type that never prints it.
//! - [`rest`]: the few Discord REST calls both sides make (`/gateway/bot`, `/users/@me`).

pub mod contract;
pub mod rest;
pub mod token;
