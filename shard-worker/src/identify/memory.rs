//! An in-process Identify queue: one window per bucket, measured from each send. For unit tests
//! and single-process bots; many pods need [`super::gate::RedisQueue`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::time::Instant;

use super::queue::{BoxFuture, IdentifyQueue, Permit, PermitHandle, WaitReason, WaitReporter};

/// Buckets guarded by FIFO locks; each lock remembers the bucket's last send.
#[derive(Debug)]
pub struct MemoryQueue {
    buckets: Vec<Arc<Mutex<Option<Instant>>>>,
    window: Duration,
}

impl MemoryQueue {
    /// A queue of `max_concurrency` buckets, one Identify per bucket per `window`.
    pub fn new(max_concurrency: u32, window: Duration) -> Self {
        Self {
            buckets: (0..max_concurrency.max(1))
                .map(|_| Arc::new(Mutex::new(None)))
                .collect(),
            window,
        }
    }
}

struct MemoryPermit(OwnedMutexGuard<Option<Instant>>);

impl PermitHandle for MemoryPermit {
    fn sent(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        *self.0 = Some(Instant::now());
        Box::pin(async {})
    }

    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

impl IdentifyQueue for MemoryQueue {
    fn acquire<'a>(&'a self, shard: u32, waiting: WaitReporter<'a>) -> BoxFuture<'a, Permit> {
        let bucket = shard as usize % self.buckets.len();
        let lock = Arc::clone(&self.buckets[bucket]);
        let window = self.window;
        Box::pin(async move {
            waiting(WaitReason::Gate);
            let guard = lock.lock_owned().await;
            if let Some(last) = *guard {
                tokio::time::sleep_until(last + window).await;
            }
            // The lock is held until sent/release: no time bound.
            Permit::new(
                Box::new(MemoryPermit(guard)),
                Instant::now() + Duration::from_secs(86_400),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_identify_per_bucket_per_window_from_the_send() {
        let queue = Arc::new(MemoryQueue::new(2, Duration::from_secs(5)));
        let start = Instant::now();
        let mut sends = Vec::new();
        for shard in [0u32, 2, 4, 1, 3] {
            let permit = queue.acquire(shard, &|_| {}).await;
            // Sending takes a while after the permit: the window runs from the send.
            tokio::time::sleep(Duration::from_millis(100)).await;
            sends.push((shard % 2, Instant::now() - start));
            permit.sent().await;
        }
        let bucket0: Vec<_> = sends
            .iter()
            .filter(|(b, _)| *b == 0)
            .map(|(_, t)| *t)
            .collect();
        for pair in bucket0.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_secs(5), "{bucket0:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_permit_does_not_cost_a_window() {
        let queue = MemoryQueue::new(1, Duration::from_secs(5));
        let start = Instant::now();
        queue.acquire(0, &|_| {}).await.release().await;
        let permit = queue.acquire(0, &|_| {}).await;
        assert_eq!(Instant::now(), start);
        permit.sent().await;
    }
}
