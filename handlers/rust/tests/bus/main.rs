//! The handler library against a real nats-server (docs/bus-protocol.md): events published as
//! the worker publishes them reach exactly one replica per partition, in order; replicas scale
//! and fail over; duplicates and bad messages are dealt with; commands reach the worker.

mod commands;
mod delivery;
mod metrics;
mod ownership;
mod support;
