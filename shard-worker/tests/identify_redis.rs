//! The Redis Identify protocol against a real redis-server: windows per bucket measured from the
//! send, lower shard ids first, the epoch hold after data loss (and after a restart from disk
//! that lost a gate), one bucket map at a time, the budget and its reserve, budget reads from
//! Discord (one at a time, backing off, never again after a 401), released permits, leases,
//! failing closed while Redis is away, and the HTTP facade.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::redis::{Options, RedisServer};
use redis::Commands;
use shard_worker::identify::gate::{GateConfig, RedisQueue, Take, connect, settle_epoch_script};
use shard_worker::identify::{IdentifyQueue, WaitReason, http_facade};
use shard_worker::shard::records::{Lease, Records};
use shardset_contract::Keys;
use shardset_contract::rest::DiscordRest;
use shardset_contract::token::Token;
use tokio::time::Instant;

const APP: u64 = 4242;

fn gate(max_concurrency: u32, window_ms: u64) -> GateConfig {
    GateConfig::new(max_concurrency, Duration::from_millis(window_ms), 0)
}

fn queue(redis: &RedisServer, config: GateConfig, pod: &str) -> RedisQueue {
    let conn = connect(&redis.url()).expect("redis url");
    RedisQueue::new(conn, Keys::new(APP), config, pod, None)
}

/// Creates the epoch marker (of this server process) in the past so that tests do not wait for
/// the first-use hold.
fn settle_epoch(redis: &RedisServer) {
    let mut conn = redis.conn();
    let _: () = settle_epoch_script()
        .key(Keys::new(APP).epoch())
        .invoke(&mut conn)
        .expect("set epoch");
}

fn set_budget(redis: &RedisServer, remaining: i64) {
    let mut conn = redis.conn();
    let _: () = conn
        .pset_ex(Keys::new(APP).budget(), remaining, 3_600_000)
        .expect("set budget");
}

