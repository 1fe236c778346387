//! A shard's health as operators see it: the worker's metrics of closes, invalid sessions and
//! the last signs of life, and a silent (zombie) connection noticed and resumed in place. Real
//! `shard-worker` processes against the fake Discord (real WebSockets) and a real redis-server.

mod common;

use std::time::Duration;

use common::metrics::sample;
use common::scenario::{Scenario, wait_until};
use common::worker::WorkerProcess;
use fake_discord::control::{Fault, FaultRequest, Target};
use shardset_contract::env;

const READY: Duration = Duration::from_secs(30);

fn on_shard(fault: Fault, shard: u32) -> FaultRequest {
    FaultRequest {
        fault,
        target: Target {
            shard: Some(shard),
            ..Target::default()
        },
    }
}

fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_invalid_sessions_and_last_signs_of_life_are_counted_per_shard() {
    let s = Scenario::start(2, 300, 1_000).await;
    let worker = WorkerProcess::start(s.spec("metrics", 0, 1, 2));
    assert!(
        worker.wait_ready(READY).await,
        "ready:\n{}",
        worker.log_text()
    );
    let closes_4000 = r#"shardset_worker_gateway_closes_total{shard="0",code="4000"}"#;
    let resume_refused = r#"shardset_worker_invalid_sessions_total{shard="0",after="resume"}"#;

    // A close 4000 (resumable) on shard 0: counted with its code, the session resumed.
    let before = s.live_session(0).expect("live before");
    let close = Fault::Close {
        code: 4000,
        reason: None,
    };
    assert_eq!(s.fake.state().inject(&on_shard(close, 0)), 1);
    let resumed = wait_until(READY, || async {
        s.live_session(0)
            .is_some_and(|now| now.session_id == before.session_id && now.resumes > before.resumes)
    })
    .await;
    assert!(resumed, "shard 0 resumed:\n{}", worker.log_text());
    let text = worker.metrics().await;
    assert_eq!(sample(&text, closes_4000), Some(1.0), "{text}");
    assert_eq!(sample(&text, resume_refused), None, "no op 9 yet");

    // The fake forgets every session and closes every connection with 4000 (as Discord may
    // after an outage): each shard's Resume gets op 9, counted as `after="resume"`, and the
    // shards identify anew.
    let sessions: Vec<String> = (0..2)
        .map(|shard| s.live_session(shard).expect("live").session_id)
        .collect();
    s.fake.state().reset();
    let identified = wait_until(READY, || async {
        (0..2).all(|shard| {
            s.live_session(shard)
                .is_some_and(|now| now.session_id != sessions[shard as usize])
        })
    })
    .await;
    assert!(identified, "both identified anew:\n{}", worker.log_text());
    let text = worker.metrics().await;
    assert_eq!(sample(&text, closes_4000), Some(2.0), "{text}");
    for shard in 0..2 {
        let series = |after| {
            format!(r#"shardset_worker_invalid_sessions_total{{shard="{shard}",after="{after}"}}"#)
        };
        assert_eq!(sample(&text, &series("resume")), Some(1.0), "{text}");
        assert_eq!(sample(&text, &series("identify")), None, "{text}");
    }

    // Both shards heartbeat (1 s here) and received dispatches (READY, GUILD_CREATE): the
    // timestamps are recent Unix times.
    let acked = wait_until(Duration::from_secs(5), || async {
        let text = worker.metrics().await;
        (0..2).all(|shard| {
            let ack = sample(
                &text,
                &format!(
                    r#"shardset_worker_last_heartbeat_ack_timestamp_seconds{{shard="{shard}"}}"#
                ),
            );
            ack.is_some_and(|at| (unix_seconds() - at).abs() < 5.0)
        })
    })
    .await;
    assert!(
        acked,
        "heartbeat ACK timestamps:\n{}",
        worker.metrics().await
    );
    let text = worker.metrics().await;
    for shard in 0..2 {
        let dispatch = sample(
            &text,
            &format!(r#"shardset_worker_last_dispatch_timestamp_seconds{{shard="{shard}"}}"#),
        )
        .expect("a dispatch timestamp");
        assert!(
            (unix_seconds() - dispatch).abs() < 30.0,
            "shard {shard}: {dispatch}"
        );
    }
    s.assert_no_violations();
}

/// Waits until `shard`'s session on the fake was resumed once more than `before`; returns how
/// long that took.
async fn resumed_after(
    s: &Scenario,
    shard: u32,
    before: u32,
    timeout: Duration,
) -> Option<Duration> {
    let started = tokio::time::Instant::now();
    wait_until(timeout, || async {
        s.live_session(shard)
            .is_some_and(|now| now.resumes > before)
    })
    .await
    .then(|| started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_noticed_and_resumed_in_place_without_an_identify() {
    // Heartbeats every second: a shard is closed at most (GATEWAY_SILENT_BEATS + 1) intervals
    // after its last ACK, then resumed at once.
    let interval = Duration::from_secs(1);
    let slack = Duration::from_secs(2);
    let s = Scenario::start(2, 300, 1_000).await;
    let default_beats = WorkerProcess::start(s.spec("silent-default", 0, 0, 2));
    let mut spec = s.spec("silent-two", 1, 1, 2);
    spec.extra_env
        .push((env::GATEWAY_SILENT_BEATS.into(), "2".into()));
    let two_beats = WorkerProcess::start(spec);
    for worker in [&default_beats, &two_beats] {
        assert!(
            worker.wait_ready(READY).await,
            "ready:\n{}",
            worker.log_text()
        );
    }
    // Dispatches flow on both shards throughout.
    s.set_load(50);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let identifies = s.identifies();

    // The fake's `delay` holds shard 0's connection still (no dispatch, no ACK) for 30 s.
    let before = s.live_session(0).expect("shard 0 live").resumes;
    assert_eq!(
        s.fake
            .state()
            .inject(&on_shard(Fault::Delay { ms: 30_000 }, 0)),
        1
    );
    let took = resumed_after(&s, 0, before, READY).await;
    eprintln!("delay on shard 0 (GATEWAY_SILENT_BEATS=1): resumed after {took:?}");
    assert!(
        took.is_some_and(|t| t <= interval * 2 + slack),
        "shard 0 resumed within 2 intervals ({took:?}):\n{}",
        default_beats.log_text()
    );

    // A zombie on shard 1 (dispatches go on, ACKs do not): with GATEWAY_SILENT_BEATS=2 it is
    // given two heartbeats, and closed at the third.
    let before = s.live_session(1).expect("shard 1 live").resumes;
    assert_eq!(
        s.fake
            .state()
            .inject(&on_shard(Fault::Zombie { enabled: true }, 1)),
        1
    );
    let took = resumed_after(&s, 1, before, READY).await;
    eprintln!("zombie on shard 1 (GATEWAY_SILENT_BEATS=2): resumed after {took:?}");
    assert!(
        took.is_some_and(|t| t >= interval && t <= interval * 3 + slack),
        "shard 1 resumed after 2 to 3 intervals ({took:?}):\n{}",
        two_beats.log_text()
    );

    for (worker, shard) in [(&default_beats, 0), (&two_beats, 1)] {
        assert!(worker.wait_ready(READY).await, "shard {shard} ready again");
        let text = worker.metrics().await;
        assert_eq!(
            sample(
                &text,
                &format!(r#"shardset_worker_silent_connections_total{{shard="{shard}"}}"#)
            ),
            Some(1.0),
            "{text}"
        );
        assert!(
            worker.log_text().contains("silent connection"),
            "shard {shard}: the log says why it reconnected"
        );
    }
    s.set_load(0);
    assert_eq!(
        s.identifies(),
        identifies,
        "no Identify spent: both resumed"
    );
    s.assert_no_violations();
}
