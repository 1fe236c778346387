//! `rediss://` against a real `redis-server --tls-port` with a CA made for it: the Identify gate
//! taken over TLS with the CA bundle (`REDIS_CA_FILE`), a clear refusal without it, and a real
//! worker process identifying through the TLS Redis, or stopping on a CA file it cannot use.

mod common;

use std::time::Duration;

use common::redis::{Options, RedisServer};
use common::scenario::{Scenario, wait_until};
use common::worker::WorkerProcess;
use redis::Commands;
use shard_worker::identify::IdentifyQueue;
use shard_worker::identify::WaitReason;
use shard_worker::identify::gate::{GateConfig, RedisQueue, connect, settle_epoch_script};
use shardset_contract::redis_tls::CaBundle;
use shardset_contract::{Keys, env};

const APP: u64 = 4343;

fn tls_redis() -> RedisServer {
    RedisServer::start_with(Options {
        tls: true,
        ..Options::default()
    })
}

fn ca(redis: &RedisServer) -> CaBundle {
    CaBundle::read(redis.ca_file().expect("a TLS server")).expect("the fixture's CA")
}

fn queue(redis: &RedisServer, ca: Option<&CaBundle>) -> RedisQueue {
    let conn = connect(&redis.url(), ca).expect("a client");
    RedisQueue::new(
        conn,
        Keys::new(APP),
        GateConfig::new(1, Duration::from_millis(300), 0),
        "pod-tls",
        None,
    )
}

#[tokio::test]
async fn the_gate_is_taken_over_rediss_with_the_ca_bundle() {
    let redis = tls_redis();
    let _: () = settle_epoch_script()
        .key(Keys::new(APP).epoch())
        .invoke(&mut redis.conn())
        .expect("settle the epoch");
    let q = queue(&redis, Some(&ca(&redis)));
    q.sync_budget(1000, 3_600_000)
        .await
        .expect("budget over TLS");
    let permit = tokio::time::timeout(Duration::from_secs(10), q.acquire(0, &|_| {}))
        .await
        .expect("a gate within 10 s");
    permit.sent().await;
    let gate: Option<String> = redis.conn().get(Keys::new(APP).gate(0)).expect("read");
    assert!(gate.is_some(), "the used gate is held in the TLS Redis");
    let budget: Option<i64> = redis.conn().get(Keys::new(APP).budget()).expect("read");
    assert_eq!(budget, Some(999), "one session start spent");
}

#[tokio::test]
async fn without_the_ca_the_server_is_refused_and_no_gate_is_granted() {
    let redis = tls_redis();
    // The compiled-in public roots do not know the fixture's CA.
    let q = queue(&redis, None);
    let error = q
        .sync_budget(1000, 3_600_000)
        .await
        .expect_err("an unknown CA is refused")
        .to_string();
    assert!(error.contains("invalid peer certificate"), "{error}");
    let (tx, mut reasons) = tokio::sync::mpsc::unbounded_channel();
    let report = move |reason| {
        let _ = tx.send(reason);
    };
    let acquire = q.acquire(0, &report);
    tokio::select! {
        _ = acquire => panic!("a gate granted without a trusted Redis"),
        reason = reasons.recv() => assert_eq!(reason, Some(WaitReason::Redis)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_identifies_through_a_tls_redis_with_redis_ca_file() {
    let s = Scenario::start_with_redis(
        fake_discord::Config {
            max_concurrency: 1,
            identify_window_ms: 300,
            heartbeat_interval_ms: 1_000,
            ..Scenario::config()
        },
        Options {
            tls: true,
            ..Options::default()
        },
    )
    .await;
    let ca_file = s.redis.ca_file().expect("TLS").display().to_string();
    let mut spec = s.spec("tls", 0, 1, 2);
    assert!(spec.redis_url.starts_with("rediss://"));
    spec.extra_env
        .push((env::REDIS_CA_FILE.into(), ca_file.clone()));
    let worker = WorkerProcess::start(spec.clone());
    assert!(
        worker.wait_ready(Duration::from_secs(30)).await,
        "ready over rediss://:\n{}",
        worker.log_text()
    );
    assert_eq!(s.identifies(), 2);
    s.assert_no_violations();
    drop(worker);

    // A CA file that is not there stops the start, naming the file.
    spec.pod = "missing-ca".into();
    spec.extra_env = vec![(env::REDIS_CA_FILE.into(), format!("{ca_file}.missing"))];
    let mut missing = WorkerProcess::start(spec);
    let exited = wait_until(Duration::from_secs(20), || {
        let running = missing.running();
        async move { !running }
    })
    .await;
    let log = missing.log_text();
    assert!(exited, "the worker stops:\n{log}");
    assert!(
        log.contains(&format!(
            "cannot read the Redis CA bundle {ca_file}.missing"
        )),
        "{log}"
    );
    assert_eq!(s.identifies(), 2, "no Identify without Redis");
}
