//! A worker process's parts around its shards.
//!
//! - [`run`](mod@run): runs every shard of the board with the bookkeeper and the layout watcher, and
//!   says how they ended ([`Outcome`]).
//! - [`board`]: each shard's state, live session and lease, written by the shard loops.
//! - [`bookkeeper`]: copies the board to Redis (checkpoints, status records, lease renewals,
//!   self-fencing).
//! - [`server`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`metrics`]: the worker's Prometheus metrics.

pub mod board;
pub mod bookkeeper;
pub mod metrics;
pub mod run;
pub mod server;

pub use run::{HANDLER_PANICKED, Outcome, run};
