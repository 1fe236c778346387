//! Real `shard-worker` processes against the fake Discord and a real redis-server.
//! Each test reads as a scenario and waits on conditions (the fake's logs, `/readyz`), never on
//! fixed sleeps alone.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::collector::Collector;
use common::scenario::{Scenario, wait_until};
use common::worker::WorkerProcess;
use fake_discord::control::{Fault, FaultRequest, Target};
use shardset_contract::{Keys, env};

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
    s.set_load(400);
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
    s.set_load(0);

    s.assert_resumed(0..4, identifies);
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
    assert!(
        wait_until(Duration::from_secs(20), || async {
            s.live_session(1).is_some_and(|x| x.resumes >= 1)
        })
        .await,
        "resumes need no Redis"
    );
    // Shard 2 reconnected and stands at the gate, which it cannot take without Redis.
    assert!(
        worker
            .wait_readyz(Duration::from_secs(20), |code, body| code == 503
                && body.contains("shard 2: waiting_for_gate (redis unreachable)"))
            .await,
        "the shard says why it waits"
    );
    assert_eq!(s.identifies(), identifies, "no Identify without the gate");
    // Live sessions run on until their leases could expire; then they stand down (closed
    // resumably: self-fencing), each waiting for its lease.
    assert!(
        worker
            .wait_readyz(Duration::from_secs(30), |code, body| code == 503
                && [0, 1, 3].iter().all(
                    |shard| body.contains(&format!("shard {shard}: waiting_for_lease"))
                ))
            .await,
        "the shards stood down without their leases"
    );
    assert!(
        [0, 1, 3]
            .iter()
            .all(|&shard| s.live_session(shard).is_none()),
        "no live session without a lease"
    );

    // Redis comes back empty (no persistence): no record to resume from, so the shards resume
    // the sessions they still hold in memory. Only shard 2 (op 9 false) identifies again.
    s.redis.restart();
    assert!(
        worker.wait_ready(READY).await,
        "recovered once Redis is back:\n{}",
        worker.log_text()
    );
    assert_eq!(s.accepted_identifies(2), 2);
    assert_eq!(s.identifies(), identifies + 1, "the others resumed");
    for shard in [0, 1, 3] {
        assert!(
            s.live_session(shard).is_some_and(|x| x.resumes >= 1),
            "shard {shard} resumed"
        );
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_reaches_the_logs_even_at_trace_level() {
    let s = Scenario::start(1, 200, 1_000).await;
    let mut spec = s.spec("trace", 0, 0, 1);
    // Every target at trace, the WebSocket library's by name too.
    spec.extra_env.push((
        "RUST_LOG".into(),
        "trace,tungstenite=trace,tokio_tungstenite=trace".into(),
    ));
    let mut worker = WorkerProcess::start(spec);
    assert!(
        worker.wait_ready(READY).await,
        "ready:\n{}",
        worker.log_text()
    );
    // A Resume carries the token too.
    s.fake.state().inject(&fault(Fault::Reconnect, 0));
    assert!(
        wait_until(Duration::from_secs(20), || async {
            s.live_session(0).is_some_and(|x| x.resumes >= 1)
        })
        .await,
        "resumed"
    );
    assert_eq!(worker.terminate(Duration::from_secs(20)).await, Some(0));
    let log = worker.log_text();
    assert!(log.contains("TRACE"), "trace level is on:\n{log}");
    assert!(
        !log.contains("test-token-do-not-log"),
        "the token is in the log:\n{}",
        log.lines()
            .filter(|l| l.contains("test-token-do-not-log"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_closed_for_good_are_not_identified_again_by_a_restarted_pod() {
    // The bot may not use GUILD_MEMBERS: every Identify asking for it is closed with 4014.
    let s = Scenario::start_with(fake_discord::Config {
        max_concurrency: 2,
        identify_window_ms: 200,
        heartbeat_interval_ms: 1_000,
        privileged_intents: 0,
        ..Scenario::config()
    })
    .await;
    let mut spec = s.spec("intents", 0, 1, 2);
    spec.extra_env
        .push((env::DISCORD_INTENTS.into(), (513 | 1 << 1).to_string()));
    let fatal = |code: u16, body: &str| {
        code == 503
            && (0..2).all(|shard| {
                body.contains(&format!("shard {shard}: fatal (disallowed intents (4014)"))
            })
    };
    let mut first = WorkerProcess::start(spec.clone());
    assert!(
        first.wait_readyz(READY, fatal).await,
        "both shards fatal:\n{}",
        first.log_text()
    );
    assert_eq!(s.identifies(), 2, "one Identify per shard");
    // The process stays up (no crash loop): live, not ready, until SIGTERM.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(first.running(), "still running:\n{}", first.log_text());
    let healthz = reqwest::get(format!("http://{}/healthz", first.listen))
        .await
        .expect("healthz");
    assert_eq!(healthz.status(), 200);
    // The pod is restarted (crash, eviction, reschedule): the new process reads the markers
    // and does not spend another session start.
    drop(first);
    let second = WorkerProcess::start(spec.clone());
    assert!(
        second.wait_readyz(READY, fatal).await,
        "fatal again, from the markers:\n{}",
        second.log_text()
    );
    assert_eq!(s.identifies(), 2, "no Identify after the restart");
    let mut conn = s.redis.conn();
    let keys = Keys::new(s.fake.state().config.application_id);
    let marker: String = redis::Commands::get(&mut conn, keys.fatal(2, 0)).expect("marker");
    assert!(marker.contains("4014"), "{marker}");
    let ttl: i64 = redis::Commands::pttl(&mut conn, keys.fatal(2, 0)).expect("pttl");
    assert!(ttl > 3_600_000, "kept for the budget period: {ttl} ms");
    // Clearing the marker (as the operator does when the ShardSet changes) lets it try again.
    let _: () = redis::Commands::del(&mut conn, keys.fatal(2, 1)).expect("del");
    assert!(
        wait_until(Duration::from_secs(30), || async {
            s.fake
                .state()
                .identifies()
                .iter()
                .filter(|i| i.shard == 1)
                .count()
                >= 2
        })
        .await,
        "shard 1 identified again once its marker was gone:\n{}",
        second.log_text()
    );
    assert_eq!(s.identifies(), 3, "shard 0 still holds back");
    // Shard 1 was closed again, by the gateway, in this process: its configuration is the one
    // Discord refused, so it stays down even when the marker goes (the operator clears markers
    // for a NEW configuration, which the replacement pod has; a retry here would mark it again).
    assert!(
        wait_until(Duration::from_secs(10), || async {
            redis::Commands::exists::<_, bool>(&mut s.redis.conn(), keys.fatal(2, 1))
                .expect("exists")
        })
        .await,
        "marked again"
    );
    let _: () = redis::Commands::del(&mut conn, keys.fatal(2, 1)).expect("del");
    tokio::time::sleep(Duration::from_secs(7)).await; // more than a marker poll
    assert_eq!(
        s.identifies(),
        3,
        "no retry of a shard refused in this process"
    );
    // A pod with other intents (the fix for 4014) is not held back by the markers.
    drop(second);
    let fixed = WorkerProcess::start(s.spec("intents", 0, 1, 2));
    assert!(
        fixed.wait_ready(READY).await,
        "ready with allowed intents:\n{}",
        fixed.log_text()
    );
    assert_eq!(s.identifies(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_asking_for_heartbeats_cannot_push_the_worker_past_the_send_limit() {
    let s = Scenario::start(1, 200, 1_000).await;
    let worker = WorkerProcess::start(s.spec("op1", 0, 0, 1));
    assert!(
        worker.wait_ready(READY).await,
        "ready:\n{}",
        worker.log_text()
    );
    let session = s.live_session(0).expect("live").session_id;
    // 300 requests for a heartbeat in a burst: answering each would be 300 commands in a minute.
    for _ in 0..300 {
        s.fake.state().inject(&fault(Fault::HeartbeatRequest, 0));
    }
    let before = s.fake.state().counters().heartbeats;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            s.fake.state().counters().heartbeats >= before + 50
        })
        .await,
        "requests are answered while there is room"
    );
    // Two regular beats later the connection is still the same and within the limit.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    s.assert_no_violations();
    assert_eq!(
        s.live_session(0).map(|x| (x.session_id, x.resumes)),
        Some((session, 0)),
        "never closed with 4008"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_from_redis_stands_down_before_its_replacement_resumes() {
    let s = Scenario::start(1, 200, 1_000).await;
    // Worker A reaches Redis through a relay the test can cut (a partition of that pod only).
    let relay = common::cutter::Cutter::start(s.redis.port).await;
    let mut spec = s.spec("a", 0, 1, 2);
    spec.redis_url = relay.url();
    let a = WorkerProcess::start(spec);
    assert!(a.wait_ready(READY).await, "a ready:\n{}", a.log_text());
    let sessions: Vec<String> = (0..2)
        .map(|shard| s.live_session(shard).expect("live").session_id)
        .collect();
    s.set_load(100);
    tokio::time::sleep(Duration::from_secs(3)).await; // checkpoints of a moving seq
    relay.cut();
    // A cannot renew its leases any more: it lets its sessions go (resumable) before the
    // leases expire, and says why.
    assert!(
        a.wait_readyz(Duration::from_secs(20), |code, body| code == 503
            && body.contains("shard 0: waiting_for_lease")
            && body.contains("shard 1: waiting_for_lease"))
            .await,
        "a stood down:\n{}",
        a.log_text()
    );
    assert!(
        (0..2).all(|shard| s.live_session(shard).is_none()),
        "no live session left to a pod without its lease"
    );
    // The replacement takes the leases once they expired and resumes the same sessions.
    let b = WorkerProcess::start(s.spec("b", 0, 1, 2));
    assert!(b.wait_ready(READY).await, "b ready:\n{}", b.log_text());
    let resumes: Vec<u32> = (0..2)
        .map(|shard| {
            let live = s.live_session(shard).expect("live");
            assert_eq!(
                live.session_id, sessions[shard as usize],
                "resumed, not identified"
            );
            live.resumes
        })
        .collect();
    // A does not take them back while it cannot reach Redis (before: it resumed each session
    // the moment the fake moved it to B, and the two pods took turns).
    tokio::time::sleep(Duration::from_secs(5)).await;
    for shard in 0..2 {
        let live = s.live_session(shard).expect("live");
        assert_eq!(
            live.resumes, resumes[shard as usize],
            "shard {shard} stayed with b"
        );
    }
    assert_eq!(s.identifies(), 2, "no Identify spent");
    s.set_load(0);
    s.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_dispatches_count_as_handled_only_once_the_endpoint_took_them() {
    let s = Scenario::start(1, 200, 1_000).await;
    // The endpoint stalls: it accepts connections but answers nothing.
    let collector = Collector::default();
    let stall = collector.stall();
    let (forward_url, _server) = collector.start().await;
    let mut spec = s.spec("fwd", 0, 0, 1);
    spec.forward_url = Some(forward_url);
    let first = WorkerProcess::start(spec.clone());
    assert!(
        first.wait_ready(READY).await,
        "ready:\n{}",
        first.log_text()
    );
    s.set_load(100);
    // The worker reads on (the queue has room for ~10 s of this) and checkpoints every 2 s.
    assert!(
        wait_until(Duration::from_secs(20), || async {
            s.live_session(0).is_some_and(|x| x.seq > 300)
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.set_load(0);
    // The pod crashes; the endpoint recovers; the replacement resumes from the checkpoint.
    drop(first);
    stall.send_replace(false);
    let second = WorkerProcess::start(spec);
    assert!(
        second.wait_ready(READY).await,
        "ready:\n{}",
        second.log_text()
    );
    let last = s.live_session(0).expect("live").seq;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            collector.snapshot().iter().any(|f| f.seq == last)
        })
        .await,
        "the endpoint caught up"
    );
    let mut seen: Vec<u64> = collector.snapshot().iter().map(|f| f.seq).collect();
    seen.sort_unstable();
    seen.dedup();
    // Seq 1 is READY, which a resume never replays (Discord does not either): it reached the
    // stalled endpoint's queue only. Every later dispatch must arrive.
    let missing: Vec<u64> = (2..=last)
        .filter(|q| seen.binary_search(q).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "{} dispatches never reached the endpoint (first {:?})",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_max_concurrency_override_that_does_not_divide_discords_is_refused() {
    let s = Scenario::start(4, 200, 1_000).await;
    let mut spec = s.spec("mc", 0, 1, 2);
    spec.max_concurrency = Some(3);
    let mut worker = WorkerProcess::start(spec);
    assert!(
        worker
            .wait_readyz(READY, |code, body| code == 503
                && body.contains("shard 0: fatal (MAX_CONCURRENCY=3 does not divide")
                && body.contains("shard 1: fatal (MAX_CONCURRENCY=3 does not divide"))
            .await,
        "a clear refusal:\n{}",
        worker.log_text()
    );
    assert!(worker.running(), "no crash loop");
    assert_eq!(s.identifies(), 0, "no Identify under a wrong bucket map");
    // The operator reads the refusal from the shard status records.
    let keys = Keys::new(s.fake.state().config.application_id);
    let status = wait_until(Duration::from_secs(10), || async {
        let json: Option<String> =
            redis::Commands::get(&mut s.redis.conn(), keys.status(2, 1)).expect("get");
        json.is_some_and(|j| j.contains("\"fatal\"") && j.contains("does not divide"))
    })
    .await;
    assert!(status, "P:status says why");
}
