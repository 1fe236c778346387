//! Before the first publish (`docs/bus-protocol.md`, "What the publisher must do", 1): the
//! stream exists with the protocol's metadata (created, or its limits updated, when the worker
//! manages it), the handlers' bucket exists, and so do the consumers of every group the worker
//! is told about, for all `P + 1` partitions: the stream keeps an event only for consumers that
//! exist when it is stored (interest retention).

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use futures_util::TryStreamExt;
use shardset_contract::bus::{self, Partition};
use shardset_handler::{setup as handler_setup, wire};
use tracing::info;

use crate::bus::settings::BusTarget;

/// The stream's size limits, when the worker creates or updates it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamLimits {
    pub max_bytes: Option<i64>,
    pub max_messages: Option<i64>,
    pub max_age: Option<Duration>,
    pub replicas: usize,
}

/// Why the bus is not ready for publishing.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Worth trying again: the bus is unreachable, or the stream not there yet (someone else
    /// manages it).
    #[error("{what}: {reason}")]
    NotYet { what: &'static str, reason: String },
    /// The stream exists but is not this bot's (another layout of subjects or partitions, or not
    /// a bus stream): publishing into it would break the protocol.
    #[error("{0}")]
    Mismatch(String),
}

impl SetupError {
    fn not_yet(what: &'static str, reason: impl std::fmt::Display) -> Self {
        Self::NotYet {
            what,
            reason: reason.to_string(),
        }
    }
}

/// What a prepared bus gives the publisher.
pub struct Prepared {
    /// The handlers' bucket (`<stream>-handlers`), if it exists.
    pub bucket: Option<kv::Store>,
}

/// The stream configuration the worker creates: the protocol's ([`wire::stream_config`]) with
/// `limits`.
pub fn stream_config(target: &BusTarget, limits: &StreamLimits) -> stream::Config {
    let mut config = wire::stream_config(
        &target.stream,
        &target.prefix,
        target.partitions,
        target.duplicate_window,
    );
    apply_limits(&mut config, target, limits);
    config
}

/// Writes `limits` and the duplicate window into `config`; returns whether anything changed.
/// Unset limits are the server's "unlimited" (`-1` for counts and bytes, zero age).
fn apply_limits(config: &mut stream::Config, target: &BusTarget, limits: &StreamLimits) -> bool {
    let wanted = (
        limits.max_bytes.unwrap_or(-1),
        limits.max_messages.unwrap_or(-1),
        limits.max_age.unwrap_or_default(),
        limits.replicas.max(1),
        target.duplicate_window,
    );
    let current = (
        config.max_bytes,
        config.max_messages,
        config.max_age,
        config.num_replicas,
        config.duplicate_window,
    );
    if current == wanted {
        return false;
    }
    (
        config.max_bytes,
        config.max_messages,
        config.max_age,
        config.num_replicas,
        config.duplicate_window,
    ) = wanted;
    true
}

/// Prepares the bus of `target`; `manage`: create what is missing and update the limits.
pub async fn prepare(
    js: &jetstream::Context,
    target: &BusTarget,
    limits: &StreamLimits,
    manage: bool,
) -> Result<Prepared, SetupError> {
    let mut stream = match js.get_stream(&target.stream).await {
        Ok(stream) => stream,
        Err(e) if manage && stream_missing(&e) => {
            match js.create_stream(stream_config(target, limits)).await {
                Ok(stream) => {
                    info!(stream = %target.stream, "created the bus stream");
                    stream
                }
                // Another worker created it at the same moment (with another configuration
                // only if the settings differ: the metadata check below tells).
                Err(created) => js
                    .get_stream(&target.stream)
                    .await
                    .map_err(|_| SetupError::not_yet("creating the stream", created))?,
            }
        }
        Err(e) => return Err(SetupError::not_yet("reading the stream", e)),
    };
    let info = stream
        .info()
        .await
        .map_err(|e| SetupError::not_yet("reading the stream", e))?;
    let layout = handler_setup::layout_of(&target.stream, &info.config.metadata)
        .map_err(|e| SetupError::Mismatch(e.to_string()))?;
    if layout.prefix != target.prefix || layout.partitions != target.partitions {
        return Err(SetupError::Mismatch(format!(
            "stream {} is for subjects {}.events.> in {} partitions, not {}.events.> in {}: a changed partition count would move guilds between partitions",
            target.stream, layout.prefix, layout.partitions, target.prefix, target.partitions
        )));
    }
    if !manage {
        let bucket = js.get_key_value(bus::handlers_bucket(&target.stream)).await;
        return Ok(Prepared {
            bucket: bucket.ok(),
        });
    }
    let mut config = info.config.clone();
    if apply_limits(&mut config, target, limits) {
        js.update_stream(config)
            .await
            .map_err(|e| SetupError::not_yet("updating the stream's limits", e))?;
        info!(stream = %target.stream, "updated the bus stream's limits");
    }
    let (bucket, ttl) = handler_setup::ownership_bucket(js, &target.stream, target.lease_ttl)
        .await
        .map_err(|e| SetupError::not_yet("the handlers' bucket", e))?;
    let existing: HashSet<String> = stream
        .consumer_names()
        .try_collect()
        .await
        .map_err(|e| SetupError::not_yet("listing the consumers", e))?;
    let mut created = 0;
    for group in &target.groups {
        for partition in Partition::all(target.partitions) {
            let name = bus::consumer_name(&target.stream, group, partition);
            if existing.contains(&name) {
                continue;
            }
            let config =
                wire::consumer_config(&target.stream, &target.prefix, group, partition, ttl);
            stream
                .get_or_create_consumer(&name, config)
                .await
                .map_err(|e| SetupError::not_yet("creating a consumer", e))?;
            created += 1;
        }
    }
    if created > 0 {
        info!(stream = %target.stream, created, groups = ?target.groups, "created the handler groups' consumers");
    }
    Ok(Prepared {
        bucket: Some(bucket),
    })
}

/// Whether `e` says the stream does not exist (JetStream error 10059).
fn stream_missing(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(js)
            if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> BusTarget {
        BusTarget {
            nats_url: "nats://n".into(),
            stream: "st".into(),
            prefix: "S".into(),
            partitions: 4,
            groups: vec!["default".into()],
            lease_ttl: Duration::from_secs(10),
            duplicate_window: Duration::from_secs(120),
        }
    }

    #[test]
    fn the_protocols_stream_with_the_limits() {
        let limits = StreamLimits {
            max_bytes: Some(1 << 30),
            max_messages: None,
            max_age: Some(Duration::from_secs(3_600)),
            replicas: 3,
        };
        let config = stream_config(&target(), &limits);
        assert_eq!(config.subjects, ["S.events.>"]);
        assert_eq!(
            config.retention,
            jetstream::stream::RetentionPolicy::Interest
        );
        assert_eq!(config.discard, jetstream::stream::DiscardPolicy::New);
        assert_eq!(
            (config.max_bytes, config.max_messages, config.num_replicas),
            (1 << 30, -1, 3)
        );
        assert_eq!(config.metadata["shardset.io/partitions"], "4");
        let mut same = config.clone();
        assert!(
            !apply_limits(&mut same, &target(), &limits),
            "nothing to update"
        );
        let fewer = StreamLimits {
            max_bytes: Some(1 << 20),
            ..limits
        };
        assert!(apply_limits(&mut same, &target(), &fewer));
        assert_eq!(same.max_bytes, 1 << 20);
    }
}
