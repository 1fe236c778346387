//! Forwards dispatches to an in-pod HTTP endpoint (`FORWARD_URL`), in order, with backpressure:
//! a bounded queue in front of one sender task. When the endpoint falls behind, the queue fills
//! and the shards wait for room (so they read the gateway more slowly) instead of growing memory.
//!
//! A dispatch counts as settled only once the endpoint answered it (or it was dropped after its
//! attempts): [`Forwarder::settled`] tells checkpoints how far a shard may be saved, so a pod that
//! dies with dispatches still queued resumes from before them and the endpoint gets them all.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

/// Dispatches waiting to be sent.
const QUEUE: usize = 1024;
/// Attempts per dispatch before it is dropped (counted, logged).
const ATTEMPTS: u32 = 5;

/// One queued dispatch.
struct Item {
    shard: u32,
    seq: u64,
    body: Vec<u8>,
}

/// Seqs queued but not yet answered, per shard, in order.
type Pending = Arc<Mutex<HashMap<u32, VecDeque<u64>>>>;

/// The sending half and its task; clone-free, shared by the handler.
#[derive(Debug)]
pub struct Forwarder {
    tx: mpsc::Sender<Item>,
    pending: Pending,
    /// Ends once `tx` is dropped and the queue is drained: the number of dispatches dropped.
    task: JoinHandle<u64>,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("shard", &self.shard)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// Starts the sender task posting JSON bodies to `url` (call it inside the runtime); at
    /// shutdown, [`Forwarder::close`] drains the queue.
    pub fn spawn(url: String) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let pending = Pending::default();
        let task = tokio::spawn(send_all(url, rx, Arc::clone(&pending)));
        Self { tx, pending, task }
    }

    /// Stops taking dispatches and waits up to `wait` for the queue to drain. `Some(dropped)`:
    /// drained, with the dispatches dropped after their attempts; `None`: not in time.
    pub async fn close(self, wait: Duration) -> Option<u64> {
        let Self { tx, task, .. } = self;
        drop(tx);
        match tokio::time::timeout(wait, task).await {
            Ok(Ok(dropped)) => Some(dropped),
            _ => None,
        }
    }

    /// Queues the body of dispatch `seq` of `shard`, waiting while the queue is full
    /// (backpressure).
    pub async fn forward(&self, shard: u32, seq: u64, body: Vec<u8>) {
        lock(&self.pending).entry(shard).or_default().push_back(seq);
        // An error means the task is gone (shutdown): nothing left to do.
        if self.tx.send(Item { shard, seq, body }).await.is_err() {
            settle(&self.pending, shard, seq);
        }
    }

    /// The seq up to which `shard`'s dispatches reached the endpoint, given that the handler
    /// finished up to `handled`: just before the oldest one still queued or in flight.
    pub fn settled(&self, shard: u32, handled: u64) -> u64 {
        match lock(&self.pending).get(&shard).and_then(|q| q.front()) {
            Some(&oldest) => handled.min(oldest.saturating_sub(1)),
            None => handled,
        }
    }
}

fn lock(pending: &Pending) -> std::sync::MutexGuard<'_, HashMap<u32, VecDeque<u64>>> {
    pending
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `seq` of `shard` left the queue (answered or dropped).
fn settle(pending: &Pending, shard: u32, seq: u64) {
    let mut pending = lock(pending);
    if let Some(queue) = pending.get_mut(&shard) {
        queue.retain(|&s| s != seq);
        if queue.is_empty() {
            pending.remove(&shard);
        }
    }
}

/// Posts every body in order; returns how many were dropped after failed attempts.
async fn send_all(url: String, mut rx: mpsc::Receiver<Item>, pending: Pending) -> u64 {
    shardset_contract::rest::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut dropped = 0;
    while let Some(Item { shard, seq, body }) = rx.recv().await {
        let mut delay = Duration::from_millis(50);
        let mut sent = false;
        for _ in 0..ATTEMPTS {
            let result = http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            match result {
                Ok(r) if r.status().is_success() => {
                    sent = true;
                    break;
                }
                Ok(r) => warn!(
                    status = r.status().as_u16(),
                    "forward endpoint refused a dispatch"
                ),
                Err(e) => warn!(error = %e.without_url(), "forward endpoint unreachable"),
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        if !sent {
            dropped += 1;
        }
        settle(&pending, shard, seq);
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_answered_dispatches_are_settled() {
        // Nothing listens there: every post fails (after its attempts) and nothing is answered
        // while the first is being tried.
        let forwarder = Forwarder::spawn("http://127.0.0.1:9/none".into());
        assert_eq!(forwarder.settled(0, 10), 10, "nothing queued: all handled");
        forwarder.forward(0, 11, b"{}".to_vec()).await;
        forwarder.forward(0, 12, b"{}".to_vec()).await;
        forwarder.forward(1, 5, b"{}".to_vec()).await;
        assert_eq!(forwarder.settled(0, 12), 10, "before the oldest in flight");
        assert_eq!(forwarder.settled(1, 5), 4);
        assert_eq!(forwarder.settled(2, 7), 7, "another shard is not held back");
        assert_eq!(
            forwarder.close(Duration::from_secs(60)).await,
            Some(3),
            "dropped after their attempts"
        );
    }
}
