//! Gate hand-offs without polling: one pub/sub subscription per process to the bot's gate
//! channel (`P:gate-events`), and the local waiters of each bucket woken when its gate frees
//! early.
//!
//! `release_gate.lua` publishes `<bucket> 0` when it deletes a gate whose Identify was never
//! sent (`docs/redis-protocol.md`, "Waiting"). Without it the bucket's waiters sleep out the
//! PTTL they last saw, up to a whole hold, while the gate is free. A message only makes waiters
//! **ask again sooner** (never later than their own timer): the Lua scripts stay the only judge,
//! so a lost, late or forged message costs at most the old PTTL sleep or one early question,
//! never an Identify. (A sent gate is not announced: its PTTL is exact once confirmed, and
//! re-arming every waiter to a message's arrival measured later than the PTTL timers, by the
//! delivery through busy processes: README "Performance", `make bench-gate`.)

use shardset_contract::redis_link::RedisEndpoint;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

/// A gate event as published by the scripts: `<bucket> <ms until the gate frees>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateFreed {
    pub bucket: u32,
    pub after: Duration,
}

impl GateFreed {
    /// Parses a message; anything else (another writer, garbage) is `None` and ignored.
    pub fn parse(payload: &str) -> Option<Self> {
        let (bucket, ms) = payload.trim().split_once(' ')?;
        Some(Self {
            bucket: bucket.parse().ok()?,
            after: Duration::from_millis(ms.parse().ok()?),
        })
    }
}

/// When the gate of each bucket frees, as this process last heard (one watch per bucket).
pub struct GateWakeups {
    buckets: Vec<watch::Sender<Option<Instant>>>,
    listener: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for GateWakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateWakeups")
            .field("buckets", &self.buckets.len())
            .finish_non_exhaustive()
    }
}

/// What a waiter re-arms its timer from: a receiver of its bucket's watch, taken **before** it
/// asks Redis so that an event published between the answer and the sleep is not missed.
pub struct Subscription(Option<watch::Receiver<Option<Instant>>>);

impl Subscription {
    /// No wake-ups (a queue without a listener): the waiter sleeps until its deadline.
    pub fn none() -> Self {
        Self(None)
    }

    /// Sleeps until `deadline`, or, when the bucket's gate is heard to free at `t`, until
    /// `t + after_free` if that is sooner (a message never delays a waiter).
    pub async fn sleep(&mut self, mut deadline: Instant, after_free: Duration) {
        let Some(rx) = self.0.as_mut() else {
            tokio::time::sleep_until(deadline).await;
            return;
        };
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                changed = rx.changed() => {
                    if changed.is_err() {
                        // The listener is gone: the timer alone.
                        tokio::time::sleep_until(deadline).await;
                        return;
                    }
                    if let Some(freed_at) = *rx.borrow_and_update() {
                        deadline = deadline.min(freed_at + after_free);
                    }
                }
            }
        }
    }
}

impl GateWakeups {
    /// Wake-ups for `max_concurrency` buckets, fed by nothing yet (tests feed [`Self::heard`]).
    pub fn new(max_concurrency: u32) -> Self {
        Self {
            buckets: (0..max_concurrency.max(1))
                .map(|_| watch::channel(None).0)
                .collect(),
            listener: None,
        }
    }

    /// Wake-ups fed by a subscription to `channel` on `endpoint`'s primary, kept (subscribing again,
    /// to the primary found then, with backoff) until the returned value is dropped. Needs a
    /// Tokio runtime.
    pub fn listen(endpoint: RedisEndpoint, channel: String, max_concurrency: u32) -> Self {
        let mut wakeups = Self::new(max_concurrency);
        let senders = wakeups.buckets.clone();
        wakeups.listener = Some(tokio::spawn(listen(endpoint, channel, senders)));
        wakeups
    }

    /// A subscription for a waiter of `bucket` (see [`Subscription`]).
    pub fn subscribe(&self, bucket: u32) -> Subscription {
        Subscription(
            self.buckets
                .get(bucket as usize)
                .map(watch::Sender::subscribe),
        )
    }

    /// Records an event heard now.
    pub fn heard(&self, event: GateFreed) {
        heard(&self.buckets, event, Instant::now());
    }
}

impl Drop for GateWakeups {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.take() {
            listener.abort();
        }
    }
}

