//! Resharding as a worker sees it: the hand-over between two layouts (`docs/resharding.md`).
//!
//! The operator gives each layout a role in `P:active-layout`; during a hand-over both layouts
//! receive the same events, and exactly one acts on each.
//!
//! - [`roles`]: the pure decision per event (act, skip, or claim first) and the back-fill.
//! - [`acting`]: the role applied from Redis ([`acting::watch`]), the claims, the
//!   acknowledgements; [`acting::Acting::act`] is what a handler asks before acting.
//! - [`records`]: the roles document and the event claims in Redis.
//! - [`pace`]: whether a shard keeps up (READY, handling in time) and its lapses, which its
//!   status record reports so the operator restarts a hand-over's `W` countdown.

pub mod acting;
pub mod pace;
pub mod records;
pub mod roles;

pub use acting::{Acting, HandoverConfig};
