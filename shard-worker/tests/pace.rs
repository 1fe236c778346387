//! A worker process reports in its shards' status records whether they keep up, against the fake
//! Discord and a real redis-server (`docs/resharding.md`, "What bounds W"): a shard closed with
//! 4000 counts one lapse more once it resumed, a layout whose frames arrive late (the fake's
//! `delay` fault, longer than the lag bound `W / 2`) is reported behind until it catches up, and
//! the dispatch age histograms show both ages by layout.

mod common;

use std::time::Duration;

use common::metrics::sample;
use common::scenario::{Scenario, wait_until};
use common::worker::WorkerProcess;
use fake_discord::control::{Fault, FaultRequest, Target};
use redis::Commands;
use shardset_contract::{Keys, ShardState, ShardStatus, env};

const READY: Duration = Duration::from_secs(30);
/// `W` of this scenario: the lag bound is half of it, 1.5 s.
const WINDOW_MS: u64 = 3_000;
/// Longer than the lag bound: every message arrives this much after the fake created it.
const DELAY_MS: u64 = 2_000;

fn statuses(conn: &mut redis::Connection, keys: &Keys, total: u32) -> Vec<Option<ShardStatus>> {
    (0..total)
        .map(|shard| {
            let json: Option<String> = conn.get(keys.status(total, shard)).expect("read status");
            json.and_then(|j| serde_json::from_str(&j).ok())
        })
        .collect()
}

fn keeping_up(records: &[Option<ShardStatus>]) -> bool {
    records
        .iter()
        .all(|r| r.as_ref().is_some_and(ShardStatus::keeping_up))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_records_report_lapses_and_a_late_layout() {
    let s = Scenario::start(16, 100, 5_000).await;
    let keys = Keys::new(s.fake.state().config.application_id);
    let mut conn = s.redis.conn();
    let mut spec = s.spec("pace", 0, 3, 4);
    spec.extra_env
        .push((env::HANDOVER_WINDOW_MS.into(), WINDOW_MS.to_string()));
    let worker = WorkerProcess::start(spec);
    assert!(worker.wait_ready(READY).await, "{}", worker.log_text());
    s.set_load(40);

    // Steady: every shard keeps up, and none lapsed (starting is not falling behind).
    let steady = wait_until(Duration::from_secs(10), || async {
        keeping_up(&statuses(&mut s.redis.conn(), &keys, 4))
    })
    .await;
    let before = statuses(&mut conn, &keys, 4);
    assert!(steady, "{before:?}");
    assert!(before.iter().flatten().all(|r| r.lapses == 0), "{before:?}");

    // Shard 1 closed with 4000: it resumes, and its record counts the lapse.
    let identifies = s.identifies();
    let affected = s.fake.state().inject(&FaultRequest {
        fault: Fault::Close {
            code: 4000,
            reason: None,
        },
        target: Target {
            shard: Some(1),
            num_shards: Some(4),
            ..Target::default()
        },
    });
    assert_eq!(affected, 1);
    let lapsed = wait_until(Duration::from_secs(15), || async {
        let records = statuses(&mut s.redis.conn(), &keys, 4);
        keeping_up(&records) && records[1].as_ref().is_some_and(|r| r.lapses >= 1)
    })
    .await;
    let after = statuses(&mut conn, &keys, 4);
    assert!(lapsed, "{after:?}");
    s.assert_resumed([1], identifies);
    for shard in [0, 2, 3] {
        assert_eq!(
            after[shard].as_ref().map(|r| r.lapses),
            Some(0),
            "{after:?}"
        );
    }

    // Every frame of the layout held back past the lag bound: the messages are handled later
    // than that after Discord created them, and the records say so, with how late.
    let delay = |ms| {
        s.fake.state().inject(&FaultRequest {
            fault: Fault::Delay { ms },
            target: Target {
                num_shards: Some(4),
                ..Target::default()
            },
        })
    };
    assert_eq!(delay(DELAY_MS), 4);
    let behind = wait_until(Duration::from_secs(15), || async {
        statuses(&mut s.redis.conn(), &keys, 4)
            .iter()
            .flatten()
            .any(|r| {
                r.state == ShardState::Ready && r.behind_ms.is_some_and(|ms| ms >= WINDOW_MS / 2)
            })
    })
    .await;
    let late = statuses(&mut conn, &keys, 4);
    assert!(behind, "{late:?}");
    // Caught up: every shard keeps up again, one lapse more for those that fell behind.
    assert_eq!(delay(0), 4);
    let caught_up = wait_until(Duration::from_secs(15), || async {
        keeping_up(&statuses(&mut s.redis.conn(), &keys, 4))
    })
    .await;
    let last = statuses(&mut conn, &keys, 4);
    assert!(caught_up, "{last:?}");
    let lapses = |r: &Option<ShardStatus>| r.as_ref().map_or(0, |r| r.lapses);
    assert!(
        last.iter().zip(&after).any(|(l, a)| lapses(l) > lapses(a)),
        "a late shard lapsed: {after:?} → {last:?}"
    );

    // The ages by layout: from arrival, and from creation (messages carry it), the latter
    // seeing the delay.
    let metrics = worker.metrics().await;
    let count = |since: &str| {
        sample(
            &metrics,
            &format!(
                "shardset_worker_dispatch_age_seconds_count{{layout=\"4\",since=\"{since}\"}}"
            ),
        )
        .unwrap_or_default()
    };
    assert!(count("received") > 0.0, "{metrics}");
    assert!(count("created") > 0.0, "{metrics}");
    // Observations above 1.024 s: the count less the bucket `le="1.024"`.
    let slow = |since: &str| {
        let within = metrics
            .lines()
            .filter(|l| l.starts_with("shardset_worker_dispatch_age_seconds_bucket{"))
            .filter(|l| l.contains("layout=\"4\"") && l.contains(&format!("since=\"{since}\"")))
            .find(|l| l.contains("le=\"1.024\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_default();
        count(since) - within
    };
    assert!(
        slow("created") > 0.0,
        "messages handled > 1 s after creation: {metrics}"
    );
    s.set_load(0);
    s.assert_no_violations();
}
