//! A shard's custody in Redis (`docs/redis-protocol.md`, "Custody between pods", "Self-fencing")
//! with real `shard-worker` processes, the fake Discord and a real redis-server: what a worker
//! does with the records it finds there and how it keeps one live session per shard.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::collector::Collector;
use common::cutter::Cutter;
use common::metrics::sample;
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
        sample(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_shards_keep_their_records_and_resume_after_a_crash() {
    // A resume window shorter than the quiet spell: records that are only written when the seq
    // moves expire while the shards are idle.
    let s = Scenario::start(2, 200, 1_000).await;
    let mut spec = s.spec("quiet", 0, 3, 4);
    spec.extra_env.push((
        shardset_contract::env::RESUME_WINDOW_MS.into(),
        "3000".into(),
    ));
    let first = WorkerProcess::start(spec.clone());
    assert!(first.wait_ready(READY).await, "{}", first.log_text());
    let sessions: Vec<String> = (0..4)
        .map(|shard| s.live_session(shard).expect("live").session_id)
        .collect();
    let seqs: Vec<u64> = (0..4)
        .map(|shard| s.live_session(shard).expect("live").seq)
        .collect();
    // No event for twice the resume window (and past a lease renewal).
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        (0..4)
            .map(|shard| s.live_session(shard).expect("live").seq)
            .collect::<Vec<_>>(),
        seqs,
        "the shards were quiet"
    );
    let identifies = s.identifies();
    drop(first); // kill -9: no final save
    spec.pod = "quiet-2".into();
    let second = WorkerProcess::start(spec);
    assert!(second.wait_ready(READY).await, "{}", second.log_text());
    s.assert_resumed(0..4, identifies);
    for shard in 0..4 {
        let live = s.live_session(shard).expect("live");
        assert_eq!(live.session_id, sessions[shard as usize], "shard {shard}");
    }
    s.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owners_checkpoint_never_overwrites_its_successors_record() {
    use prometheus_client::registry::Registry;
    use shard_worker::shard::records::Records;
    use shard_worker::worker::board::{Board, LiveSession};
    use shard_worker::worker::bookkeeper::{self, BookkeeperConfig};
    use shard_worker::worker::metrics::Metrics;

    let redis = common::redis::RedisServer::start();
    let keys = Keys::new(42);
    let records = Records::new(
        shard_worker::identify::connect(&redis.url(), None).expect("redis"),
        keys.clone(),
        1,
    );
    // Pod b took the shard over (a's lease expired while a was cut off) and saved its session.
    let successor = SessionRecord {
        session_id: "b-session".into(),
        seq: 100,
        resume_gateway_url: "wss://gateway.discord.gg".into(),
        saved_at_ms: 1,
    };
    let _: () = redis
        .conn()
        .set(keys.lease(1, 0), "b/owner")
        .expect("b's lease");
    let _: () = redis
        .conn()
        .set(
            keys.session(1, 0),
            serde_json::to_string(&successor).expect("json"),
        )
        .expect("b's record");
    // Pod a reaches Redis again and still thinks it holds the shard, with an older session.
    let mut registry = Registry::default();
    let board = Arc::new(Board::new(0, 0, Arc::new(Metrics::new(&mut registry))));
    let slot = Arc::clone(board.slot(0).expect("slot"));
    {
        let mut a = slot.lock();
        a.lease_owner = Some("a/owner".into());
        a.session = Some(LiveSession {
            session_id: "a-session".into(),
            resume_gateway_url: "wss://gateway.discord.gg".into(),
        });
    }
    slot.set_handled_seq(7);
    let config = BookkeeperConfig {
        tick: Duration::from_millis(50),
        checkpoint_every: Duration::from_millis(50),
        resume_window: Duration::from_secs(60),
        lease_ttl: Duration::from_secs(15),
        fence_margin: Duration::from_secs(3),
        status_ttl: Duration::from_secs(30),
        pod: "a".into(),
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(bookkeeper::run(
        Arc::clone(&board),
        records,
        config,
        bookkeeper::Reported {
            guilds: Arc::new(|_| None),
            bus: Arc::new(|| None),
        },
        Arc::new(|_, handled| handled),
        stop_rx,
    ));
    // a learns from the renewal that the lease is b's; its checkpoint must not have landed.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            slot.lease_lost_flag
                .load(std::sync::atomic::Ordering::Acquire)
        })
        .await,
        "a found its lease taken"
    );
    stop.send_replace(true);
    task.await.expect("bookkeeper");
    let saved: String = redis.conn().get(keys.session(1, 0)).expect("record");
    let saved: SessionRecord = serde_json::from_str(&saved).expect("json");
    assert_eq!(saved, successor, "b's record stands");
}

