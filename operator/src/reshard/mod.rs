//! Resharding: moving a ShardSet from one layout (a complete set of sessions with one shard
//! total) to another, without a gap, without an event handled twice, and within Discord's session
//! start budget; the protocol and its proof are in `docs/resharding.md`.
//!
//! The pure parts, each unit-tested without a client:
//! - [`total`]: the shard total the spec asks for now (fixed, or Discord's recommendation, which
//!   `autoShards` holds back to one change per interval).
//! - [`views`]: each layout as a decision sees it (pods, ready shards, acknowledgements).
//! - [`decision`]: what one decision reads ([`decision::Inputs`]) and says
//!   ([`decision::Decision`], [`decision::Phase`]).
//! - [`decide`]: the next step: steady, retiring leftovers, the budget check, the start.
//! - [`steps`]: the steps of a hand-over under way, each acknowledged before the next.
//!
//! And their I/O in a reconcile pass:
//! - [`handover`]: the roles, acknowledgements, budget and time read from Redis, the fresh budget
//!   from Discord, the next roles document written by compare-and-set, Events and metrics.

pub mod decide;
pub mod decision;
pub mod handover;
pub mod steps;
pub mod total;
pub mod views;
