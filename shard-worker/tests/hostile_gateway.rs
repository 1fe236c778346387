//! A gateway of the test's own that misbehaves where the fake Discord never does: a decompression
//! bomb. The worker runs in-process (`worker::run` with parts of the test's own: an in-memory
//! Identify queue, no Redis) against it over real WebSockets, with zlib-stream compressed by the
//! fake's own compressor.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::metrics::sample;
use common::worker::stop_in_process;
use fake_discord::gateway::zlib::ZlibStream;
use futures_util::{SinkExt, StreamExt};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use shard_worker::gateway::session::SessionConfig;
use shard_worker::gateway::trust::ResumeTrust;
use shard_worker::handler::{Dispatch, Handler};
use shard_worker::handover::Acting;
use shard_worker::identify::memory::MemoryQueue;
use shard_worker::shard::{ShardConfig, Shared};
use shard_worker::worker::board::Board;
use shard_worker::worker::bookkeeper::BookkeeperConfig;
use shard_worker::worker::metrics::Metrics;
use shard_worker::worker::{self, Outcome};
use shardset_contract::GatewayCompression;
use shardset_contract::token::Token;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

const STEP: Duration = Duration::from_secs(10);
const SESSION: &str = "hostile-session";

/// A gateway that hands each accepted WebSocket to the test.
struct Gateway {
    url: String,
    connections: mpsc::Receiver<Connection>,
}

impl Gateway {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}", listener.local_addr().expect("addr"));
        let (tx, connections) = mpsc::channel(4);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                    continue;
                };
                let connection = Connection {
                    ws,
                    zlib: ZlibStream::new(6),
                };
                if tx.send(connection).await.is_err() {
                    return;
                }
            }
        });
        Self { url, connections }
    }

    async fn next(&mut self) -> Connection {
        tokio::time::timeout(STEP, self.connections.recv())
            .await
            .expect("the worker connects")
            .expect("gateway running")
    }
}

/// One connection, zlib-stream compressed as the worker asks for.
struct Connection {
    ws: WebSocketStream<TcpStream>,
    zlib: ZlibStream,
}

impl Connection {
    /// Sends one message made of `parts` (one zlib-stream message, however large).
    async fn send_parts(&mut self, parts: &[&[u8]]) {
        let mut frame = Vec::new();
        self.zlib
            .compress_parts(parts, &mut frame)
            .expect("deflate");
        self.ws
            .send(Message::binary(frame))
            .await
            .expect("send to the worker");
    }

    async fn send(&mut self, payload: Value) {
        self.send_parts(&[payload.to_string().as_bytes()]).await;
    }

    /// The next payload with opcode `op` the worker sends (heartbeats answered on the way).
    async fn expect_op(&mut self, op: u64) -> Value {
        loop {
            match self.next_message(&format!("op {op}")).await {
                Message::Text(text) => {
                    let payload: Value = serde_json::from_str(&text).expect("json");
                    if payload["op"] == op {
                        return payload;
                    }
                    if payload["op"] == 1 {
                        self.send(json!({"op": 11})).await;
                    }
                }
                other => panic!("expected op {op}, got {other:?}"),
            }
        }
    }

    /// The close code the worker ends the connection with (heartbeats answered on the way).
    async fn expect_close(&mut self) -> Option<u16> {
        loop {
            match self.next_message("a close").await {
                Message::Close(frame) => return frame.map(|f| u16::from(f.code)),
                Message::Text(text) if text.contains(r#""op":1"#) => {
                    self.send(json!({"op": 11})).await;
                }
                other => panic!("expected a close, got {other:?}"),
            }
        }
    }

    async fn next_message(&mut self, waiting_for: &str) -> Message {
        tokio::time::timeout(STEP, self.ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {waiting_for} from the worker in {STEP:?}"))
            .expect("connection open")
            .expect("a frame")
    }

    async fn hello(&mut self) {
        self.send(json!({"op": 10, "d": {"heartbeat_interval": 41_250}}))
            .await;
    }
}

/// Remembers the last seq handled.
#[derive(Default)]
struct LastSeq(AtomicU64);

impl Handler for LastSeq {
    async fn dispatch(&self, dispatch: Dispatch<'_>) {
        self.0.store(dispatch.seq, Ordering::SeqCst);
    }
}

struct Running {
    registry: Registry,
    handler: Arc<LastSeq>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Outcome>,
}

impl Running {
    fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encode");
        text
    }

    async fn stop(self) -> Outcome {
        stop_in_process(&self.stop, self.task).await
    }
}