/// The documented bound (`docs/redis-protocol.md`, "Self-fencing"): a shard's socket is closed
/// at most TTL − 3 s (12 s) plus one watchdog tick (0.1 s) after its lease was last confirmed,
/// before the 15 s lease can expire. Asserted with some room for a busy machine, still under 15 s.
const FENCE_BOUND: Duration = Duration::from_millis(13_500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_blocked_in_its_handler_closes_its_socket_before_its_lease_can_expire() {
    // Heartbeats 60 s apart: the fake does not end the blocked connection on its own.
    let s = Scenario::start(1, 200, 60_000).await;
    let relay = Cutter::start(s.redis.port).await;
    // The forward endpoint answers nothing: the forward queue fills, then the handler waits for
    // room (backpressure) and the shard reads nothing more.
    let collector = Collector::default();
    let _stall = collector.stall();
    let (forward_url, _server) = collector.start().await;
    let mut spec = s.spec("blocked", 0, 0, 1);
    spec.redis_url = relay.url();
    spec.forward_url = Some(forward_url);
    let a = WorkerProcess::start(spec);
    assert!(a.wait_ready(READY).await, "a ready:\n{}", a.log_text());
    let before = s.live_session(0).expect("live");
    s.set_load(500);
    // Dispatches handled, of every event type.
    let handled = || async {
        a.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with("shardset_worker_events_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let mut blocked = false;
    let mut last = -1.0;
    for _ in 0..60 {
        let now = handled().await;
        if now >= 1_000.0 && now == last {
            blocked = true;
            break;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(blocked, "the handler blocked on the full forward queue");
    s.set_load(0);
    // Redis stops answering A (a dead link, not a refused connection): its lease can no longer
    // be renewed. The replacement starts at once and waits for the lease to expire.
    relay.black_hole();
    let black_holed = tokio::time::Instant::now();
    let b = WorkerProcess::start(s.spec("replacement", 0, 0, 1));
    let mut closed_after = None;
    let taken_over = wait_until(Duration::from_secs(40), || {
        let now = s
            .fake
            .state()
            .sessions()
            .into_iter()
            .find(|x| x.session_id == before.session_id);
        if closed_after.is_none() && now.as_ref().is_some_and(|x| !x.connected) {
            closed_after = Some(black_holed.elapsed());
        }
        let resumed = now.is_some_and(|x| x.connected && x.connection != before.connection);
        async move { resumed }
    })
    .await;
    assert!(taken_over, "b resumed the session:\n{}", b.log_text());
    let closed_after = closed_after.unwrap_or_else(|| {
        panic!(
            "a's connection was still live when b's resume took it over: two live sessions\n{}",
            a.log_text()
        )
    });
    eprintln!("a's connection ended {closed_after:?} after Redis went dark");
    // The last renewal was confirmed at most 5 s (a renewal period) before the black hole.
    assert!(
        closed_after >= Duration::from_secs(6) && closed_after <= FENCE_BOUND,
        "a closed its socket {closed_after:?} after Redis went dark (fence: 7–12 s)"
    );
    assert_eq!(
        sample(
            &a.metrics().await,
            r#"shardset_worker_lease_lost_total{shard="0",reason="fenced"}"#
        ),
        Some(1.0),
        "fenced, and counted"
    );
    assert_eq!(s.identifies(), 1, "resumed, never identified again");
    assert!(
        a.log_text().contains("closing its connection"),
        "a says why:\n{}",
        a.log_text()
    );
    s.assert_no_violations();
}
