//! Why a replica could not start. `label` gives fixed metric labels.

use crate::config::ConfigError;

/// A replica could not start (or a JetStream call it needs failed).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("stream {stream} is not a shardset bus stream: {reason}")]
    NotABusStream {
        stream: String,
        reason: &'static str,
    },
    #[error("JetStream {what} failed: {reason}")]
    JetStream { what: &'static str, reason: String },
}

impl Error {
    /// A fixed, low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Connect { .. } => "connect",
            Self::NotABusStream { .. } => "not_a_bus_stream",
            Self::JetStream { .. } => "jetstream",
        }
    }

    pub(crate) fn jetstream(what: &'static str, error: impl std::fmt::Display) -> Self {
        Self::JetStream {
            what,
            reason: error.to_string(),
        }
    }
}
