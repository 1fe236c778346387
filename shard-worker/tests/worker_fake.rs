//! Real `shard-worker` processes against the fake Discord and a real redis-server.
//! Each test reads as a scenario and waits on conditions (the fake's logs, `/readyz`), never on
//! fixed sleeps alone.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::collector::Collector;
use common::scenario::{Scenario, wait_until};
use common::worker::WorkerProcess;
use fake_discord::control::{Fault, FaultRequest, LoadSettings, Target};

const READY: Duration = Duration::from_secs(30);

fn fault(fault: Fault, shard: u32) -> FaultRequest {
    FaultRequest {
        fault,
        target: Target {
            shard: Some(shard),
            ..Target::default()
        },
    }
}

fn set_load(s: &Scenario, rate: u32) {
    s.fake.state().load.send_replace(LoadSettings {
        rate,
        payload_bytes: 256,
        dm_percent: 0,
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_every_session_to_the_replacement() {
    let s = Scenario::start(4, 300, 1_000).await;
    let collector = Collector::default();
    let (forward_url, _server) = collector.start().await;
    let mut spec = s.spec("old", 0, 3, 4);
    spec.forward_url = Some(forward_url);
    let mut old = WorkerProcess::start(spec.clone());
    assert!(
        old.wait_ready(READY).await,
        "old worker ready:\n{}",
        old.log_text()
    );
    set_load(&s, 400);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let identifies = s.identifies();
    assert_eq!(identifies, 4);

    assert_eq!(
        old.terminate(Duration::from_secs(20)).await,
        Some(0),
        "clean exit"
    );
    let log = old.log_text();
    assert!(
        !log.contains("test-token-do-not-log"),
        "the token never reaches the logs"
    );
    spec.pod = "new".into();
    let new = WorkerProcess::start(spec);
    assert!(
        new.wait_ready(READY).await,
        "new worker ready:\n{}",
        new.log_text()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    set_load(&s, 0);

    assert_eq!(
        s.identifies(),
        identifies,
        "no new Identify: every session was resumed"
    );
    for shard in 0..4 {
        let session = s.live_session(shard).expect("live session");
        assert!(session.resumes >= 1, "shard {shard} resumed: {session:?}");
    }
    // Every dispatch of every session reached the forward endpoint exactly once, in order.
    let settled = wait_until(Duration::from_secs(10), || async {
        let seen = collector.snapshot();
        (0..4).all(|shard| {
            let last = s.live_session(shard).map(|x| x.seq).unwrap_or(0);
            seen.iter()
                .filter(|f| f.shard == shard)
                .map(|f| f.seq)
                .max()
                == Some(last)
        })
    })
    .await;
    assert!(settled, "the forward endpoint caught up");
    let mut by_shard: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for f in collector.snapshot() {
        by_shard.entry(f.shard).or_default().push(f.seq);
    }
    for (shard, seqs) in by_shard {
        let expected: Vec<u64> = (1..=*seqs.last().expect("some")).collect();
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected, "shard {shard}: no gap, no duplicate");
        assert_eq!(seqs, expected, "shard {shard}: in order");
        assert!(
            seqs.len() > 50,
            "shard {shard} saw load ({} dispatches)",
            seqs.len()
        );
    }
    s.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_injected_fault_recovers_as_the_rules_say() {
    let s = Scenario::start(4, 300, 1_000).await;
    let worker = WorkerProcess::start(s.spec("faults", 0, 3, 4));
    assert!(
        worker.wait_ready(READY).await,
        "ready:\n{}",
        worker.log_text()
    );

    // (fault, shard, whether the session survives)
    let cases = [
        (Fault::Reconnect, 0, true),
        (Fault::InvalidSession { resumable: true }, 1, true),
        (Fault::InvalidSession { resumable: false }, 2, false),
        (Fault::Zombie { enabled: true }, 3, true),
        (
            Fault::Close {
                code: 4000,
                reason: None,
            },
            0,
            true,
        ),
        (
            Fault::Close {
                code: 4009,
                reason: None,
            },
            1,
            false,
        ),
        (Fault::Drop, 2, true),
    ];
    for (f, shard, survives) in cases {
        let before = s.live_session(shard).expect("live before");
        let identifies = s.accepted_identifies(shard);
        assert_eq!(
            s.fake.state().inject(&fault(f.clone(), shard)),
            1,
            "{f:?} reached shard {shard}"
        );
        let recovered = wait_until(Duration::from_secs(20), || async {
            let Some(now) = s.live_session(shard) else {
                return false;
            };
            if survives {
                now.session_id == before.session_id && now.resumes > before.resumes
            } else {
                now.session_id != before.session_id
            }
        })
        .await;
        assert!(
            recovered,
            "{f:?} on shard {shard}: recovered\n{}",
            worker.log_text()
        );
        let expected = identifies + usize::from(!survives);
        assert_eq!(
            s.accepted_identifies(shard),
            expected,
            "{f:?}: Identifies of shard {shard}"
        );
        assert!(worker.wait_ready(READY).await, "{f:?}: ready again");
    }
    s.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_failed_stops_the_shard_without_retrying() {
    let s = Scenario::start(1, 200, 1_000).await;
    let worker = WorkerProcess::start(s.spec("fatal", 0, 1, 2));
    assert!(worker.wait_ready(READY).await);
    let connections = s.fake.state().counters().connections_total;
    s.fake.state().inject(&fault(
        Fault::Close {
            code: 4004,
            reason: None,
        },
        1,
    ));
    assert!(
        worker
            .wait_readyz(Duration::from_secs(10), |code, body| code == 503
                && body.contains("shard 1: fatal (authentication failed (4004)"))
            .await,
        "shard 1 reports why it stopped"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        s.fake.state().counters().connections_total,
        connections,
        "no reconnect after 4004"
    );
    assert!(s.live_session(0).is_some(), "the other shard keeps running");
    s.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_identify_while_redis_is_down_and_recovery_once_it_is_back() {
    let mut s = Scenario::start(2, 300, 1_000).await;
    let worker = WorkerProcess::start(s.spec("outage", 0, 3, 4));
    assert!(
        worker.wait_ready(READY).await,
        "ready:\n{}",
        worker.log_text()
    );
    s.redis.stop();
    // Shard 2 loses its session and needs a new Identify: it must wait for the gate.
    let identifies = s.identifies();
    s.fake
        .state()
        .inject(&fault(Fault::InvalidSession { resumable: false }, 2));
    // A resumable loss still recovers without Redis (no gate needed).
    s.fake.state().inject(&fault(Fault::Reconnect, 1));
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(s.identifies(), identifies, "no Identify without the gate");
    assert!(
        s.live_session(1).is_some_and(|x| x.resumes >= 1),
        "resumes need no Redis"
    );
    assert!(
        s.live_session(0).is_some() && s.live_session(3).is_some(),
        "live sessions keep running"
    );
    assert!(
        worker
            .wait_readyz(Duration::from_secs(5), |code, body| code == 503
                && body.contains("redis unreachable"))
            .await,
        "the shard says why it waits"
    );

    s.redis.restart();
    assert!(
        worker.wait_ready(READY).await,
        "recovered once Redis is back:\n{}",
        worker.log_text()
    );
    assert_eq!(s.accepted_identifies(2), 2);
    s.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_workers_start_together_without_a_violation() {
    let s = Scenario::start(4, 250, 5_000).await;
    let workers: Vec<WorkerProcess> = (0..4)
        .map(|i| WorkerProcess::start(s.spec(&format!("pod-{i}"), i * 4, i * 4 + 3, 16)))
        .collect();
    for w in &workers {
        assert!(
            w.wait_ready(Duration::from_secs(60)).await,
            "{} ready:\n{}",
            w.spec.pod,
            w.log_text()
        );
    }
    if !s.fake.state().violations().is_empty() {
        for w in &workers {
            eprintln!("--- {}\n{}", w.spec.pod, w.log_text());
        }
        eprintln!("{:#?}", s.fake.state().identifies());
    }
    s.assert_no_violations();
    assert_eq!(
        s.identifies(),
        16,
        "one Identify per shard: {:#?}\n{}",
        s.fake.state().identifies(),
        workers
            .iter()
            .map(|w| w.log_text())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Status records for the operator.
    let mut conn = s.redis.conn();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("shardset:*:status:16:*")
        .query(&mut conn)
        .expect("keys");
    assert_eq!(keys.len(), 16, "{keys:?}");
}
