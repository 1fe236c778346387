//! A worker process's parts around its shards, and the [`Builder`] that puts them together.
//!
//! - [`builder`]: a whole worker from its [`Settings`] (what the `shard-worker` binary runs);
//!   [`settings`]: the pod env the operator writes, with a flag for each; [`signal`]: SIGTERM.
//! - [`run`](mod@run): runs every shard of the board with the bookkeeper and the layout watcher,
//!   and says how they ended ([`Outcome`]).
//! - [`board`]: each shard's state, live session and lease, written by the shard loops.
//! - [`bookkeeper`]: copies the board to Redis (checkpoints, status records, lease renewals).
//! - [`fence`]: self-fencing's hard deadline, on a thread of its own.
//! - [`pace_watch`]: whether each shard's handler keeps up, seen from outside the shard's task.
//! - [`server`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`metrics`]: the worker's Prometheus metrics.
//! - `startup`: Discord's answers with retries, and a refusal reported until shutdown.

pub mod board;
pub mod bookkeeper;
pub mod builder;
pub mod fence;
pub mod metrics;
pub mod pace_watch;
pub mod run;
pub mod server;
pub mod settings;
pub mod signal;
mod start_error;
mod startup;

pub use builder::Builder;
pub use run::{HANDLER_PANICKED, Outcome, run};
pub use settings::Settings;
pub use signal::shutdown_on_signal;
pub use start_error::StartError;
pub use startup::REFUSED_TOKEN;
