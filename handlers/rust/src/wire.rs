//! The JetStream objects of the protocol as `async-nats` configurations (`docs/bus-protocol.md`,
//! "Stream" and "Consumers"): what the publishing side creates, and what a handler creates when
//! its group's consumer is missing. Public so that publishers and tests build the same thing.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, ReplayPolicy, pull};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use shardset_contract::bus::{self, Partition, metadata};

/// The bot's stream: subjects `S.events.>`, interest retention (an event stays until every
/// group's consumer of its partition acknowledged it), discard new when full (the publisher
/// sees the bus full and stops reading the gateway), file storage, the duplicate window, and
/// the metadata handlers read (protocol version, subject prefix, partition count).
pub fn stream_config(
    name: &str,
    prefix: &str,
    partitions: u32,
    duplicate_window: Duration,
) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![bus::events_filter(prefix)],
        retention: RetentionPolicy::Interest,
        discard: DiscardPolicy::New,
        storage: StorageType::File,
        duplicate_window,
        metadata: HashMap::from([
            (
                metadata::PROTOCOL.to_owned(),
                bus::PROTOCOL_VERSION.to_string(),
            ),
            (metadata::SUBJECT_PREFIX.to_owned(), prefix.to_owned()),
            (metadata::PARTITIONS.to_owned(), partitions.to_string()),
        ]),
        ..Default::default()
    }
}

/// A group's durable pull consumer of one partition: explicit acks, from the first event, at
/// most one event in flight (so the partition's order holds across redeliveries and owners),
/// `ack_wait` = the lease TTL (a dead owner's event comes back within it), unlimited deliveries
/// (the handler library terminates an event that keeps failing).
pub fn consumer_config(
    stream: &str,
    prefix: &str,
    group: &str,
    partition: Partition,
    ack_wait: Duration,
) -> pull::Config {
    pull::Config {
        durable_name: Some(bus::consumer_name(stream, group, partition)),
        filter_subject: bus::event_subject(prefix, partition),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait,
        max_ack_pending: bus::CONSUMER_MAX_ACK_PENDING,
        max_deliver: -1,
        replay_policy: ReplayPolicy::Instant,
        ..Default::default()
    }
}
