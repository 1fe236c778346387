//! Forwards dispatches to an in-pod HTTP endpoint (`FORWARD_URL`), in order, with backpressure:
//! a bounded queue in front of one sender task. When the endpoint falls behind, the queue fills
//! and the shards wait for room (so they read the gateway more slowly) instead of growing memory.
//!
//! Nothing is dropped silently. A dispatch the endpoint does not take (an error, a non-2xx answer)
//! is tried again with backoff ([`FIRST_RETRY`] doubling to [`LONGEST_RETRY`]), for as long as it
//! takes, and the ones behind it wait (order is kept); every retry is counted
//! (`shardset_worker_forward_retries_total`). A dispatch counts as settled only once the endpoint
//! answered it: [`Forwarder::settled`] tells checkpoints how far a shard's current session may be
//! saved (what is queued is kept by session and seq: `pending.rs`), so a pod that dies with
//! dispatches still queued resumes from before them and the endpoint gets them all.
//! Only shutdown ends the retries: a dispatch that then fails, and every one behind it, is left
//! unsettled (the final save stops before it, so the next owner replays it) and the queue is
//! emptied without sending, so that no shard stays blocked on it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::warn;

use super::pending::{Pending as Queued, Ticket};

/// Dispatches waiting to be sent.
const QUEUE: usize = 1024;
/// The wait before the first retry of a dispatch.
pub const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The longest wait between two tries of one dispatch.
pub const LONGEST_RETRY: Duration = Duration::from_secs(5);

/// One queued dispatch.
struct Item {
    ticket: Ticket,
    body: Vec<u8>,
}

/// Dispatches queued but not yet answered, per shard and session.
type Pending = Arc<Mutex<Queued>>;

/// The sending half and its task; clone-free, shared by the handler.
#[derive(Debug)]
pub struct Forwarder {
    tx: mpsc::Sender<Item>,
    pending: Pending,
    /// Tries after a failed one.
    retries: Counter,
    /// Ends once `tx` is dropped and the queue is drained: the number of dispatches not delivered
    /// (given up at shutdown).
    task: JoinHandle<u64>,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// Starts the sender task posting JSON bodies to `url` (call it inside the runtime). It
    /// retries each dispatch until `shutdown` turns true; [`Forwarder::close`] then drains the
    /// queue.
    pub fn spawn(url: String, shutdown: watch::Receiver<bool>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let pending = Pending::default();
        let retries = Counter::default();
        let sender = Sender {
            url,
            pending: Arc::clone(&pending),
            retries: retries.clone(),
            shutdown,
        };
        let task = tokio::spawn(sender.send_all(rx));
        Self {
            tx,
            pending,
            retries,
            task,
        }
    }

    /// Registers the forwarder's metrics (`shardset_worker_forward_retries_total`).
    pub fn register(&self, registry: &mut Registry) {
        registry
            .sub_registry_with_prefix("shardset_worker")
            .register(
                "forward_retries",
                "Forwards tried again after the endpoint did not take them",
                self.retries.clone(),
            );
    }

    /// Stops taking dispatches and waits up to `wait` for the queue to drain. `Some(undelivered)`:
    /// drained, with the dispatches given up at shutdown (unsettled: replayed by the next owner);
    /// `None`: not in time.
    pub async fn close(self, wait: Duration) -> Option<u64> {
        let Self { tx, task, .. } = self;
        drop(tx);
        match tokio::time::timeout(wait, task).await {
            Ok(Ok(undelivered)) => Some(undelivered),
            _ => None,
        }
    }

    /// Queues the body of dispatch `seq` of `shard`'s session `session`, waiting while the
    /// queue is full (backpressure).
    pub async fn forward(&self, shard: u32, session: Option<&str>, seq: u64, body: Vec<u8>) {
        let ticket = lock(&self.pending).push(shard, session, seq);
        // An error means the task is gone (shutdown): the dispatch stays unsettled.
        let _ = self.tx.send(Item { ticket, body }).await;
    }

    /// The seq up to which `shard`'s current session reached the endpoint, given that the
    /// handler finished up to `handled`: just before its oldest dispatch still queued or in
    /// flight (`pending.rs`).
    pub fn settled(&self, shard: u32, handled: u64) -> u64 {
        lock(&self.pending).settled(shard, handled)
    }
}

