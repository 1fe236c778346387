//! The hand-over protocol (`docs/resharding.md`) with real worker processes, the fake Discord
//! and a real redis-server. The test plays the operator's part (writes `P:active-layout`, waits
//! for every shard's acknowledgement and for `W`), two layouts run side by side under a steady
//! synthetic load, and the fake's reply log proves that every message was answered exactly once.
//! This is the fastest proof of the claim phase; `tests/e2e/tests/reshard_*.rs` repeat it on kind
//! with the operator driving.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::bus::Bus;
use common::cutter::Cutter;
use common::roles::Roles;
use common::scenario::{Scenario, wait_until};
use common::worker::{WorkerProcess, WorkerSpec};
use fake_discord::control::{Fault, FaultRequest, Target};
use redis::Commands;
use shardset_contract::{Keys, Role, ShardState, ShardStatus, env};

const READY: Duration = Duration::from_secs(30);
/// `W` of these scenarios. The fake delivers an event to both layouts within milliseconds, but a
/// debug build answering every message through REST on a busy 2-core machine lags behind the
/// load by up to a second; `W` must cover the whole difference between the two layouts'
/// *handling* of an event, lag included.
const WINDOW_MS: u64 = 2_500;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// A replying worker of shards `first..=last` of `total` with this scenario's `W`.
fn replier(s: &Scenario, pod: &str, first: u32, last: u32, total: u32) -> WorkerSpec {
    let mut spec = s.spec(pod, first, last, total);
    spec.extra_args.push("--reply-to-messages".into());
    spec.extra_env
        .push((env::HANDOVER_WINDOW_MS.into(), WINDOW_MS.to_string()));
    spec
}

/// The protocol's own wait (not a synchronisation): `W` after the acknowledgements.
async fn wait_window() {
    tokio::time::sleep(Duration::from_millis(WINDOW_MS)).await;
}

