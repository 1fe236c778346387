//! The per-shard runner: one async task per shard around its pure
//! [`session::Machine`](crate::gateway::session::Machine). It owns the WebSocket, the decoder, the
//! timers and the Identify permit, turns what happens into inputs, and carries out the machine's
//! actions. No Discord rule is decided here.
//!
//! Around each session sit the custody duties (`docs/redis-protocol.md`, "Custody between
//! pods"): take the shard's lease before connecting, resume from the saved session if there is
//! one, and on shutdown save the session, close with a resumable code and release the lease, in
//! that order.
//!
//! - [`lifecycle`]: the task: lease, session, and what follows its end.
//! - `runner`: one session's select loop; `actions`, `frames` and `connection` carry out the
//!   machine's actions, decode frames and handle the socket; `commanding` sends the bot's
//!   commands and delivers their answers; `ending` is how a session ends (save, close, release,
//!   or the fatal marker).
//! - `custody`: the shard's custody in Redis around its sessions (lease, fatal marker, a dead
//!   task's session); [`records`]: those records themselves.
//! - [`config`]: what every shard of a worker shares.

mod actions;
mod commanding;
pub mod config;
mod connection;
mod custody;
mod ending;
mod frames;
pub mod lifecycle;
pub mod records;
mod runner;

pub use config::{ShardConfig, Shared};
pub use custody::abandon;
pub use lifecycle::{Exit, run};
pub use runner::IDENTIFY_LOOP;
