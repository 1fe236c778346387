//! The twilight-compatible Identify queue facade (`--queue-listen`) of a real `shard-worker`
//! process, against the fake Discord and a real redis-server. Every `200` it answers spends a
//! session start, so it admits only shard ids of its layout, one waiting request per shard, and,
//! with `QUEUE_TOKEN` set, only requests that carry it as a bearer token.

mod common;

use std::time::Duration;

use common::scenario::Scenario;
use common::worker::WorkerProcess;
use redis::Commands;
use shardset_contract::Keys;

const TOKEN: &str = "facade-secret";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_facade_admits_only_its_shards_one_request_each_with_the_token() {
    let s = Scenario::start(1, 300, 1_000).await;
    let facade = format!("127.0.0.1:{}", free_port());
    let mut spec = s.spec("facade", 0, 1, 2);
    spec.extra_args = vec!["--queue-listen".into(), facade.clone()];
    spec.extra_env = vec![("QUEUE_TOKEN".into(), TOKEN.into())];
    let worker = WorkerProcess::start(spec);
    assert!(
        worker.wait_ready(Duration::from_secs(30)).await,
        "worker ready:\n{}",
        worker.log_text()
    );
    let budget = || -> i64 {
        let keys = Keys::new(s.fake.state().config.application_id);
        s.redis.conn().get(keys.budget()).expect("budget")
    };
    let before = budget();
    let http = reqwest::Client::new();
    let ask = |shard: &str, token: Option<&str>| {
        let mut request = http.get(format!("http://{facade}/?shard={shard}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.timeout(Duration::from_secs(10)).send()
    };
    let status = |r: reqwest::Result<reqwest::Response>| r.map(|r| r.status().as_u16());

    assert_eq!(status(ask("0", None).await).ok(), Some(401), "no token");
    assert_eq!(
        status(ask("0", Some("guess")).await).ok(),
        Some(401),
        "a wrong token"
    );
    assert_eq!(
        status(ask("2", Some(TOKEN)).await).ok(),
        Some(400),
        "shard 2 of a layout of 2"
    );
    assert_eq!(status(ask("4294967295", Some(TOKEN)).await).ok(), Some(400));
    assert_eq!(status(ask("x", Some(TOKEN)).await).ok(), Some(400));
    assert_eq!(budget(), before, "refused requests spend nothing");

    // Two requests for one shard at once: one permit, the other is refused at once.
    let (first, second) = tokio::join!(ask("1", Some(TOKEN)), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        ask("1", Some(TOKEN)).await
    });
    let mut statuses = [status(first).ok(), status(second).ok()];
    statuses.sort();
    assert_eq!(statuses, [Some(200), Some(409)]);
    assert_eq!(budget(), before - 1, "one session start for one 200");
    let log = worker.log_text();
    assert!(!log.contains(TOKEN), "the facade's token is never logged");
}
