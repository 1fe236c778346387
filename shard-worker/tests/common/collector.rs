//! A forward endpoint (`FORWARD_URL`) that records every dispatch a worker forwards.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Forwarded {
    pub shard: u32,
    pub seq: u64,
    /// The session it arrived on: with `seq`, the dispatch's name.
    #[serde(default, rename = "sessionId")]
    pub session_id: Option<String>,
    pub event: String,
}

#[derive(Clone)]
pub struct Collector {
    pub seen: Arc<Mutex<Vec<Forwarded>>>,
    /// While true, requests get no answer (and are recorded only once it turns false and the
    /// client is still there): an endpoint that stalls.
    stalled: Arc<tokio::sync::watch::Sender<bool>>,
    /// While true, requests are answered 500 and not recorded: an endpoint that fails.
    failing: Arc<AtomicBool>,
    /// Requests answered 500.
    pub refused: Arc<AtomicU64>,
}

impl Default for Collector {
    fn default() -> Self {
        Self {
            seen: Arc::default(),
            stalled: Arc::new(tokio::sync::watch::channel(false).0),
            failing: Arc::default(),
            refused: Arc::default(),
        }
    }
}

impl Collector {
    /// Serves `POST /dispatch` on a free port; returns the URL.
    pub async fn start(&self) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let app = Router::new()
            .route("/dispatch", post(record))
            .with_state(self.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}/dispatch"), task)
    }

    /// Stalls the endpoint; `send_replace(false)` on the result lets it answer again.
    pub fn stall(&self) -> Arc<tokio::sync::watch::Sender<bool>> {
        self.stalled.send_replace(true);
        Arc::clone(&self.stalled)
    }

    /// Fails every request (500, nothing recorded) while `failing`.
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    pub fn snapshot(&self) -> Vec<Forwarded> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn record(State(collector): State<Collector>, body: axum::body::Bytes) -> StatusCode {
    let mut stalled = collector.stalled.subscribe();
    let _ = stalled.wait_for(|s| !*s).await;
    if collector.failing.load(Ordering::SeqCst) {
        collector.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if let Ok(f) = serde_json::from_slice::<Forwarded>(&body) {
        collector.seen.lock().expect("lock").push(f);
    }
    StatusCode::OK
}
