//! The Identify queue: who may send an Identify, and when.
//!
//! Discord admits one Identify per bucket (`shard_id % max_concurrency`) per 5 s, and a daily
//! budget of session starts (discord-api-docs `developers/events/gateway.mdx`, "Session Start
//! Limit" and "Max Concurrency"). Many pods share those limits, so the permit comes from Redis:
//! [`gate::RedisQueue`] implements the protocol of `docs/redis-protocol.md`, summarised here:
//!
//! 1. `take_gate.lua`: check the epoch marker (missing → nothing granted for `connect_bound`),
//!    join the bucket's waiting line (lower shard ids first), and if the gate `P:gate:<bucket>` is
//!    free and the budget above the reserve, `SET gate owner PX connect_bound` and spend one
//!    session start, atomically.
//! 2. The shard sends Identify, then `confirm_gate.lua` shrinks the gate (if still ours) to
//!    window + margin **from the send**. Nothing sent → `release_gate.lua` deletes it and returns
//!    the session start.
//! 3. Waiters sleep for the gate's PTTL plus jitter, and ask again at once when the gate is
//!    released unused ([`wakeups`]: `release_gate.lua` publishes on `P:gate-events`, one
//!    subscription per process); Redis errors mean waiting, never identifying (fail closed).
//! 4. A budget Redis does not know yet (or cannot vouch for: no record of Discord's word for its
//!    period, or a count above it) is read from `GET /gateway/bot` once at a time per process
//!    and stored with `sync_budget.lua` ([`budget`]), never above what Discord said.
//!
//! [`IdentifyQueue`] ([`queue`]) is the one-method seam so tests and single-process bots can use
//! [`memory::MemoryQueue`], and [`http_facade`] serves the queue to bots of other libraries.
//!
//! The shard's other records (its lease, saved session, status, fatal marker) are not the
//! queue's: they are in [`crate::shard::records`].

pub mod budget;
pub mod gate;
pub mod http_facade;
pub mod memory;
pub mod queue;
pub mod wakeups;

pub use gate::{GateConfig, RedisQueue, connect};
pub use queue::{IdentifyQueue, Permit, PermitHandle, WaitReason, WaitReporter};
