//! Commands back (`docs/bus-protocol.md`, "Commands back"): a handler's core NATS request on
//! `S.commands.<total>.<shard>`, answered by the worker holding that shard's live session in the
//! acting layout.
//!
//! - [`request`]: the request read into a gateway command, and the reply written (pure).
//! - [`responder`]: the subscriptions that follow the shards' liveness and the layout's role, and
//!   the answering of each request through the worker's [`crate::command::Commands`].

pub mod request;
pub mod responder;

pub use responder::Responder;
