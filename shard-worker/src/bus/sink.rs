//! What a bus backend does, and nothing more: store one message and say whether it did. Order
//! per guild, the layouts' roles, retries, the bound on what is in flight and settling are the
//! [`super::publisher`]'s, the same for every backend. NATS JetStream is the one built
//! ([`super::jetstream`]); a second one (e.g. Redis Streams) implements [`Sink`] and reuses the
//! rest.

use std::future::Future;

use bytes::Bytes;

/// One event as the bus stores it (`docs/bus-protocol.md`, "Message").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `S.events.<p>` or `S.events.global`.
    pub subject: String,
    /// `Shardset-*` headers, in the protocol's order.
    pub headers: Vec<(&'static str, String)>,
    /// The de-duplication id (`Nats-Msg-Id`): `s:<session>:<seq>` or `c:<32 hex>`.
    pub id: String,
    /// The dispatch's raw `d`.
    pub payload: Bytes,
}

/// The bus took a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// It had the message already (same id within the duplicate window): a replay, a retry
    /// after a lost acknowledgement, or the other layout's copy.
    pub duplicate: bool,
}

/// A message was not (known to be) stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct PublishError {
    /// A fixed metric label: `timed_out`, `no_stream`, `full`, `disconnected`, `too_large`,
    /// `other`.
    pub reason: &'static str,
    /// Retrying cannot help (the message is larger than the bus takes): it is dropped and
    /// reported. Anything else is retried with the same id.
    pub permanent: bool,
    pub detail: String,
}

impl PublishError {
    /// An error worth retrying.
    pub fn retry(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            permanent: false,
            detail: detail.into(),
        }
    }
}

/// A bus the worker publishes to.
pub trait Sink: Send + Sync + 'static {
    /// Stores `message` and waits for the bus's acknowledgement. Calls may overlap (the
    /// publisher pipelines messages of different guilds); it never starts one before the
    /// previous one of the same guild returned `Ok`. An `Err` may still have stored it (the
    /// acknowledgement was lost): the retry carries the same id.
    fn publish(
        &self,
        message: &Message,
    ) -> impl Future<Output = Result<Stored, PublishError>> + Send;

    /// Whether a publish can work now (the connection is up). While not, the publisher waits
    /// instead of queueing attempts behind a dead connection.
    fn connected(&self) -> bool {
        true
    }
}