/// Wakes the waiters of the event's bucket to `now + after` (a bucket of another map, beyond
/// ours, is ignored).
fn heard(buckets: &[watch::Sender<Option<Instant>>], event: GateFreed, now: Instant) {
    if let Some(bucket) = buckets.get(event.bucket as usize) {
        bucket.send_replace(Some(now + event.after));
    }
}

/// The subscriber: subscribe, forward every event, and on any error subscribe again after a
/// backoff (250 ms more per failure, at most 5 s). Waiters keep their timers meanwhile.
async fn listen(
    endpoint: RedisEndpoint,
    channel: String,
    buckets: Vec<watch::Sender<Option<Instant>>>,
) {
    let mut failures = 0u32;
    loop {
        let pubsub = match endpoint.client().await {
            Ok(client) => client.get_async_pubsub().await,
            Err(e) => Err(e),
        };
        match pubsub {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    failures = 0;
                    debug!(%channel, "listening for Identify gate hand-offs");
                    let mut messages = pubsub.into_on_message();
                    while let Some(message) = messages.next().await {
                        let payload: String = message.get_payload().unwrap_or_default();
                        if let Some(event) = GateFreed::parse(&payload) {
                            heard(&buckets, event, Instant::now());
                        }
                    }
                    debug!(%channel, "the gate hand-off subscription ended; subscribing again");
                }
                Err(e) => warn_once(&mut failures, &e),
            },
            Err(e) => warn_once(&mut failures, &e),
        }
        failures = failures.saturating_add(1);
        tokio::time::sleep(Duration::from_millis(250 * u64::from(failures.min(20)))).await;
    }
}

fn warn_once(failures: &mut u32, error: &redis::RedisError) {
    if *failures == 0 {
        warn!(%error, "cannot subscribe to Identify gate hand-offs; waiters poll the gate meanwhile");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_scripts_messages_and_nothing_else() {
        assert_eq!(
            GateFreed::parse("3 1100"),
            Some(GateFreed {
                bucket: 3,
                after: Duration::from_millis(1100)
            })
        );
        assert_eq!(
            GateFreed::parse("0 0"),
            Some(GateFreed {
                bucket: 0,
                after: Duration::ZERO
            })
        );
        for bad in ["", "3", "x 1", "3 -1", "3 1 2", "-1 5"] {
            assert_eq!(GateFreed::parse(bad), None, "{bad:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_is_woken_when_its_gate_frees_and_never_later() {
        let wakeups = GateWakeups::new(2);
        let start = Instant::now();
        // Asleep for a long PTTL: told its gate frees in 300 ms.
        let mut sub = wakeups.subscribe(1);
        let waiter = tokio::spawn(async move {
            sub.sleep(start + Duration::from_secs(10), Duration::from_millis(5))
                .await;
            Instant::now() - start
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Another bucket's event does not wake it.
        wakeups.heard(GateFreed {
            bucket: 0,
            after: Duration::ZERO,
        });
        wakeups.heard(GateFreed {
            bucket: 1,
            after: Duration::from_millis(300),
        });
        assert_eq!(
            waiter.await.expect("waiter"),
            Duration::from_millis(405),
            "woken 5 ms after the gate frees"
        );
        // A message naming a later time than the waiter's own timer does not delay it.
        let mut sub = wakeups.subscribe(1);
        let start = Instant::now();
        let waiter = tokio::spawn(async move {
            sub.sleep(start + Duration::from_millis(200), Duration::ZERO)
                .await;
            Instant::now() - start
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        wakeups.heard(GateFreed {
            bucket: 1,
            after: Duration::from_secs(5),
        });
        assert_eq!(waiter.await.expect("waiter"), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_between_the_answer_and_the_sleep_is_not_missed() {
        let wakeups = GateWakeups::new(1);
        let start = Instant::now();
        let mut sub = wakeups.subscribe(0);
        // Heard after the subscription (taken before asking Redis), before the sleep.
        wakeups.heard(GateFreed {
            bucket: 0,
            after: Duration::ZERO,
        });
        sub.sleep(start + Duration::from_secs(1), Duration::ZERO)
            .await;
        assert_eq!(Instant::now() - start, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn without_events_the_timer_alone() {
        let start = Instant::now();
        Subscription::none()
            .sleep(start + Duration::from_millis(700), Duration::ZERO)
            .await;
        let mut sub = GateWakeups::new(1).subscribe(5);
        sub.sleep(start + Duration::from_millis(900), Duration::ZERO)
            .await;
        assert_eq!(Instant::now() - start, Duration::from_millis(900));
    }
}
