//! Forwards dispatches to an in-pod HTTP endpoint (`FORWARD_URL`), in order, with backpressure:
//! a bounded queue in front of one sender task. When the endpoint falls behind, the queue fills
//! and the shards wait for room (so they read the gateway more slowly) instead of growing memory.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

/// Dispatches waiting to be sent.
const QUEUE: usize = 1024;
/// Attempts per dispatch before it is dropped (counted, logged).
const ATTEMPTS: u32 = 5;

/// The sending half; clone-free, shared by the handler.
#[derive(Debug)]
pub struct Forwarder {
    tx: mpsc::Sender<Vec<u8>>,
}

impl Forwarder {
    /// Starts the sender task posting JSON bodies to `url`. The task ends once the forwarder is
    /// dropped and the queue is drained: await the handle at shutdown.
    pub fn spawn(url: String) -> (Self, JoinHandle<u64>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(send_all(url, rx));
        (Self { tx }, task)
    }

    /// Queues one body, waiting while the queue is full (backpressure).
    pub async fn forward(&self, body: Vec<u8>) {
        // An error means the task is gone (shutdown): nothing left to do.
        let _ = self.tx.send(body).await;
    }
}

/// Posts every body in order; returns how many were dropped after failed attempts.
async fn send_all(url: String, mut rx: mpsc::Receiver<Vec<u8>>) -> u64 {
    crate::rest::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut dropped = 0;
    while let Some(body) = rx.recv().await {
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
    }
    dropped
}
