//! Gate hand-offs without polling, against a real redis-server: two "pods" (queues with their
//! own subscription to `P:gate-events`) share one bucket; the waiter asks again as soon as a
//! gate is released unused, not when the PTTL it saw ends, and a sent gate still passes a
//! window + margin after the send.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::redis::RedisServer;
use shard_worker::identify::gate::{GateConfig, RedisQueue, client, connect, settle_epoch_script};
use shard_worker::identify::{IdentifyQueue, WaitReason};
use shardset_contract::Keys;
use tokio::time::Instant;

const APP: u64 = 4343;
/// Hold 1,100 ms (the margin at a scaled window is 100 ms), first TTL 3,100 ms.
const WINDOW_MS: u64 = 1_000;

/// A redis-server that has run a while (no epoch hold), with a budget stored.
async fn warm_redis() -> RedisServer {
    let redis = RedisServer::start();
    let _: () = settle_epoch_script()
        .key(Keys::new(APP).epoch())
        .invoke(&mut redis.conn())
        .expect("settle the epoch");
    pod(&redis, "budget", false)
        .sync_budget(100, 3_600_000)
        .await
        .expect("budget");
    redis
}

/// A pod's queue, one bucket; `listening`: with its hand-off subscription.
fn pod(redis: &RedisServer, name: &str, listening: bool) -> RedisQueue {
    let config = GateConfig::new(1, Duration::from_millis(WINDOW_MS), 0);
    let conn = connect(&redis.url(), None).expect("redis url");
    let queue = RedisQueue::new(conn, Keys::new(APP), config, name, None);
    if listening {
        queue.with_wakeups(client(&redis.url(), None).expect("redis url"))
    } else {
        queue
    }
}

/// Waits until `n` processes subscribe to the bot's gate channel (the subscription is made in
/// the background).
async fn subscribed(redis: &RedisServer, n: i64) {
    let channel = Keys::new(APP).gate_events();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, count): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query::<Vec<(String, i64)>>(&mut redis.conn())
            .expect("numsub")
            .pop()
            .expect("one channel");
        if count >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{count} of {n} subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Shard 1 waits on `waiter` while shard 0 (on `holder`) holds the gate; returns the task, which
/// ends with the moment of its grant and the waits it reported.
fn wait_behind(waiter: Arc<RedisQueue>) -> tokio::task::JoinHandle<(Instant, Vec<WaitReason>)> {
    tokio::spawn(async move {
        let reasons = Arc::new(Mutex::new(Vec::new()));
        let r = Arc::clone(&reasons);
        let permit = waiter
            .acquire(1, &move |reason| r.lock().expect("lock").push(reason))
            .await;
        let granted = Instant::now();
        permit.release().await;
        let reasons = reasons.lock().expect("lock").clone();
        (granted, reasons)
    })
}

/// A gate given back unused passes to the waiter at once, though the PTTL it saw was the gate's
/// first TTL (capped at a hold, 1,100 ms): a polling waiter would sleep all of it.
async fn released_gate_handed_off_after(listening: bool) -> Duration {
    let redis = warm_redis().await;
    let holder = pod(&redis, "holder", listening);
    let waiter = Arc::new(pod(&redis, "waiter", listening));
    if listening {
        subscribed(&redis, 2).await;
    }
    let permit = holder.acquire(0, &|_| {}).await;
    let task = wait_behind(Arc::clone(&waiter));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let released = Instant::now();
    permit.release().await;
    let (granted, reasons) = task.await.expect("waiter");
    assert_eq!(reasons.first(), Some(&WaitReason::Gate), "{reasons:?}");
    granted - released
}

#[tokio::test]
async fn a_released_gate_passes_to_the_waiter_at_once() {
    let after = released_gate_handed_off_after(true).await;
    assert!(
        after < Duration::from_millis(100),
        "granted {after:?} after"
    );
}

#[tokio::test]
async fn without_the_subscription_the_waiter_sleeps_its_pttl() {
    // The same scenario polling: what the hand-off saves (and proof the test above can fail).
    let after = released_gate_handed_off_after(false).await;
    assert!(
        after > Duration::from_millis(700),
        "granted {after:?} after"
    );
}

#[tokio::test]
async fn a_sent_gate_passes_a_hold_after_the_send() {
    let redis = warm_redis().await;
    let holder = pod(&redis, "holder", true);
    let waiter = Arc::new(pod(&redis, "waiter", true));
    subscribed(&redis, 2).await;
    let hold = holder.config().hold();
    let permit = holder.acquire(0, &|_| {}).await;
    let task = wait_behind(Arc::clone(&waiter));
    // The waiter saw the first TTL (3,100 ms, slept as a hold): the send comes 400 ms after the
    // grant, so it asks once more before the gate frees, then takes it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    permit.sent().await;
    let sent = Instant::now();
    let (granted, reasons) = task.await.expect("waiter");
    let after = granted - sent;
    assert!(
        after >= hold - Duration::from_millis(5),
        "the window runs from the send: granted {after:?} after it"
    );
    assert!(
        after < hold + Duration::from_millis(60),
        "handed off at the gate's end: {after:?} after the send (hold {hold:?})"
    );
    assert!(
        reasons.iter().all(|r| *r == WaitReason::Gate),
        "{reasons:?}"
    );
}
