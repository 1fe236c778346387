//! The bus metrics a handler replica exports (README "Metrics and endpoints", the bot tier's
//! rows): under `shardset_bus_`, every series with the constant label `stream`, in a
//! prometheus-client [`Registry`] the service hands in (and serves at its own `/metrics`).
//! The chart's `ShardsetBusLag` alert and dashboard read these names:
//!
//! - `shardset_bus_consumer_lag_seconds{stream,partition}`: now minus the JetStream timestamp of
//!   the partition's oldest message not yet acknowledged by this group, 0 when none; exported
//!   by the replica owning the partition (the series goes when the partition does);
//! - `shardset_bus_consumer_pending_messages{stream,partition}`: the consumer's `num_pending +
//!   num_ack_pending`;
//! - `shardset_bus_redeliveries_total{stream,partition}`: deliveries whose count is above 1;
//! - `shardset_bus_partitions_owned{stream,group}`: partitions this replica consumes. Every
//!   live replica exports it (0 when it owns none), so the number of its series per stream and
//!   group is the number of handler replicas.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use shardset_contract::bus::Partition;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    partition: String,
}

impl PartitionLabels {
    fn of(partition: Partition) -> Self {
        Self {
            partition: partition.to_string(),
        }
    }
}

/// The replica's bus metrics (cheap to clone: shared handles).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    lag: Family<PartitionLabels, Gauge<f64, AtomicU64>>,
    pending: Family<PartitionLabels, Gauge>,
    redeliveries: Family<PartitionLabels, Counter>,
    partitions_owned: Gauge,
}

impl Metrics {
    /// The metrics of a replica of `group` consuming `stream`, registered in `registry` (a
    /// registry without a prefix of its own: the names are the contract's).
    pub fn register(registry: &mut Registry, stream: &str, group: &str) -> Self {
        let metrics = Self::default();
        let r = registry
            .sub_registry_with_prefix("shardset_bus")
            .sub_registry_with_label(("stream".into(), stream.to_owned().into()));
        r.register(
            "consumer_lag_seconds",
            "Now minus the JetStream timestamp of the partition's oldest message not yet acknowledged (0 when none)",
            metrics.lag.clone(),
        );
        r.register(
            "consumer_pending_messages",
            "Messages of the partition's consumer not yet acknowledged (num_pending + num_ack_pending)",
            metrics.pending.clone(),
        );
        r.register(
            "redeliveries",
            "Messages delivered again (not acknowledged in time, or refused)",
            metrics.redeliveries.clone(),
        );
        r.sub_registry_with_label(("group".into(), group.to_owned().into()))
            .register(
                "partitions_owned",
                "Partitions this handler replica consumes (one series per live replica)",
                metrics.partitions_owned.clone(),
            );
        metrics
    }

    /// A delivery whose count is `delivered` (1 for the first).
    pub(crate) fn delivered(&self, partition: Partition, delivered: u64) {
        if delivered > 1 {
            self.redeliveries
                .get_or_create(&PartitionLabels::of(partition))
                .inc();
        }
    }

    /// What the partition's consumer holds: `pending` messages not yet acknowledged, the oldest
    /// `lag_seconds` old.
    pub(crate) fn backlog(&self, partition: Partition, pending: i64, lag_seconds: f64) {
        let labels = PartitionLabels::of(partition);
        self.pending.get_or_create(&labels).set(pending);
        self.lag.get_or_create(&labels).set(lag_seconds);
    }

    /// The partition is no longer this replica's: its gauges go (the next owner exports them).
    pub(crate) fn forget(&self, partition: Partition) {
        let labels = PartitionLabels::of(partition);
        self.pending.remove(&labels);
        self.lag.remove(&labels);
    }

    pub(crate) fn owned(&self, partitions: usize) {
        self.partitions_owned
            .set(i64::try_from(partitions).unwrap_or(i64::MAX));
    }
}

/// The lag of a partition whose oldest unacknowledged message was stored at `oldest_ns` (Unix
/// nanoseconds), seen at `now_ns`: 0 when there is none, and never negative (the server's clock
/// may run ahead of ours).
pub(crate) fn lag_seconds(now_ns: i128, oldest_ns: Option<i128>) -> f64 {
    match oldest_ns {
        Some(oldest) if now_ns > oldest => (now_ns - oldest) as f64 / 1e9,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
        text
    }

    #[test]
    fn lag_is_the_age_of_the_oldest_unacked_message() {
        assert_eq!(lag_seconds(5_000_000_000, None), 0.0);
        assert_eq!(lag_seconds(5_000_000_000, Some(3_500_000_000)), 1.5);
        // A server clock ahead of ours is no negative lag.
        assert_eq!(lag_seconds(5_000_000_000, Some(6_000_000_000)), 0.0);
    }

    #[test]
    fn names_types_and_labels_are_the_contract() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry, "shardset-ns-bot", "default");
        metrics.backlog(Partition::Guild(3), 7, 2.5);
        metrics.backlog(Partition::Global, 0, 0.0);
        metrics.delivered(Partition::Guild(3), 1);
        metrics.delivered(Partition::Guild(3), 2);
        metrics.owned(2);
        let text = text(&registry);
        for line in [
            "# TYPE shardset_bus_consumer_lag_seconds gauge",
            r#"shardset_bus_consumer_lag_seconds{stream="shardset-ns-bot",partition="3"} 2.5"#,
            r#"shardset_bus_consumer_lag_seconds{stream="shardset-ns-bot",partition="global"} 0.0"#,
            "# TYPE shardset_bus_consumer_pending_messages gauge",
            r#"shardset_bus_consumer_pending_messages{stream="shardset-ns-bot",partition="3"} 7"#,
            "# TYPE shardset_bus_redeliveries counter",
            r#"shardset_bus_redeliveries_total{stream="shardset-ns-bot",partition="3"} 1"#,
            "# TYPE shardset_bus_partitions_owned gauge",
            r#"shardset_bus_partitions_owned{stream="shardset-ns-bot",group="default"} 2"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn a_partition_given_up_loses_its_gauges_not_its_counter() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry, "s", "default");
        metrics.backlog(Partition::Guild(1), 4, 1.0);
        metrics.delivered(Partition::Guild(1), 3);
        metrics.forget(Partition::Guild(1));
        let text = text(&registry);
        assert!(!text.contains(r#"consumer_lag_seconds{stream="s",partition="1"}"#));
        assert!(!text.contains(r#"consumer_pending_messages{stream="s",partition="1"}"#));
        assert!(text.contains(r#"shardset_bus_redeliveries_total{stream="s",partition="1"} 1"#));
    }
}
