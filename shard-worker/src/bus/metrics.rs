//! The publisher's Prometheus metrics, under `shardset_bus_` with the stream as a constant
//! `stream` label (the name the chart's dashboard reads: `shardset_bus_publish_duration_seconds`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Every metric of the publisher (cheap to clone: shared handles).
#[derive(Debug, Clone)]
pub struct BusMetrics {
    /// From a publish to the stream's acknowledgement (successful attempts).
    pub publish_duration: Histogram,
    /// Messages acknowledged, by `result`: `stored`, `duplicate` (the stream had its id).
    pub published: Family<ResultLabels, Counter>,
    /// Dispatches not published, by `reason`: `not_acting` (standby or retired layout),
    /// `claim_lost` (the other layout claimed it).
    pub withheld: Family<ReasonLabels, Counter>,
    /// Failed publish attempts, by `reason` (`timed_out`, `no_stream`, `full`, `disconnected`,
    /// `too_large`, `other`).
    pub publish_errors: Family<ReasonLabels, Counter>,
    /// Publishes attempted again after a failure.
    pub publish_retries: Counter,
    /// Dispatches dropped because no retry can store them (`too_large`).
    pub dropped: Family<ReasonLabels, Counter>,
    /// Dispatches taken and not yet settled (acknowledged, withheld or dropped).
    pub in_flight: Gauge,
    /// Their payload bytes.
    pub in_flight_bytes: Gauge,
    /// Shards not reading the gateway because the bus has no room for them.
    pub paused_shards: Gauge,
    /// 1 while the bus accepts publishes, 0 from a failure until the next acknowledgement.
    pub accepting: Gauge,
    /// Commands back answered, by `result`: `ok` or the reply's error kind (`rate_limited`,
    /// `refused`, `invalid`, `not_connected`, `timed_out`, `too_large`), and `no_reply` for a
    /// request without a reply subject (dropped).
    pub commands: Family<ResultLabels, Counter>,
    /// Shards taking commands back now (live, in an acting layout).
    pub command_shards: Gauge,
}

impl BusMetrics {
    /// The metrics of stream `stream`, registered in `registry`.
    pub fn new(registry: &mut Registry, stream: &str) -> Self {
        let metrics = Self {
            publish_duration: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            published: Family::default(),
            withheld: Family::default(),
            publish_errors: Family::default(),
            publish_retries: Counter::default(),
            dropped: Family::default(),
            in_flight: Gauge::default(),
            in_flight_bytes: Gauge::default(),
            paused_shards: Gauge::default(),
            accepting: Gauge::default(),
            commands: Family::default(),
            command_shards: Gauge::default(),
        };
        metrics.accepting.set(1);
        let r = registry
            .sub_registry_with_prefix("shardset_bus")
            .sub_registry_with_label(("stream".into(), stream.to_owned().into()));
        r.register(
            "publish_duration_seconds",
            "From a publish to JetStream's acknowledgement",
            metrics.publish_duration.clone(),
        );
        r.register(
            "published",
            "Dispatches the stream acknowledged, by result (stored, duplicate)",
            metrics.published.clone(),
        );
        r.register(
            "withheld",
            "Dispatches not published by this layout, by reason (not_acting, claim_lost)",
            metrics.withheld.clone(),
        );
        r.register(
            "publish_errors",
            "Failed publish attempts, by reason",
            metrics.publish_errors.clone(),
        );
        r.register(
            "publish_retries",
            "Publishes attempted again after a failure",
            metrics.publish_retries.clone(),
        );
        r.register(
            "dropped",
            "Dispatches no retry can publish, by reason (too_large)",
            metrics.dropped.clone(),
        );
        r.register(
            "in_flight",
            "Dispatches taken from the gateway and not yet settled",
            metrics.in_flight.clone(),
        );
        r.register(
            "in_flight_bytes",
            "Payload bytes of the dispatches in flight",
            metrics.in_flight_bytes.clone(),
        );
        r.register(
            "paused_shards",
            "Shards not reading the gateway because the bus has no room for them",
            metrics.paused_shards.clone(),
        );
        r.register(
            "accepting",
            "1 while the bus accepts publishes, 0 from a failure until the next acknowledgement",
            metrics.accepting.clone(),
        );
        r.register(
            "commands",
            "Commands back answered, by result (ok, rate_limited, refused, invalid, not_connected, timed_out, too_large, no_reply)",
            metrics.commands.clone(),
        );
        r.register(
            "command_shards",
            "Shards taking commands back now (live, in an acting layout)",
            metrics.command_shards.clone(),
        );
        metrics
    }

    /// Metrics registered nowhere (tests, benchmarks).
    pub fn unregistered() -> Self {
        Self::new(&mut Registry::default(), "unregistered")
    }
}