/// The operator's `W` wait as `docs/resharding.md` ("What bounds W") has it: `W` during which
/// every shard of `layouts` keeps up (its status record READY, not behind) and none lapsed; the
/// countdown does not run while one does not, and starts again when one lapsed. Returns how many
/// times the countdown started again.
async fn wait_window_kept_up(roles: &mut Roles, layouts: &[u32]) -> u32 {
    let window = Duration::from_millis(WINDOW_MS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut restarts = 0;
    let mut counting: Option<(tokio::time::Instant, Vec<u64>)> = None;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "every shard keeps up for W within 90 s"
        );
        let records: Vec<Option<ShardStatus>> = layouts
            .iter()
            .flat_map(|&total| (0..total).map(move |shard| (total, shard)))
            .map(|(total, shard)| roles.status(total, shard))
            .collect();
        let all_keep_up = records
            .iter()
            .all(|r| r.as_ref().is_some_and(ShardStatus::keeping_up));
        let lapses: Vec<u64> = records
            .iter()
            .map(|r| r.as_ref().map_or(0, |r| r.lapses))
            .collect();
        counting = match counting {
            Some((since, mark)) if all_keep_up && mark == lapses => {
                if since.elapsed() >= window {
                    return restarts;
                }
                Some((since, mark))
            }
            Some(_) => {
                restarts += 1;
                all_keep_up.then(|| (tokio::time::Instant::now(), lapses))
            }
            None => all_keep_up.then(|| (tokio::time::Instant::now(), lapses)),
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The fake's `delay` fault: it holds each batch of frames to a connection this long, so that
/// layout receives every event 200–400 ms after the other (well below `W`).
const SKEW_MS: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_over_acts_on_every_message_exactly_once_with_the_new_layout_late() {
    hand_over(Some(8), None, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_over_acts_on_every_message_exactly_once_with_a_new_layout_shard_held_off_for_2_w() {
    // Issue 11, item 8: one shard of the new layout is closed with 4000 while both layouts claim,
    // and cannot reconnect for 2 W; the W countdown waits for it and starts again.
    hand_over(None, None, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_over_acts_on_every_message_exactly_once_with_the_old_layout_late() {
    hand_over(Some(4), None, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_over_publishes_every_message_to_the_bus_exactly_once() {
    // Publishing is acting: the standby layout publishes nothing, the claiming ones only what
    // they claimed (with the content id), and the stream holds each message once.
    let bus = Bus::start();
    hand_over(Some(8), Some(&bus), false).await;
}

/// Delays every frame to the sessions of layout `total` by `ms` (0 ends the delay).
fn delay_layout(s: &Scenario, total: u32, ms: u64) {
    let affected = s.fake.state().inject(&FaultRequest {
        fault: Fault::Delay { ms },
        target: Target {
            num_shards: Some(total),
            ..Target::default()
        },
    });
    assert_eq!(
        affected, total,
        "one connection per shard of layout {total}"
    );
}

/// Layout 4 (one worker) hands over to layout 8 (one worker) under load, with the frames of
/// `late` (if any) delayed so the two layouts see each event [`SKEW_MS`] apart: the case the
/// back-fill and the `W` waits exist for. With `bus`, both layouts also publish to it. With
/// `hold_off`, the new layout's shard 7 runs in a process of its own behind a relay, and once both
/// layouts claim it is closed with 4000 and its reconnects refused for 2 W; the `W` waits are then
/// the operator's (they wait for every shard to keep up).
async fn hand_over(late: Option<u32>, bus: Option<&Bus>, hold_off: bool) {
    // Heartbeats every 3 s: a debug build answering every message through REST on a busy
    // 2-core machine can hold a shard's loop long enough to miss a 1 s heartbeat.
    let s = Scenario::start(16, 100, 3_000).await;
    let mut roles = Roles::new(&s);
    let spec = |pod: &str, last: u32, total: u32| {
        let mut spec = replier(&s, pod, 0, last, total);
        if let Some(bus) = bus {
            spec.extra_env.extend(bus.env(&[]));
        }
        spec
    };
    let mut old = WorkerProcess::start(spec("old", 3, 4));
    assert!(
        old.wait_ready(READY).await,
        "old layout:\n{}",
        old.log_text()
    );
    if late == Some(4) {
        delay_layout(&s, 4, SKEW_MS);
    }

    s.set_load(150);
    let since = now_ms();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Standby: the new layout connects beside the old one, acting on nothing.
    roles.write(&[(4, Role::Active), (8, Role::Standby)]);
    let relay = Cutter::start(s.fake.addr().port()).await;
    let mut relay_kept = None;
    let mut held = hold_off.then(|| {
        let mut held = spec("new-held", 7, 8);
        held.first = 7;
        // The fake answers with a gateway URL on the host it was asked at: the relay's.
        held.api_url = format!("http://127.0.0.1:{}/api", relay.port);
        WorkerProcess::start(held)
    });
    let mut new = WorkerProcess::start(spec("new", if hold_off { 6 } else { 7 }, 8));
    assert!(
        new.wait_ready(READY).await,
        "new layout:\n{}",
        new.log_text()
    );
    if let Some(held) = &held {
        assert!(held.wait_ready(READY).await, "{}", held.log_text());
    }
    if late == Some(8) {
        delay_layout(&s, 8, SKEW_MS);
    }
    assert!(
        roles.acked(4).await && roles.acked(8).await,
        "standby acked"
    );
    wait_window().await;
    // The old layout claims (after back-filling what it acted on), then the new one too.
    roles.write(&[(4, Role::Claiming), (8, Role::Standby)]);
    assert!(roles.acked(4).await, "old layout claiming");
    roles.write(&[(4, Role::Claiming), (8, Role::Claiming)]);
    assert!(roles.acked(8).await, "new layout claiming");
    if hold_off {
        let held_for = Duration::from_millis(2 * WINDOW_MS);
        relay.refuse();
        let closed = s.fake.state().inject(&FaultRequest {
            fault: Fault::Close {
                code: 4000,
                reason: None,
            },
            target: Target {
                shard: Some(7),
                num_shards: Some(8),
                ..Target::default()
            },
        });
        assert_eq!(closed, 1, "shard 7 of layout 8 closed with 4000");
        let started = tokio::time::Instant::now();
        let heal = tokio::spawn(async move {
            tokio::time::sleep(held_for).await;
            relay.heal();
            relay
        });
        let restarts = wait_window_kept_up(&mut roles, &[4, 8]).await;
        let waited = started.elapsed();
        eprintln!("W waited {waited:?} for the held shard, restarted {restarts} times");
        assert!(
            waited >= held_for + Duration::from_millis(WINDOW_MS),
            "W ran only once the held shard kept up again: {waited:?}"
        );
        // Kept until the end: dropping the relay would cut the held shard's connection again.
        relay_kept = Some(heal.await.expect("relay"));
        roles.write(&[(4, Role::Retired), (8, Role::Claiming)]);
        assert!(roles.acked(4).await, "old layout retired");
        wait_window_kept_up(&mut roles, &[4, 8]).await;
    } else {
        wait_window().await;
        roles.write(&[(4, Role::Retired), (8, Role::Claiming)]);
        assert!(roles.acked(4).await, "old layout retired");
        wait_window().await;
    }
    roles.write(&[(4, Role::Retired), (8, Role::Active)]);
    assert!(roles.acked(8).await, "new layout active");

    if let Some(total) = late {
        // The fake reads a client's close frame only after the frames it holds back.
        delay_layout(&s, total, 0);
    }
    let old_metrics = old.metrics().await;
    assert_eq!(old.terminate(Duration::from_secs(20)).await, Some(0));
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.set_load(0);
    let until = now_ms();

    // Every message of the whole run (before, during and after the hand-over) got its reply...
    let answered = wait_until(Duration::from_secs(20), || async {
        s.fake.state().replies_report(since, until).none == 0
    })
    .await;
    // ...and once the new layout stopped, nothing more can arrive: the counts are final.
    let new_metrics = new.metrics().await;
    assert_eq!(new.terminate(Duration::from_secs(20)).await, Some(0));
    if let Some(held) = &mut held {
        assert_eq!(held.terminate(Duration::from_secs(20)).await, Some(0));
    }
    drop(relay_kept);
    let report = s.fake.state().replies_report(since, until);
    eprintln!("replies: {report:?}");
    assert!(answered, "unanswered messages: {report:?}");
    assert!(report.messages > 600, "the load ran: {report:?}");
    assert_eq!(report.multiple, 0, "answered twice: {report:?}");
    assert_eq!(report.exactly_once, report.messages, "{report:?}");

    // Both layouts took part in the claim phase, and the old one back-filled.
    let backfill = metric(&old_metrics, "shardset_worker_handover_backfill_total");
    let old_won = metric(
        &old_metrics,
        "shardset_worker_handover_claims_total{reason=\"won\"}",
    );
    let new_won = metric(
        &new_metrics,
        "shardset_worker_handover_claims_total{reason=\"won\"}",
    );
    let lost = metric(
        &new_metrics,
        "shardset_worker_handover_claims_total{reason=\"lost\"}",
    ) + metric(
        &old_metrics,
        "shardset_worker_handover_claims_total{reason=\"lost\"}",
    );
    eprintln!("backfill {backfill}, old won {old_won}, new won {new_won}, lost {lost}");
    assert!(backfill > 0.0, "back-fill on entering claiming");
    assert!(old_won > 0.0 && new_won > 0.0, "both layouts won claims");
    assert!(
        lost > 0.0,
        "the later layout lost the claims the earlier one won"
    );

    // The retired layout ended its sessions (1000) and left no session records behind.
    let sessions: Vec<String> = roles
        .conn
        .keys(roles.keys.pattern("session:4"))
        .expect("keys");
    assert!(sessions.is_empty(), "retired session records: {sessions:?}");
    let ended = wait_until(Duration::from_secs(5), || async {
        s.fake
            .state()
            .sessions()
            .iter()
            .filter(|x| x.num_shards == 4)
            .all(|x| !x.connected && x.resumable_until_ms.is_none())
    })
    .await;
    assert!(
        ended,
        "the old layout's sessions ended (not resumable): {:#?}",
        s.fake.state().sessions()
    );
    assert_eq!(
        s.identifies(),
        4 + 8,
        "one Identify per shard of each layout"
    );
    s.assert_no_violations();
    if let Some(bus) = bus {
        assert_published_once(
            bus,
            since,
            until,
            report.messages,
            &old_metrics,
            &new_metrics,
        )
        .await;
    }
}

/// The stream holds every user message of `[since, until)` (`messages` of them) exactly once,
/// and no message twice; the standby layout withheld what it received, and each layout lost
/// claims to the other.
async fn assert_published_once(
    bus: &Bus,
    since: u64,
    until: u64,
    messages: u64,
    old_metrics: &str,
    new_metrics: &str,
) {
    #[derive(serde::Deserialize)]
    struct Message {
        id: String,
        #[serde(default)]
        author: Option<Author>,
    }
    #[derive(serde::Deserialize)]
    struct Author {
        #[serde(default)]
        bot: bool,
    }
    let stored = bus.stored().await;
    let mut ids = std::collections::HashMap::<u64, u32>::new();
    let mut content_ids = 0;
    for m in &stored {
        assert!(
            m.msg_id.starts_with("s:") || m.msg_id.starts_with("c:"),
            "{m:?}"
        );
        if m.msg_id.starts_with("c:") {
            content_ids += 1;
        }
        if m.event != "MESSAGE_CREATE" {
            continue;
        }
        let message: Message = serde_json::from_slice(&m.data).expect("a message");
        if message.author.is_some_and(|a| a.bot) {
            continue;
        }
        *ids.entry(message.id.parse().expect("snowflake"))
            .or_default() += 1;
    }
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "messages stored twice: {twice:?}");
    let in_period = ids
        .keys()
        .filter(|id| (since..until).contains(&fake_discord::snowflake::timestamp_ms(**id)))
        .count() as u64;
    let withheld = |text: &str, reason: &str| {
        common::metrics::total_with(
            text,
            "shardset_bus_withheld_total",
            &format!("reason=\"{reason}\""),
        )
    };
    let standby = withheld(new_metrics, "not_acting");
    let lost = withheld(old_metrics, "claim_lost") + withheld(new_metrics, "claim_lost");
    eprintln!(
        "bus: {} events stored ({content_ids} with content ids), {in_period} of {messages} messages of the period, each once; the standby layout withheld {standby}, claims lost {lost}",
        stored.len()
    );
    assert_eq!(in_period, messages, "every message of the period stored");
    assert!(standby > 0.0, "the standby layout published nothing");
    assert!(content_ids > 0 && lost > 0.0, "both layouts claimed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_active_layouts_answer_twice_and_the_count_shows_it() {
    // The negative control of the test above: without the protocol (both layouts active), the
    // same measurement finds doubles; and a layout the document does not name acts on nothing.
    let s = Scenario::start(16, 100, 1_000).await;
    let mut roles = Roles::new(&s);
    roles.write(&[(2, Role::Active), (4, Role::Active)]);
    let a = WorkerProcess::start(replier(&s, "a", 0, 1, 2));
    let b = WorkerProcess::start(replier(&s, "b", 0, 3, 4));
    let c = WorkerProcess::start(replier(&s, "c", 0, 0, 1));
    for w in [&a, &b, &c] {
        assert!(w.wait_ready(READY).await, "{}", w.log_text());
    }
    assert!(roles.acked(2).await && roles.acked(4).await && roles.acked(1).await);
    s.set_load(200);
    let since = now_ms();
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.set_load(0);
    let until = now_ms();
    let doubled = wait_until(Duration::from_secs(10), || async {
        let r = s.fake.state().replies_report(since, until);
        r.none == 0 && r.multiple == r.messages
    })
    .await;
    let report = s.fake.state().replies_report(since, until);
    assert!(
        doubled,
        "every message answered by both named layouts: {report:?}"
    );
    assert!(report.messages > 50);
    assert_eq!(
        report.replies,
        2 * report.messages,
        "layout 1 (not named) never replied: {report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_roles_document_keeps_the_last_role_until_the_operator_writes_it_again() {
    // Mid-reshard, layout 1 is on standby. Redis then loses P:active-layout: "no document"
    // must not read as "every layout acts" for a worker that has seen the roles.
    let mut s = Scenario::start(1, 200, 1_000).await;
    let worker = WorkerProcess::start(s.spec("roles", 0, 0, 1));
    assert!(worker.wait_ready(READY).await, "{}", worker.log_text());
    let mut roles = Roles::new(&s);
    roles.write(&[(1, Role::Standby), (2, Role::Active)]);
    assert!(roles.acked(1).await, "standby applied");
    let role = |metrics: &str, role: &str| {
        metric(
            metrics,
            &format!("shardset_worker_layout_role{{role=\"{role}\"}}"),
        )
    };
    let gone = |times: usize| {
        let worker = &worker;
        async move {
            // Either the worker noticed and kept its role, or (the bug) it turned active.
            wait_until(Duration::from_secs(10), || async {
                worker.log_text().matches("layout roles are gone").count() >= times
                    || role(&worker.metrics().await, "active") == 1.0
            })
            .await
        }
    };

    // The key is deleted (a flush, a failover that lost it).
    let _: () = s
        .redis
        .conn()
        .del(Keys::new(s.fake.state().config.application_id).active_layout())
        .expect("del");
    assert!(gone(1).await, "{}", worker.log_text());
    let metrics = worker.metrics().await;
    assert_eq!(role(&metrics, "standby"), 1.0, "{metrics}");
    assert_eq!(role(&metrics, "active"), 0.0, "{metrics}");

    // Written again, then Redis restarts empty (no persistence).
    roles.write(&[(1, Role::Standby), (2, Role::Active)]);
    assert!(roles.acked(1).await, "standby applied again");
    s.redis.restart();
    assert!(gone(2).await, "{}", worker.log_text());
    let metrics = worker.metrics().await;
    assert_eq!(role(&metrics, "standby"), 1.0, "{metrics}");
    assert_eq!(role(&metrics, "active"), 0.0, "{metrics}");

    // The operator writes the roles again (from a fresh revision): they apply.
    let mut roles = Roles::new(&s);
    roles.write(&[(1, Role::Active)]);
    assert!(roles.acked(1).await, "acknowledged after the loss");
    let metrics = worker.metrics().await;
    assert_eq!(role(&metrics, "active"), 1.0, "{metrics}");
    assert_eq!(role(&metrics, "standby"), 0.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_reported_and_the_process_waits_for_sigterm() {
    let bot_id = Scenario::config().application_id;
    let id_segment = base64_of(&bot_id.to_string());
    let s = Scenario::start_with(fake_discord::Config {
        token: Some(format!("{id_segment}.right.signature")),
        max_concurrency: 16,
        identify_window_ms: 100,
        ..Scenario::config()
    })
    .await;
    let mut spec = s.spec("refused", 0, 1, 2);
    // Same bot id, wrong secret: Discord answers 401.
    spec.extra_env.push((
        env::DISCORD_TOKEN.into(),
        format!("{id_segment}.wrong.signature"),
    ));
    let mut worker = WorkerProcess::start(spec);
    assert!(
        worker
            .wait_readyz(READY, |code, body| code == 503
                && body.contains("shard 0: fatal (invalid token (401))")
                && body.contains("shard 1: fatal (invalid token (401))"))
            .await,
        "every shard reports the refused token:\n{}",
        worker.log_text()
    );
    let mut conn = s.redis.conn();
    let keys = Keys::new(bot_id);
    let reported = wait_until(Duration::from_secs(10), || {
        let json: Option<String> = conn.get(keys.status(2, 1)).unwrap_or(None);
        let status = json.and_then(|j| serde_json::from_str::<ShardStatus>(&j).ok());
        async move {
            status.is_some_and(|s| {
                s.state == ShardState::Fatal && s.reason.as_deref() == Some("invalid token (401)")
            })
        }
    })
    .await;
    assert!(reported, "P:status says why");
    let metrics = worker.metrics().await;
    assert!(
        metrics.contains("shardset_worker_shard_state{shard=\"0\",state=\"fatal\"} 1"),
        "{metrics}"
    );
    let healthz = reqwest::get(format!("http://{}/healthz", worker.listen))
        .await
        .expect("healthz");
    assert_eq!(healthz.status().as_u16(), 200, "the process itself is fine");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(worker.running(), "no exit, so no crash loop");
    assert_eq!(s.identifies(), 0, "no Identify attempt");
    assert_eq!(worker.terminate(Duration::from_secs(10)).await, Some(0));
    assert!(
        !worker.log_text().contains("wrong.signature"),
        "token never logged"
    );
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(text)
}