#[tokio::test]
async fn one_identify_per_bucket_per_window_across_pods_lowest_shard_first() {
    let redis = RedisServer::start();
    set_budget(&redis, 1000);
    let window = 300;
    // Three "pods" share the buckets; the epoch hold of the first use lines every waiter up.
    let pods: Vec<Arc<RedisQueue>> = (0..3)
        .map(|i| Arc::new(queue(&redis, gate(2, window), &format!("pod-{i}"))))
        .collect();
    let sends = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for shard in (0..12u32).rev() {
        let q = Arc::clone(&pods[shard as usize % 3]);
        let sends = Arc::clone(&sends);
        tasks.push(tokio::spawn(async move {
            let permit = q.acquire(shard, &|_| {}).await;
            // The send happens a little after the grant: the window must run from here.
            tokio::time::sleep(Duration::from_millis(20)).await;
            sends.lock().expect("lock").push((shard, start.elapsed()));
            permit.sent().await;
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let sends = sends.lock().expect("lock").clone();
    for bucket in 0..2 {
        let mut in_bucket: Vec<_> = sends
            .iter()
            .filter(|(s, _)| s % 2 == bucket)
            .cloned()
            .collect();
        in_bucket.sort_by_key(|(_, t)| *t);
        for pair in in_bucket.windows(2) {
            let gap = pair[1].1 - pair[0].1;
            assert!(
                gap >= Duration::from_millis(window),
                "bucket {bucket}: {in_bucket:?}"
            );
        }
        let order: Vec<u32> = in_bucket.iter().map(|(s, _)| *s).collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, sorted, "lower shard ids first in bucket {bucket}");
    }
    let mut conn = redis.conn();
    let budget: i64 = conn.get(Keys::new(APP).budget()).expect("budget");
    assert_eq!(budget, 1000 - 12, "one session start per Identify");
}

#[tokio::test]
async fn the_gate_lasts_window_plus_margin_from_the_send() {
    let redis = RedisServer::start();
    settle_epoch(&redis);
    set_budget(&redis, 10);
    let config = gate(1, 1000);
    let hold = config.hold();
    let q = queue(&redis, config, "pod");
    let permit = q.acquire(0, &|_| {}).await;
    let mut conn = redis.conn();
    let before: i64 = conn.pttl(Keys::new(APP).gate(0)).expect("pttl");
    assert!(
        before > hold.as_millis() as i64,
        "taken with connect_bound ({before} ms)"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    permit.sent().await;
    let after: i64 = conn.pttl(Keys::new(APP).gate(0)).expect("pttl");
    assert!(
        after <= hold.as_millis() as i64 && after > hold.as_millis() as i64 - 100,
        "{after}"
    );
}

#[tokio::test]
async fn a_released_permit_frees_the_gate_and_returns_the_session_start() {
    let redis = RedisServer::start();
    settle_epoch(&redis);
    set_budget(&redis, 10);
    let q = queue(&redis, gate(1, 5000), "pod");
    let start = Instant::now();
    q.acquire(0, &|_| {}).await.release().await;
    let mut conn = redis.conn();
    assert_eq!(
        conn.get::<_, i64>(Keys::new(APP).budget()).expect("budget"),
        10
    );
    assert!(
        !conn
            .exists::<_, bool>(Keys::new(APP).gate(0))
            .expect("exists")
    );
    let permit = q.acquire(0, &|_| {}).await;
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "no window was spent"
    );
    permit.sent().await;
    assert_eq!(
        conn.get::<_, i64>(Keys::new(APP).budget()).expect("budget"),
        9
    );
}

#[tokio::test]
async fn a_lost_epoch_grants_nothing_for_one_window() {
    let redis = RedisServer::start();
    set_budget(&redis, 10);
    let config = gate(1, 400);
    let hold = config.hold();
    let q = queue(&redis, config, "pod");
    // First use: the marker is created and nothing is granted for window + margin.
    match q.try_take(0, "a").await.expect("take") {
        Take::Wait {
            reason: WaitReason::Epoch,
            after,
        } => assert_eq!(after, hold),
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(hold).await;
    assert!(matches!(
        q.try_take(0, "b").await.expect("take"),
        Take::Granted { remaining: 9 }
    ));
    // Redis loses everything (restart without persistence): the gate is gone, yet no Identify
    // is granted for a window.
    let mut conn = redis.conn();
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).expect("flush");
    set_budget(&redis, 10);
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let r = Arc::clone(&reasons);
    let permit = q
        .acquire(0, &move |reason| r.lock().expect("lock").push(reason))
        .await;
    assert!(
        start.elapsed() >= hold,
        "granted after {:?}",
        start.elapsed()
    );
    assert_eq!(reasons.lock().expect("lock")[0], WaitReason::Epoch);
    permit.sent().await;
}

#[tokio::test]
async fn the_budget_is_spent_atomically_and_never_below_the_reserve() {
    let redis = RedisServer::start();
    settle_epoch(&redis);
    set_budget(&redis, 3);
    let mut config = gate(4, 1000);
    config.reserve = 1;
    let q = queue(&redis, config, "pod");
    assert!(matches!(
        q.try_take(0, "a").await.expect("take"),
        Take::Granted { remaining: 2 }
    ));
    assert!(matches!(
        q.try_take(1, "b").await.expect("take"),
        Take::Granted { remaining: 1 }
    ));
    match q.try_take(2, "c").await.expect("take") {
        Take::Wait {
            reason: WaitReason::Budget,
            after,
        } => assert!(after > Duration::from_secs(3000)),
        other => panic!("{other:?}"),
    }
    // Without a budget the worker must ask Discord first.
    let mut conn = redis.conn();
    let _: () = conn.del(Keys::new(APP).budget()).expect("del");
    assert!(matches!(
        q.try_take(3, "d").await.expect("take"),
        Take::Wait {
            reason: WaitReason::BudgetUnknown,
            ..
        }
    ));
    // Syncing never raises a lower count within a period.
    assert_eq!(q.sync_budget(50, 10_000).await.expect("sync"), 50);
    assert_eq!(q.sync_budget(80, 10_000).await.expect("sync"), 50);
    assert_eq!(q.sync_budget(20, 10_000).await.expect("sync"), 20);
}

#[tokio::test]
async fn no_permit_while_redis_is_away_and_one_once_it_is_back() {
    let mut redis = RedisServer::start();
    settle_epoch(&redis);
    set_budget(&redis, 10);
    let q = Arc::new(queue(&redis, gate(1, 300), "pod"));
    q.acquire(0, &|_| {}).await.sent().await;
    redis.stop();
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let r = Arc::clone(&reasons);
    let q2 = Arc::clone(&q);
    let waiter = tokio::spawn(async move {
        let permit = q2
            .acquire(1, &move |reason| r.lock().expect("lock").push(reason))
            .await;
        permit.sent().await;
        Instant::now()
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!waiter.is_finished(), "no Identify without the gate");
    assert!(reasons.lock().expect("lock").contains(&WaitReason::Redis));
    // Redis comes back empty: the epoch hold applies, then the shard gets its permit.
    let back = Instant::now();
    redis.restart();
    set_budget(&redis, 10);
    let granted = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("a permit once Redis is back")
        .expect("task");
    assert!(
        granted - back >= Duration::from_millis(300),
        "the epoch hold was respected"
    );
    assert!(reasons.lock().expect("lock").contains(&WaitReason::Epoch));
}

#[tokio::test]
async fn leases_admit_one_owner_at_a_time() {
    let redis = RedisServer::start();
    let conn = connect(&redis.url()).expect("url");
    let records = Records::new(conn, Keys::new(APP), 16);
    let ttl = Duration::from_secs(10);
    assert_eq!(
        records.claim_lease(3, "a", ttl, ttl).await.expect("claim"),
        Lease::Held
    );
    assert_eq!(
        records.claim_lease(3, "a", ttl, ttl).await.expect("renew"),
        Lease::Held
    );
    assert!(
        matches!(records.claim_lease(3, "b", ttl, ttl).await.expect("claim"), Lease::Taken { pttl } if pttl > Duration::from_secs(9))
    );
    assert!(
        !records.release_lease(3, "b").await.expect("release"),
        "only the owner releases"
    );
    assert!(records.release_lease(3, "a").await.expect("release"));
    assert_eq!(
        records.claim_lease(3, "b", ttl, ttl).await.expect("claim"),
        Lease::Held
    );
}

#[tokio::test]
async fn the_http_facade_answers_when_the_shard_may_identify() {
    let redis = RedisServer::start();
    settle_epoch(&redis);
    set_budget(&redis, 10);
    let q: Arc<dyn IdentifyQueue> = Arc::new(queue(&redis, gate(1, 500), "facade"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, http_facade::router(q)).await;
    });
    shardset_contract::rest::install_crypto_provider();
    let http = reqwest::Client::new();
    let start = Instant::now();
    for shard in [0, 1] {
        let response = http
            .get(format!("http://{addr}/?shard={shard}"))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 200);
    }
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "the second waited a window"
    );
    server.abort();
}

#[tokio::test]
async fn a_restart_from_disk_that_lost_a_gate_grants_nothing_for_one_window() {
    let mut redis = RedisServer::start_with(Options {
        persistent: true,
        ..Options::default()
    });
    settle_epoch(&redis);
    set_budget(&redis, 10);
    // The last save holds the long-established epoch and the budget, not what follows.
    let _: () = redis::cmd("SAVE").query(&mut redis.conn()).expect("save");
    let config = gate(1, 1_000);
    let hold = config.hold();
    let q = queue(&redis, config, "pod");
    let permit = q.acquire(0, &|_| {}).await;
    permit.sent().await;
    let sent = Instant::now();
    // Redis restarts from its save (as after a crash with RDB/AOF, or a failover to a replica
    // that lagged): the epoch marker is still there, the gate of the Identify just sent is not.
    redis.restart();
    let mut conn = redis.conn();
    assert!(
        conn.exists::<_, bool>(Keys::new(APP).epoch())
            .expect("exists")
    );
    assert!(
        !conn
            .exists::<_, bool>(Keys::new(APP).gate(0))
            .expect("exists")
    );
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let r = Arc::clone(&reasons);
    let permit = tokio::time::timeout(
        Duration::from_secs(20),
        q.acquire(0, &move |reason| r.lock().expect("lock").push(reason)),
    )
    .await
    .expect("a permit after the hold");
    let granted = sent.elapsed();
    assert!(
        granted >= hold,
        "a second Identify was granted {granted:?} after the first (window + margin {hold:?}); waits: {:?}",
        reasons.lock().expect("lock")
    );
    assert!(reasons.lock().expect("lock").contains(&WaitReason::Epoch));
    permit.release().await;
}

#[tokio::test]
async fn two_bucket_maps_are_never_live_at_once() {
    let redis = RedisServer::start();
    settle_epoch(&redis);
    set_budget(&redis, 10);
    // Discord's max_concurrency is 4; a pod rolled with an override of 2 runs beside the others.
    let config4 = gate(4, 300);
    let connect_bound = config4.connect_bound;
    let four = queue(&redis, config4, "four");
    let two = queue(&redis, gate(2, 300), "two");
    assert!(matches!(
        four.try_take(3, "a").await.expect("take"),
        Take::Granted { .. }
    ));
    // Shard 7 is in Discord's bucket 3 too, but under a map of 2 its gate would be gate:1 (free):
    // granting it would put two Identifies into one Discord bucket inside the window.
    let refused_at = Instant::now();
    match two.try_take(7, "b").await.expect("take") {
        Take::Wait {
            reason: WaitReason::Concurrency,
            after,
        } => assert!(
            after > connect_bound - Duration::from_millis(200),
            "{after:?}"
        ),
        other => panic!("shard 7 under another map: {other:?}"),
    }
    let mut conn = redis.conn();
    let line: Vec<u32> = conn.zrange(Keys::new(APP).queue(1), 0, -1).expect("line");
    assert!(
        line.is_empty(),
        "a refused caller does not hold up a line: {line:?}"
    );
    // The same map is served as usual meanwhile.
    assert!(matches!(
        four.try_take(1, "c").await.expect("take"),
        Take::Granted { .. }
    ));
    // Once no gate of the first map can be alive any more, the other map may take over.
    let permit = tokio::time::timeout(Duration::from_secs(20), two.acquire(7, &|_| {}))
        .await
        .expect("the other map after connect_bound");
    assert!(refused_at.elapsed() >= connect_bound - Duration::from_millis(300));
    permit.release().await;
    let map: String = conn.get(Keys::new(APP).max_concurrency()).expect("map");
    assert_eq!(map, "2");
}

/// What the REST stand-in answers for `GET /gateway/bot`.
#[derive(Clone, Copy)]
enum Answer {
    /// 429 with this `retry_after` (seconds).
    RateLimited(f64),
    Unauthorized,
    /// The fake Discord's own answer.
    Fake,
}

/// A REST endpoint in front of the fake Discord that counts `GET /gateway/bot` and answers as told.
struct CountingRest {
    calls: Arc<Mutex<Vec<Instant>>>,
    answer: Arc<Mutex<Answer>>,
    url: String,
    _fake: fake_discord::RunningFake,
    server: tokio::task::JoinHandle<()>,
}

impl CountingRest {
    async fn start(answer: Answer) -> Self {
        use axum::http::StatusCode;
        use axum::response::IntoResponse;
        shardset_contract::rest::install_crypto_provider();
        let fake = fake_discord::FakeDiscord::spawn(
            fake_discord::Config::default(),
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("fake Discord");
        let fake_api = fake.api_url();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(Mutex::new(answer));
        let (c, a) = (Arc::clone(&calls), Arc::clone(&answer));
        let app = axum::Router::new().route(
            "/api/v10/gateway/bot",
            axum::routing::get(move || {
                let (calls, answer, fake_api) = (Arc::clone(&c), Arc::clone(&a), fake_api.clone());
                async move {
                    calls.lock().expect("lock").push(Instant::now());
                    let answer = *answer.lock().expect("lock");
                    match answer {
                        Answer::RateLimited(secs) => (
                            StatusCode::TOO_MANY_REQUESTS,
                            axum::Json(serde_json::json!({
                                "message": "You are being rate limited.",
                                "retry_after": secs,
                                "global": false
                            })),
                        )
                            .into_response(),
                        Answer::Unauthorized => (
                            StatusCode::UNAUTHORIZED,
                            axum::Json(
                                serde_json::json!({"message": "401: Unauthorized", "code": 0}),
                            ),
                        )
                            .into_response(),
                        Answer::Fake => {
                            let body = reqwest::Client::new()
                                .get(format!("{fake_api}/v10/gateway/bot"))
                                .header("Authorization", "Bot t")
                                .send()
                                .await
                                .expect("fake answers")
                                .text()
                                .await
                                .expect("body");
                            ([("content-type", "application/json")], body).into_response()
                        }
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            calls,
            answer,
            url: format!("http://{addr}/api"),
            _fake: fake,
            server,
        }
    }

    fn calls(&self) -> Vec<Instant> {
        self.calls.lock().expect("lock").clone()
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().expect("lock") = answer;
    }

    fn queue(&self, redis: &RedisServer, max_concurrency: u32) -> RedisQueue {
        let conn = connect(&redis.url()).expect("redis url");
        let rest = DiscordRest::new(&self.url, Token::new("t")).expect("rest");
        RedisQueue::new(
            conn,
            Keys::new(APP),
            gate(max_concurrency, 300),
            "pod",
            Some(rest),
        )
    }
}

impl Drop for CountingRest {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_budget_is_read_once_at_a_time_honouring_retry_after() {
    let redis = RedisServer::start();
    settle_epoch(&redis);
    let rest = CountingRest::start(Answer::RateLimited(1.0)).await;
    // Eight shards, each at the head of its own bucket, all find the budget unknown at once.
    let q = Arc::new(rest.queue(&redis, 8));
    let granted = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..8u32)
        .map(|shard| {
            let (q, granted) = (Arc::clone(&q), Arc::clone(&granted));
            tokio::spawn(async move {
                let permit = q.acquire(shard, &|_| {}).await;
                granted.fetch_add(1, Ordering::SeqCst);
                permit.release().await;
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let calls = rest.calls();
    assert!(
        (2..=3).contains(&calls.len()),
        "one read at a time, backing off: {} calls in 4 s",
        calls.len()
    );
    for pair in calls.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(990),
            "a read within retry_after of a 429: {calls:?}"
        );
    }
    assert_eq!(
        granted.load(Ordering::SeqCst),
        0,
        "no Identify without a budget"
    );
    // Discord answers again: one read serves every waiter.
    rest.answer(Answer::Fake);
    let before = rest.calls().len();
    for w in waiters {
        tokio::time::timeout(Duration::from_secs(20), w)
            .await
            .expect("granted once the budget is known")
            .expect("task");
    }
    assert_eq!(rest.calls().len() - before, 1, "one read for eight waiters");
    let budget: i64 = redis.conn().get(Keys::new(APP).budget()).expect("budget");
    assert_eq!(
        budget, 1000,
        "the released permits gave their session starts back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_stops_budget_reads_and_says_why() {
    let redis = RedisServer::start();
    settle_epoch(&redis);
    let rest = CountingRest::start(Answer::Unauthorized).await;
    let q = Arc::new(rest.queue(&redis, 4));
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let waiters: Vec<_> = (0..4u32)
        .map(|shard| {
            let (q, reasons) = (Arc::clone(&q), Arc::clone(&reasons));
            tokio::spawn(async move {
                let report = move |reason| reasons.lock().expect("lock").push(reason);
                q.acquire(shard, &report).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(rest.calls().len(), 1, "a 401 is never retried");
    assert!(
        reasons
            .lock()
            .expect("lock")
            .contains(&WaitReason::TokenRefused)
    );
    for w in waiters {
        assert!(!w.is_finished(), "no permit with a refused token");
        w.abort();
    }
}
