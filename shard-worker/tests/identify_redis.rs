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
    let conn = connect(&redis.url(), None).expect("redis url");
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

/// A redis-server that has run for a while (no first-use hold) and holds a budget of
/// `remaining`, as a worker stored it.
async fn warm_redis(remaining: u32) -> RedisServer {
    let redis = RedisServer::start();
    settle_epoch(&redis);
    set_budget(&redis, remaining).await;
    redis
}

/// A redis-server that persists when told: a long-established epoch and a budget of
/// `remaining`, saved (`SAVE`); a restart brings back that and nothing written after.
async fn saved_redis(remaining: u32) -> RedisServer {
    let redis = RedisServer::start_with(Options {
        persistent: true,
        ..Options::default()
    });
    settle_epoch(&redis);
    set_budget(&redis, remaining).await;
    let _: () = redis::cmd("SAVE").query(&mut redis.conn()).expect("save");
    redis
}

/// Stores the budget as a worker does after `GET /gateway/bot` (`sync_budget.lua`), for an hour.
async fn set_budget(redis: &RedisServer, remaining: u32) {
    sync_budget(redis, remaining, 3_600_000).await;
}

/// `sync_budget.lua` with Discord's answer `remaining`, `reset_after_ms`; returns what it stored.
async fn sync_budget(redis: &RedisServer, remaining: u32, reset_after_ms: u64) -> i64 {
    queue(redis, gate(1, 300), "budget-reader")
        .sync_budget(remaining, reset_after_ms)
        .await
        .expect("sync budget")
}

/// Shard `shard` asks `q` for its permit in a task, reporting its waits into `reasons`; the task
/// gives the permit back unused and ends with the moment it was granted.
fn grant_time(
    q: Arc<RedisQueue>,
    shard: u32,
    reasons: Arc<Mutex<Vec<WaitReason>>>,
) -> tokio::task::JoinHandle<Instant> {
    tokio::spawn(async move {
        let report = move |reason| reasons.lock().expect("lock").push(reason);
        let permit = q.acquire(shard, &report).await;
        let granted = Instant::now();
        permit.release().await;
        granted
    })
}

fn budget(redis: &RedisServer) -> Option<i64> {
    redis.conn().get(Keys::new(APP).budget()).expect("budget")
}

