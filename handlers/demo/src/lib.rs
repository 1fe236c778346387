//! The demo handler service of the bot tier (`make demo`'s `demo-handler` Deployment): a replica
//! of the `default` handler group that answers every MESSAGE_CREATE written by a user with a REST
//! reply, idempotently (Discord's `nonce` + `enforce_nonce`), and counts what the e2e tests check:
//! replies, redeliveries, and per-guild reorderings.
//!
//! [`reply`] decides and sends the reply; [`order`] tracks each guild's message order;
//! [`metrics`] serves `/healthz` and `/metrics`.

pub mod metrics;
pub mod order;
pub mod reply;
