//! A shard's custody in Redis (`docs/redis-protocol.md`, "Custody between pods", "Self-fencing")
//! with real `shard-worker` processes, the fake Discord and a real redis-server: what a worker
//! does with the records it finds there and how it keeps one live session per shard.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::scenario::{Scenario, wait_until};
use common::worker::WorkerProcess;
use futures_util::{SinkExt, StreamExt};
use redis::Commands;
use shardset_contract::{Keys, SessionRecord};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

const READY: Duration = Duration::from_secs(30);
const TOKEN: &str = "test-token-do-not-log";

/// A WebSocket listener of the test's own that plays a gateway (Hello, uncompressed) and keeps
/// every byte a client sends it.
struct Trap {
    url: String,
    connections: Arc<Mutex<u32>>,
    received: Arc<Mutex<Vec<String>>>,
}

impl Trap {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}", listener.local_addr().expect("addr"));
        let connections = Arc::new(Mutex::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (count, keep) = (Arc::clone(&connections), Arc::clone(&received));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                *count.lock().expect("lock") += 1;
                let keep = Arc::clone(&keep);
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    let hello = r#"{"op":10,"d":{"heartbeat_interval":41250}}"#;
                    let _ = ws.send(Message::text(hello)).await;
                    while let Some(Ok(message)) = ws.next().await {
                        keep.lock().expect("lock").push(
                            message
                                .into_text()
                                .map(|t| t.to_string())
                                .unwrap_or_default(),
                        );
                    }
                });
            }
        });
        Self {
            url,
            connections,
            received,
        }
    }

    fn connections(&self) -> u32 {
        *self.connections.lock().expect("lock")
    }

    fn received(&self) -> Vec<String> {
        self.received.lock().expect("lock").clone()
    }
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_resume_url_never_gets_the_token_and_the_shard_identifies() {
    let s = Scenario::start(1, 200, 1_000).await;
    let trap = Trap::start().await;
    // Anyone who can write the bot's Redis plants a session whose resume URL is theirs.
    let keys = Keys::new(s.fake.state().config.application_id);
    let planted = SessionRecord {
        session_id: "planted-session".into(),
        seq: 5,
        resume_gateway_url: format!("{}/?leak=planted-query", trap.url),
        saved_at_ms: 0,
    };
    let _: () = s
        .redis
        .conn()
        .set(
            keys.session(1, 0),
            serde_json::to_string(&planted).expect("json"),
        )
        .expect("plant");
    let mut worker = WorkerProcess::start(s.spec("trust", 0, 0, 1));
    let settled = wait_until(READY, || async {
        trap.connections() > 0 || worker.readyz().await.is_some_and(|(code, _)| code == 200)
    })
    .await;
    assert!(settled, "neither ready nor trapped:\n{}", worker.log_text());
    assert!(
        trap.received().iter().all(|m| !m.contains(TOKEN)),
        "the token reached the planted URL: {:?}",
        trap.received()
    );
    assert_eq!(trap.connections(), 0, "the planted URL was never dialled");
    assert!(worker.wait_ready(READY).await, "{}", worker.log_text());
    assert_eq!(
        s.accepted_identifies(0),
        1,
        "the record counted as absent: the shard identified through the gate"
    );
    let metrics = worker.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"shardset_worker_untrusted_resume_urls_total{source="record"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(worker.terminate(Duration::from_secs(20)).await, Some(0));
    let log = worker.log_text();
    let address = trap.url.trim_start_matches("ws://");
    assert!(
        log.lines()
            .any(|l| l.contains("not trusted") && l.contains(address)),
        "the refusal is logged with the URL:\n{log}"
    );
    assert!(!log.contains("planted-query"), "without its query:\n{log}");
    assert!(!log.contains(TOKEN), "the token never reaches the logs");
    s.assert_no_violations();
}