/// One shard (0 of 1) against `gateway`, without Redis.
fn worker(gateway: &Gateway) -> Running {
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let board = Arc::new(Board::new(0, 0, metrics));
    let handler = Arc::new(LastSeq::default());
    let shared = Arc::new(Shared {
        config: ShardConfig {
            total: 1,
            intents: 513,
            gateway_url: gateway.url.clone(),
            // This gateway compresses with zlib (the fake's compressor).
            compression: GatewayCompression::ZlibStream,
            send_window: Duration::from_secs(60),
            // Pointed at a fake (the gateway's own host): ws:// resumes there only.
            resume_trust: ResumeTrust::new(&format!("http{}/api", &gateway.url[2..]), &gateway.url),
            session: SessionConfig::default(),
            lease_ttl: Duration::from_secs(15),
            resume_window: Duration::from_secs(60),
            pod: "hostile".into(),
            read_buffer: 2 * 1024,
        },
        token: Token::new("hostile-test-token"),
        queue: Arc::new(MemoryQueue::new(1, Duration::from_millis(100))),
        records: None,
        handler: Arc::clone(&handler),
        bus: None,
        board,
        acting: Arc::new(Acting::always_active("1")),
        inboxes: Default::default(),
    });
    let bookkeeping = BookkeeperConfig {
        tick: Duration::from_millis(100),
        checkpoint_every: Duration::from_secs(2),
        resume_window: Duration::from_secs(60),
        lease_ttl: Duration::from_secs(15),
        fence_margin: Duration::from_secs(3),
        status_ttl: Duration::from_secs(30),
        pod: "hostile".into(),
    };
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(worker::run(shared, bookkeeping, stop_rx));
    Running {
        registry,
        handler,
        stop,
        task,
    }
}

/// READY of session [`SESSION`] (seq 1) naming `resume_gateway_url`.
fn ready(resume_gateway_url: &str) -> Value {
    json!({"op": 0, "s": 1, "t": "READY", "d": {
        "v": 10, "session_id": SESSION, "resume_gateway_url": resume_gateway_url,
        "shard": [0, 1], "guilds": [], "user": {"id": "1", "username": "bot"},
    }})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_closes_the_connection_resumably_and_is_counted() {
    let mut gateway = Gateway::start().await;
    let running = worker(&gateway);
    let mut first = gateway.next().await;
    first.hello().await;
    first.expect_op(2).await;
    first.send(ready(&gateway.url)).await;
    // 64 MiB of one letter in a MESSAGE_CREATE: about 64 KiB on the wire.
    let chunk = vec![b'a'; 1 << 20];
    let mut parts: Vec<&[u8]> =
        vec![br#"{"op":0,"s":2,"t":"MESSAGE_CREATE","d":{"id":"2","content":""#];
    parts.extend(std::iter::repeat_n(chunk.as_slice(), 64));
    parts.push(br#""}}"#);
    first.send_parts(&parts).await;
    assert_eq!(
        first.expect_close().await,
        Some(4000),
        "closed resumably, not read to the end"
    );
    // The session survives: the next connection resumes it from the last dispatch handled.
    let mut second = gateway.next().await;
    second.hello().await;
    let resume = second.expect_op(6).await;
    assert_eq!(resume["d"]["session_id"], SESSION);
    assert_eq!(resume["d"]["seq"], 1, "the bomb was never handled");
    assert_eq!(running.handler.0.load(Ordering::SeqCst), 1);
    let metrics = running.metrics();
    assert_eq!(
        sample(
            &metrics,
            r#"shardset_worker_gateway_message_errors_total{reason="too_large"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    drop(second);
    drop(first);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_naming_an_untrusted_resume_url_resumes_on_the_gateway_instead() {
    let mut gateway = Gateway::start().await;
    let running = worker(&gateway);
    let mut first = gateway.next().await;
    first.hello().await;
    first.expect_op(2).await;
    // Not the gateway's host (another port): op 6 with the token must not go there.
    let untrusted = "ws://127.0.0.1:9/?leak=ready-query";
    first.send(ready(untrusted)).await;
    first.send(json!({"op": 7, "d": null})).await;
    assert_eq!(first.expect_close().await, Some(4000), "op 7: resumable");
    let mut second = gateway.next().await;
    second.hello().await;
    let resume = second.expect_op(6).await;
    assert_eq!(resume["d"]["session_id"], SESSION, "resumed on the gateway");
    let metrics = running.metrics();
    assert_eq!(
        sample(
            &metrics,
            r#"shardset_worker_untrusted_resume_urls_total{source="ready"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    drop(second);
    drop(first);
    running.stop().await;
}
