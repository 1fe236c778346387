//! A forward endpoint (`FORWARD_URL`) that records every dispatch a worker forwards.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Forwarded {
    pub shard: u32,
    pub seq: u64,
    pub event: String,
}

#[derive(Clone, Default)]
pub struct Collector {
    pub seen: Arc<Mutex<Vec<Forwarded>>>,
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

    pub fn snapshot(&self) -> Vec<Forwarded> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn record(State(collector): State<Collector>, body: axum::body::Bytes) {
    if let Ok(f) = serde_json::from_slice::<Forwarded>(&body) {
        collector.seen.lock().expect("lock").push(f);
    }
}