fn lock(pending: &Pending) -> std::sync::MutexGuard<'_, Queued> {
    pending
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The wait before try number `tries + 1` of one dispatch: [`FIRST_RETRY`] doubling, at most
/// [`LONGEST_RETRY`].
pub fn retry_delay(tries: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(1 << tries.saturating_sub(1).min(16))
        .min(LONGEST_RETRY)
}

/// The sender task's parts.
struct Sender {
    url: String,
    pending: Pending,
    retries: Counter,
    shutdown: watch::Receiver<bool>,
}

impl Sender {
    /// Posts every body in order, each until it is taken (or shutdown); returns how many were
    /// given up.
    async fn send_all(mut self, mut rx: mpsc::Receiver<Item>) -> u64 {
        shardset_contract::rest::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let mut undelivered = 0;
        let mut given_up = false;
        while let Some(Item { ticket, body }) = rx.recv().await {
            if given_up || !self.deliver(&http, body).await {
                // Shutdown: left unsettled (replayed by the next owner), and so is every
                // dispatch behind it (order); the queue still empties, so no shard stays blocked.
                given_up = true;
                undelivered += 1;
                continue;
            }
            lock(&self.pending).settle(ticket);
        }
        undelivered
    }

    /// Posts `body` until the endpoint takes it (true), or a try fails after shutdown (false).
    async fn deliver(&mut self, http: &reqwest::Client, body: Vec<u8>) -> bool {
        let mut tries = 0;
        loop {
            let result = http
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            match result {
                Ok(r) if r.status().is_success() => return true,
                Ok(r) => warn!(
                    status = r.status().as_u16(),
                    "forward endpoint refused a dispatch; trying again"
                ),
                Err(e) => {
                    warn!(error = %e.without_url(), "forward endpoint unreachable; trying again")
                }
            }
            tries += 1;
            if *self.shutdown.borrow() {
                return false;
            }
            tokio::select! {
                () = tokio::time::sleep(retry_delay(tries)) => {}
                _ = self.shutdown.wait_for(|s| *s) => return false,
            }
            self.retries.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_50_ms_to_5_s() {
        let delays: Vec<u64> = (1..=10)
            .map(|t| retry_delay(t).as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            [50, 100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000]
        );
        assert_eq!(retry_delay(u32::MAX), LONGEST_RETRY);
    }

    #[tokio::test]
    async fn a_new_sessions_dispatches_queued_behind_the_old_ones_are_not_settled() {
        // Nothing listens: nothing is delivered. Session one's 11 and 12 are queued, then the
        // shard identified again (op 9 `false`) and session two's READY (seq 1) is queued.
        let (_shutdown, shutdown_rx) = watch::channel(false);
        let forwarder = Forwarder::spawn("http://127.0.0.1:9/none".into(), shutdown_rx);
        forwarder.forward(0, Some("one"), 11, b"{}".to_vec()).await;
        forwarder.forward(0, Some("one"), 12, b"{}".to_vec()).await;
        forwarder.forward(0, Some("two"), 1, b"{}".to_vec()).await;
        assert_eq!(
            forwarder.settled(0, 1),
            0,
            "session two's seq 1 did not reach the endpoint: a checkpoint must not claim it"
        );
    }

    #[tokio::test]
    async fn only_answered_dispatches_are_settled_and_shutdown_ends_the_retries() {
        // Nothing listens there: every post fails, and is retried until shutdown.
        let (shutdown, shutdown_rx) = watch::channel(false);
        let forwarder = Forwarder::spawn("http://127.0.0.1:9/none".into(), shutdown_rx);
        assert_eq!(forwarder.settled(0, 10), 10, "nothing queued: all handled");
        forwarder.forward(0, Some("a"), 11, b"{}".to_vec()).await;
        forwarder.forward(0, Some("a"), 12, b"{}".to_vec()).await;
        forwarder.forward(1, Some("b"), 5, b"{}".to_vec()).await;
        assert_eq!(forwarder.settled(0, 12), 10, "before the oldest in flight");
        assert_eq!(forwarder.settled(1, 5), 4);
        assert_eq!(forwarder.settled(2, 7), 7, "another shard is not held back");
        // Retried for longer than the old five attempts took (1.55 s): never given up.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(forwarder.retries.get() >= 5, "{}", forwarder.retries.get());
        assert_eq!(forwarder.settled(0, 12), 10, "still not settled");
        shutdown.send_replace(true);
        assert_eq!(
            forwarder.close(Duration::from_secs(30)).await,
            Some(3),
            "given up at shutdown, never settled"
        );
    }
}