#[tokio::test]
async fn one_identify_per_bucket_per_window_across_pods_lowest_shard_first() {
    let redis = RedisServer::start();
    let rest = CountingRest::start(Answer::Fake).await;
    let window = 300;
    // Three "pods" share the buckets; the epoch hold of the first use lines every waiter up (and
    // then each reads the fake's budget of 1000, as a brand-new Redis has none it can trust).
    let pods: Vec<Arc<RedisQueue>> = (0..3)
        .map(|i| Arc::new(rest.queue_with(&redis, gate(2, window), &format!("pod-{i}"))))
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
    let redis = warm_redis(10).await;
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

/// The PTTL of bucket 0's gate, in ms.
fn gate_pttl(redis: &RedisServer) -> i64 {
    redis.conn().pttl(Keys::new(APP).gate(0)).expect("pttl")
}

#[tokio::test]
async fn a_gate_confirmed_at_the_answer_holds_the_small_margin_one_confirmed_at_the_send_the_send_margin()
 {
    // Window 1,000 ms: the send margin is 100 ms, the answer margin 25 ms.
    let redis = warm_redis(10).await;
    let q = queue(&redis, gate(1, 1000), "pod");
    let in_flight = q.acquire(0, &|_| {}).await.in_flight();
    assert!(gate_pttl(&redis) > 1_100, "in flight: connect_bound");
    in_flight.answered().await;
    let answered = gate_pttl(&redis);
    assert!(
        (1_000..=1_025).contains(&answered),
        "answered: window + 25 ms ({answered} ms)"
    );
    redis
        .conn()
        .del::<_, ()>(Keys::new(APP).gate(0))
        .expect("free the gate");
    // The facade's confirm (and a failed send's): the send margin.
    q.acquire(0, &|_| {}).await.sent().await;
    let sent = gate_pttl(&redis);
    assert!(
        (1_050..=1_100).contains(&sent),
        "sent: window + 100 ms ({sent} ms)"
    );
}

#[tokio::test]
async fn a_released_permit_frees_the_gate_and_returns_the_session_start() {
    let redis = warm_redis(10).await;
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
async fn a_lost_epoch_grants_nothing_while_an_earlier_permit_may_be_used() {
    let redis = RedisServer::start();
    let rest = CountingRest::start(Answer::Fake).await;
    let config = gate(1, 400);
    let bound = config.connect_bound;
    let q = rest.queue_with(&redis, config, "pod");
    // First use: the marker is created and nothing is granted for connect_bound (the longest a
    // permit granted before may still be used, plus a window + margin).
    match q.try_take(0, "a").await.expect("take") {
        Take::Wait {
            reason: WaitReason::Epoch,
            after,
        } => assert_eq!(after, bound),
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(bound).await;
    // The marker's creation dropped any budget it found: it is read again (here, stored).
    assert!(matches!(
        q.try_take(0, "b").await.expect("take"),
        Take::Wait {
            reason: WaitReason::BudgetUnknown,
            ..
        }
    ));
    set_budget(&redis, 10).await;
    assert!(matches!(
        q.try_take(0, "b").await.expect("take"),
        Take::Granted { remaining: 9 }
    ));
    // Redis loses everything (restart without persistence): the gate is gone, yet no Identify
    // is granted for connect_bound.
    let mut conn = redis.conn();
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).expect("flush");
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let r = Arc::clone(&reasons);
    let permit = q
        .acquire(0, &move |reason| r.lock().expect("lock").push(reason))
        .await;
    assert!(
        start.elapsed() >= bound,
        "granted after {:?}",
        start.elapsed()
    );
    assert_eq!(reasons.lock().expect("lock")[0], WaitReason::Epoch);
    permit.sent().await;
}

#[tokio::test]
async fn the_budget_is_spent_atomically_and_never_below_the_reserve() {
    let redis = warm_redis(3).await;
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
    let _: () = conn
        .del(&[Keys::new(APP).budget(), Keys::new(APP).budget_period()])
        .expect("del");
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
    let mut redis = warm_redis(10).await;
    let rest = CountingRest::start(Answer::Fake).await;
    let q = Arc::new(rest.queue_with(&redis, gate(1, 300), "pod"));
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
    // Redis comes back empty: the epoch hold applies, the budget is read from Discord again,
    // then the shard gets its permit.
    let back = Instant::now();
    redis.restart();
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
    let conn = connect(&redis.url(), None).expect("url");
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
    let redis = warm_redis(10).await;
    let q: Arc<dyn IdentifyQueue> = Arc::new(queue(&redis, gate(1, 500), "facade"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let config = http_facade::FacadeConfig {
            total: 2,
            token: None,
        };
        let _ = axum::serve(listener, http_facade::router(q, config)).await;
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
    // The last save holds the long-established epoch and the budget, not what follows.
    let mut redis = saved_redis(10).await;
    let config = gate(1, 1_000);
    let hold = config.hold();
    // After the restart the budget is read from Discord again.
    let rest = CountingRest::start(Answer::Fake).await;
    let q = rest.queue_with(&redis, config, "pod");
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
    let redis = warm_redis(10).await;
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
        self.queue_with(redis, gate(max_concurrency, 300), "pod")
    }

    /// A queue of `config` that reads the budget through this endpoint when Redis has none.
    fn queue_with(&self, redis: &RedisServer, config: GateConfig, pod: &str) -> RedisQueue {
        let conn = connect(&redis.url(), None).expect("redis url");
        let rest = DiscordRest::new(&self.url, Token::new("t")).expect("rest");
        RedisQueue::new(conn, Keys::new(APP), config, pod, Some(rest))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_granted_just_before_redis_lost_its_data_still_gets_its_window() {
    // A shard takes the gate, Redis loses everything, and the shard sends its Identify as late
    // as its permit allows. Another pod's shard of the same bucket asks at once (its budget read
    // from Discord again): its grant must leave a full window + margin after that late send.
    let redis = warm_redis(10).await;
    let config = gate(1, 300);
    let hold = config.hold();
    let old = queue(&redis, config.clone(), "old");
    let permit = old.acquire(0, &|_| {}).await;
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut redis.conn())
        .expect("flush");
    let rest = CountingRest::start(Answer::Fake).await;
    let new = Arc::new(rest.queue_with(&redis, config, "new"));
    let waiter = grant_time(new, 1, Arc::default());
    tokio::time::sleep_until(permit.valid_until() - Duration::from_millis(5)).await;
    assert!(permit.is_valid(), "sent while the permit allows it");
    let sent = Instant::now();
    permit.sent().await;
    let granted = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("a grant after the hold")
        .expect("task");
    assert!(
        granted >= sent + hold,
        "granted {:?} after the old permit's send (window + margin {hold:?})",
        granted.saturating_duration_since(sent)
    );
}

#[tokio::test]
async fn a_restart_from_disk_forgets_the_budget_it_restored() {
    let mut redis = saved_redis(10).await;
    let q = queue(&redis, gate(4, 300), "pod");
    for shard in 0..3 {
        assert!(matches!(
            q.try_take(shard, &format!("o{shard}")).await.expect("take"),
            Take::Granted { .. }
        ));
    }
    // The restart brings back the saved count: three session starts higher than Discord's.
    redis.restart();
    assert_eq!(budget(&redis), Some(10));
    let mut answers = Vec::new();
    for _ in 0..100 {
        // The first call after the restart may meet the old connection (then it reconnects).
        let Ok(take) = q.try_take(3, "after").await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        answers.push(take);
        match take {
            Take::Wait {
                reason: WaitReason::Epoch,
                after,
            } => tokio::time::sleep(after).await,
            _ => break,
        }
    }
    assert!(
        matches!(
            answers.last(),
            Some(Take::Wait {
                reason: WaitReason::BudgetUnknown,
                ..
            })
        ),
        "the restored budget must be read from Discord again: {answers:?}"
    );
}

#[tokio::test]
async fn a_budget_without_discords_word_is_read_again() {
    // A count that sync_budget.lua did not write (by hand, an older worker, anyone who can write
    // the bot's Redis) is not spent from.
    let redis = RedisServer::start();
    settle_epoch(&redis);
    let _: () = redis
        .conn()
        .pset_ex(Keys::new(APP).budget(), 1_000_000, 3_600_000)
        .expect("set");
    let q = queue(&redis, gate(1, 300), "pod");
    assert!(
        matches!(
            q.try_take(0, "a").await.expect("take"),
            Take::Wait {
                reason: WaitReason::BudgetUnknown,
                ..
            }
        ),
        "spent from a count Discord never gave"
    );
    // Read from Discord: never above what it said.
    assert_eq!(q.sync_budget(40, 3_600_000).await.expect("sync"), 40);
    assert!(matches!(
        q.try_take(0, "b").await.expect("take"),
        Take::Granted { remaining: 39 }
    ));
}

#[tokio::test]
async fn a_new_period_starts_from_discords_count_not_the_old_one() {
    let redis = RedisServer::start();
    settle_epoch(&redis);
    // The old period's count, a second before Discord's reset.
    assert_eq!(sync_budget(&redis, 5, 1_000).await, 5);
    // Discord has reset (a full count, 24 h to go) before the old key expired here.
    assert_eq!(
        sync_budget(&redis, 1_000, 86_400_000).await,
        1_000,
        "the old period's count was carried into the new one"
    );
    let pttl: i64 = redis.conn().pttl(Keys::new(APP).budget()).expect("pttl");
    assert!(pttl > 86_000_000, "{pttl}");
    // Within the period Redis still counts first: a later answer never raises it.
    let q = queue(&redis, gate(1, 300), "pod");
    q.acquire(0, &|_| {}).await.sent().await;
    assert_eq!(sync_budget(&redis, 1_000, 86_399_000).await, 999);
}

#[tokio::test]
async fn a_refund_never_raises_the_budget_above_what_discord_last_said() {
    let redis = RedisServer::start();
    settle_epoch(&redis);
    // The period ends in 300 ms; a shard takes the gate just before.
    sync_budget(&redis, 10, 300).await;
    let q = queue(&redis, gate(1, 300), "pod");
    let permit = q.acquire(0, &|_| {}).await;
    assert_eq!(budget(&redis), Some(9));
    let expired = common::scenario::wait_until(Duration::from_secs(5), || async {
        budget(&redis).is_none()
    })
    .await;
    assert!(expired, "the period ended");
    // The new period, as Discord gives it; then the old permit is given back unused.
    sync_budget(&redis, 1_000, 86_400_000).await;
    permit.release().await;
    assert_eq!(
        budget(&redis),
        Some(1_000),
        "a session start of the old period was returned into the new one"
    );
}

#[tokio::test]
async fn a_waiter_that_asked_before_the_send_gets_the_gate_a_hold_after_it() {
    // Shard 1 asks while shard 0's gate still has its first TTL (granted, not yet sent): the
    // send shrinks the gate to a hold from then, so shard 1 must not sleep the first TTL.
    let redis = warm_redis(10).await;
    let config = gate(1, 300);
    let (hold, bound) = (config.hold(), config.connect_bound);
    let q = Arc::new(queue(&redis, config, "pod"));
    let permit = q.acquire(0, &|_| {}).await;
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let waiter = grant_time(Arc::clone(&q), 1, Arc::clone(&reasons));
    let asked = common::scenario::wait_until(Duration::from_secs(5), || async {
        !reasons.lock().expect("lock").is_empty()
    })
    .await;
    assert!(asked, "shard 1 was told to wait");
    permit.sent().await;
    let sent = Instant::now();
    let granted = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("granted")
        .expect("task");
    let after = granted.saturating_duration_since(sent);
    assert!(
        after < hold + (bound - hold) / 2,
        "granted {after:?} after the send (hold {hold:?}, the gate's first TTL {bound:?})"
    );
}
