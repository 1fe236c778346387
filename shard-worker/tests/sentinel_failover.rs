//! Redis you can lose a node of (issue 15): 8 shards in 4 real `shard-worker` processes, their
//! Redis a primary, a replica and three sentinels (`redis+sentinel://`), the fake Discord
//! sending a steady message load. Half the shards are told to Identify again (op 9, not
//! resumable) and at once the primary is failed over (`SENTINEL FAILOVER`, the replica promoted
//! whatever it lacks) and then killed; afterwards every shard Identifies again through the
//! promoted primary. What must hold:
//! - **0 violations** of Discord's rules (the fake's report), never two live sessions of a shard;
//! - the shards not told to Identify **stay up** on their connection through the failover, the
//!   others are back live;
//! - **no handled event lost**: every dispatch the fake wrote reaches the handler (the forward
//!   endpoint, by session and seq);
//! - the promoted replica is another server process: the take-gate script's epoch marker
//!   notices and **holds the gates** (`identify_waits_total{reason="redis_epoch_hold"}`);
//! - well under a minute of wall time.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::collector::Collector;
use common::metrics::total_with;
use common::scenario::{Scenario, wait_until};
use common::worker::{WorkerProcess, WorkerSpec};
use fake_discord::control::{Fault, FaultRequest, Target};
use redis_test_server::sentinel::SentinelTopology;

const SHARDS: u32 = 8;
const PER_WORKER: u32 = 2;
/// Messages a second over all shards.
const LOAD: u32 = 80;
/// A shard back live after its op 9, through a failover.
const RECOVERY: Duration = Duration::from_secs(30);

/// Each shard's live connection now.
fn live(s: &Scenario) -> BTreeMap<u32, Option<u64>> {
    (0..SHARDS)
        .filter_map(|shard| s.live_session(shard).map(|l| (shard, l.connection)))
        .collect()
}

/// Waits until every shard is live, each of `moved` on another connection than in `before`.
async fn wait_recovered(s: &Scenario, before: &BTreeMap<u32, Option<u64>>, moved: &[u32]) -> bool {
    wait_until(RECOVERY, || {
        let now = live(s);
        let done = now.len() == SHARDS as usize
            && moved
                .iter()
                .all(|shard| now.get(shard) != before.get(shard));
        async move { done }
    })
    .await
}

/// op 9 (not resumable) to each shard of `shards`.
fn invalidate(s: &Scenario, shards: &[u32]) {
    for &shard in shards {
        let reached = s.fake.state().inject(&FaultRequest {
            fault: Fault::InvalidSession { resumable: false },
            target: Target {
                shard: Some(shard),
                num_shards: Some(SHARDS),
                ..Target::default()
            },
        });
        assert_eq!(reached, 1, "op 9 reached shard {shard}");
    }
}

fn spec(s: &Scenario, index: u32, redis_url: &str, forward_url: &str) -> WorkerSpec {
    let mut spec = s.forwarding_worker(
        &format!("sentinel-{index}"),
        index,
        PER_WORKER,
        SHARDS,
        forward_url,
    );
    redis_url.clone_into(&mut spec.redis_url);
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_identify_pressure_breaks_no_rule_and_loses_nothing() {
    let started = tokio::time::Instant::now();
    let mut topology = tokio::task::spawn_blocking(SentinelTopology::start)
        .await
        .expect("the topology");
    // The scenario's own redis-server stays unused: the workers are given the sentinels.
    let s = Scenario::start(2, 250, 2_000).await;
    let collector = Collector::default();
    let (forward_url, _server) = collector.start().await;
    let redis_url = topology.url();
    let mut workers: Vec<WorkerProcess> = (0..SHARDS / PER_WORKER)
        .map(|index| WorkerProcess::start(spec(&s, index, &redis_url, &forward_url)))
        .collect();
    for w in &workers {
        assert!(w.wait_ready(RECOVERY).await, "{}", w.log_text());
    }
    s.set_load(LOAD);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 1. Half the shards Identify while the primary is failed over, then killed.
    let before = live(&s);
    let moved = [0, 2, 4, 6];
    invalidate(&s, &moved);
    let topology_back = tokio::task::spawn_blocking(move || {
        topology.failover();
        topology.kill_old_primary();
        topology
    });
    topology = topology_back.await.expect("the failover");
    let failed_over = started.elapsed();
    assert!(
        wait_recovered(&s, &before, &moved).await,
        "after the failover, every shard live: {:#?}",
        s.fake.state().sessions()
    );
    let after = live(&s);
    for shard in [1, 3, 5, 7] {
        assert_eq!(
            after.get(&shard),
            before.get(&shard),
            "shard {shard} stayed up on its connection through the failover"
        );
    }

    // 2. Every shard Identifies through the promoted primary.
    let before = live(&s);
    let shards: Vec<u32> = (0..SHARDS).collect();
    invalidate(&s, &shards);
    assert!(
        wait_recovered(&s, &before, &shards).await,
        "after op 9 to every shard, every shard live: {:#?}",
        s.fake.state().sessions()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.set_load(0);

    // Everything written to a socket reaches the handler: op 9 comes after, in order, what
    // was written to its session.
    let history = s.fake.state().session_history();
    let owed: Vec<(String, u64)> = history
        .iter()
        .flat_map(|h| (1..=h.written_seq).map(move |seq| (h.session_id.clone(), seq)))
        .collect();
    let seen = |collector: &Collector| -> HashSet<(String, u64)> {
        collector
            .snapshot()
            .into_iter()
            .map(|f| (f.session_id.unwrap_or_default(), f.seq))
            .collect()
    };
    let caught_up = wait_until(Duration::from_secs(20), || {
        let seen = seen(&collector);
        let done = owed.iter().all(|k| seen.contains(k));
        async move { done }
    })
    .await;
    let seen = seen(&collector);
    let missing: Vec<&(String, u64)> = owed.iter().filter(|k| !seen.contains(*k)).collect();
    let mut epoch_holds = 0.0;
    for w in &workers {
        epoch_holds += total_with(
            &w.metrics().await,
            "shardset_worker_identify_waits_total",
            "reason=\"redis_epoch_hold\"",
        );
    }
    eprintln!(
        "sentinel failover: {} sessions, {} dispatches owed, {} missing, {} identifies, \
         {epoch_holds} epoch-hold waits, failed over at {failed_over:?}, all done at {:?}",
        history.len(),
        owed.len(),
        missing.len(),
        s.identifies(),
        started.elapsed()
    );
    for w in &mut workers {
        assert_eq!(
            w.terminate(Duration::from_secs(20)).await,
            Some(0),
            "{}",
            w.log_text()
        );
    }

    s.assert_no_violations();
    s.assert_no_overlaps();
    let lost: Vec<_> = missing.iter().take(10).collect();
    assert!(
        caught_up && lost.is_empty(),
        "{} dispatches lost, e.g. {lost:?}",
        missing.len()
    );
    assert!(owed.len() > 500, "the load ran: {} dispatches", owed.len());
    assert_eq!(
        s.identifies(),
        (SHARDS as usize) * 2 + moved.len(),
        "an Identify per shard at start, per op 9 and after the last op 9"
    );
    assert!(
        epoch_holds >= 1.0,
        "the promoted replica's other run_id held the gates"
    );
    assert_eq!(
        topology.primary_port(),
        Some(topology.replica.port),
        "the sentinels name the promoted replica"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "under a minute: {:?}",
        started.elapsed()
    );
}
