//! Watching one owned partition's backlog for the metrics: every `every`, the consumer's info
//! (`num_pending + num_ack_pending`) and, when something waits, the stored time of its oldest
//! message not yet acknowledged (the first message of the partition's subject after the
//! consumer's ack floor). Runs beside the partition's loop while the replica owns it; its
//! gauges go when it stops.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::stream::Stream;
use shardset_contract::bus::Partition;
use tokio::sync::watch;
use tracing::debug;

use crate::metrics::{Metrics, lag_seconds};

/// One partition's backlog watch.
pub(crate) struct Backlog {
    pub partition: Partition,
    pub stream: Stream,
    /// The group's consumer of the partition.
    pub consumer: String,
    /// The partition's subject (the consumer's filter).
    pub subject: String,
    pub metrics: Metrics,
    pub every: Duration,
}

impl Backlog {
    /// Samples until `stop` turns true, then removes the partition's gauges.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            self.sample().await;
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {}
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { break },
            }
            if *stop.borrow() {
                break;
            }
        }
        self.metrics.forget(self.partition);
    }

    /// One sample; a failed request (the bus away) leaves the last values.
    async fn sample(&self) {
        let info = match self.stream.consumer_info(&self.consumer).await {
            Ok(info) => info,
            Err(e) => {
                debug!(partition = %self.partition, error = %e, "consumer info failed");
                return;
            }
        };
        let pending = info.num_pending.saturating_add(info.num_ack_pending as u64);
        let oldest = if pending == 0 {
            None
        } else {
            let first_unacked = self
                .stream
                .raw_message_builder()
                .sequence(info.ack_floor.stream_sequence.saturating_add(1))
                .next_by_subject(self.subject.clone())
                .send()
                .await;
            match first_unacked {
                Ok(message) => Some(message.time.unix_timestamp_nanos()),
                // Acknowledged (and removed) since the consumer info: nothing older waits.
                Err(e) => {
                    debug!(partition = %self.partition, error = %e, "oldest message not read");
                    None
                }
            }
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        self.metrics.backlog(
            self.partition,
            i64::try_from(pending).unwrap_or(i64::MAX),
            lag_seconds(now, oldest),
        );
    }
}
