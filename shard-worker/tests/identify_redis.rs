//! The Redis Identify protocol against a real redis-server: windows per bucket measured from the
//! send, lower shard ids first, the epoch hold after data loss, the budget and its reserve,
//! released permits, leases, failing closed while Redis is away, and the HTTP facade.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::redis::RedisServer;
use redis::Commands;
use shard_worker::contract::Keys;
use shard_worker::identify::records::{Lease, Records};
use shard_worker::identify::redis::{GateConfig, RedisQueue, Take, connect};
use shard_worker::identify::{IdentifyQueue, WaitReason, http_facade};
use tokio::time::Instant;

const APP: u64 = 4242;

fn gate(max_concurrency: u32, window_ms: u64) -> GateConfig {
    GateConfig::new(max_concurrency, Duration::from_millis(window_ms), 0)
}

fn queue(redis: &RedisServer, config: GateConfig, pod: &str) -> RedisQueue {
    let conn = connect(&redis.url()).expect("redis url");
    RedisQueue::new(conn, Keys::new(APP), config, pod, None)
}

/// Creates the epoch marker in the past so that tests do not wait for the first-use hold.
fn settle_epoch(redis: &RedisServer) {
    let mut conn = redis.conn();
    let _: () = conn.set(Keys::new(APP).epoch(), 0).expect("set epoch");
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
        records.claim_lease(3, "a", ttl).await.expect("claim"),
        Lease::Held
    );
    assert_eq!(
        records.claim_lease(3, "a", ttl).await.expect("renew"),
        Lease::Held
    );
    assert!(
        matches!(records.claim_lease(3, "b", ttl).await.expect("claim"), Lease::Taken { pttl } if pttl > Duration::from_secs(9))
    );
    assert!(
        !records.release_lease(3, "b").await.expect("release"),
        "only the owner releases"
    );
    assert!(records.release_lease(3, "a").await.expect("release"));
    assert_eq!(
        records.claim_lease(3, "b", ttl).await.expect("claim"),
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
    shard_worker::rest::install_crypto_provider();
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
