//! Consuming one owned partition: pull its consumer's events one at a time (the consumer lets
//! one be in flight), hand each to the handler with progress acks while it runs, then ack,
//! redeliver later (failure) or terminate (bad message, or too many failures). Stopping finishes
//! the event in hand, gives back any event delivered after it (nak: the next owner gets it at
//! once), and waits for the open pull to expire, so the next owner never waits for `ack_wait`.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::PullConsumer;
use futures_util::{FutureExt, StreamExt};
use shardset_contract::bus::Partition;
use tokio::sync::watch;
use tracing::{debug, error, warn};

use crate::commands::Commands;
use crate::event::{Event, parse_head};
use crate::handler::Handler;
use crate::metrics::Metrics;
use crate::stats::Stats;

/// Events requested per pull; the consumer still delivers one at a time.
const PULL_BATCH: usize = 64;
/// The longest delay before an event whose handler failed comes back.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// What one partition's loop needs.
pub(crate) struct PartitionRun<H> {
    pub partition: Partition,
    pub consumer: PullConsumer,
    pub client: async_nats::Client,
    pub handler: Arc<H>,
    pub commands: Commands,
    pub stats: Arc<Stats>,
    pub metrics: Metrics,
    pub max_attempts: u64,
    pub retry_delay: Duration,
    pub fetch_expires: Duration,
    /// How often a running handler's event is marked in progress (a third of `ack_wait`).
    pub progress_every: Duration,
}

impl<H: Handler> PartitionRun<H> {
    /// Consumes until `stop` turns true, then returns with nothing in flight.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        while !stopped(&stop) {
            let batch = self
                .consumer
                .batch()
                .max_messages(PULL_BATCH)
                .expires(self.fetch_expires)
                .messages()
                .await;
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    warn!(partition = %self.partition, error = %e, "pull failed; retrying");
                    pause(&mut stop, &mut backoff).await;
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            while let Some(item) = batch.next().await {
                let message = match item {
                    Ok(message) => message,
                    Err(e) => {
                        debug!(partition = %self.partition, error = %e, "pull ended");
                        break;
                    }
                };
                if stopped(&stop) {
                    // Delivered after we decided to stop: the next owner takes it now.
                    if let Err(e) = message.ack_with(AckKind::Nak(None)).await {
                        debug!(partition = %self.partition, error = %e, "nak failed");
                    }
                    continue;
                }
                self.handle(message).await;
            }
        }
        // Our acks reach the server before the lease is released.
        if let Err(e) = self.client.flush().await {
            debug!(partition = %self.partition, error = %e, "flush failed");
        }
    }

    /// One delivery: checked, handled, settled.
    async fn handle(&self, message: async_nats::jetstream::Message) {
        let (stream_seq, delivered) = match message.info() {
            Ok(info) => (info.stream_sequence, info.delivered.max(1) as u64),
            Err(_) => (0, 1),
        };
        self.metrics.delivered(self.partition, delivered);
        let headers = message.headers.as_ref();
        let head = parse_head(
            |name| headers.and_then(|h| h.get(name)).map(|v| v.as_str()),
            &message.payload,
        );
        let head = match head {
            Ok(head) => head,
            Err(bad) => {
                self.stats.bad();
                warn!(partition = %self.partition, stream_seq, reason = bad.label(), error = %bad,
                    "not an event of the bus protocol: terminated");
                settle(&message, AckKind::Term, self.partition).await;
                return;
            }
        };
        if delivered > 1 {
            self.stats.redelivered();
        }
        let event = Event {
            name: head.name,
            shard: head.shard,
            total: head.total,
            seq: head.seq,
            guild: head.guild,
            data: message.payload.clone(),
            partition: self.partition,
            stream_seq,
            delivered,
            commands: self.commands.with_total(head.total),
        };
        let outcome = self.call(event, &message).await;
        match outcome {
            Ok(()) => {
                settle(&message, AckKind::Ack, self.partition).await;
                self.stats.handled();
            }
            Err(reason) if delivered >= self.max_attempts => {
                self.stats.terminated();
                error!(partition = %self.partition, stream_seq, delivered, error = %reason,
                    "handler failed on every attempt: event terminated");
                settle(&message, AckKind::Term, self.partition).await;
            }
            Err(reason) => {
                self.stats.failed();
                let delay = retry_delay(self.retry_delay, delivered);
                warn!(partition = %self.partition, stream_seq, delivered, error = %reason,
                    ?delay, "handler failed: redelivering later");
                settle(&message, AckKind::Nak(Some(delay)), self.partition).await;
            }
        }
    }

    /// Runs the handler, marking the event in progress meanwhile; a panic is a failure.
    async fn call(
        &self,
        event: Event,
        message: &async_nats::jetstream::Message,
    ) -> Result<(), String> {
        let handling = AssertUnwindSafe(self.handler.handle(event)).catch_unwind();
        tokio::pin!(handling);
        let mut progress = tokio::time::interval(self.progress_every);
        progress.tick().await;
        loop {
            tokio::select! {
                outcome = &mut handling => return match outcome {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("the handler panicked".to_owned()),
                },
                _ = progress.tick() => {
                    if let Err(e) = message.ack_with(AckKind::Progress).await {
                        debug!(partition = %self.partition, error = %e, "progress ack failed");
                    }
                }
            }
        }
    }
}

/// Sends an ack of `kind`; a failure (connection lost) means a redelivery later.
async fn settle(message: &async_nats::jetstream::Message, kind: AckKind, partition: Partition) {
    if let Err(e) = message.ack_with(kind).await {
        warn!(%partition, error = %e, "ack not sent: the event will be redelivered");
    }
}

/// The delay before the next delivery after `delivered` failed ones: `base` doubled per
/// attempt, at most 30 s.
pub(crate) fn retry_delay(base: Duration, delivered: u64) -> Duration {
    let factor = 1u32 << delivered.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(MAX_RETRY_DELAY)
}

/// Told to stop, or the coordinator is gone.
fn stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Waits `backoff` (doubling it, up to 5 s) or until told to stop.
async fn pause(stop: &mut watch::Receiver<bool>, backoff: &mut Duration) {
    tokio::select! {
        _ = tokio::time::sleep(*backoff) => {}
        _ = stop.changed() => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_up_to_thirty_seconds() {
        let base = Duration::from_secs(1);
        assert_eq!(retry_delay(base, 1), Duration::from_secs(1));
        assert_eq!(retry_delay(base, 2), Duration::from_secs(2));
        assert_eq!(retry_delay(base, 4), Duration::from_secs(8));
        assert_eq!(retry_delay(base, 9), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(base, u64::MAX), MAX_RETRY_DELAY);
    }
}
