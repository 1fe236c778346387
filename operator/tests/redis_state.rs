//! The operator's Redis use against a real redis-server: reading the workers' shard status
//! records, a password-protected Redis, deleting every key of a bot (and only that bot's),
//! an unreachable Redis failing fast and staying parked instead of slowing every reconcile, the
//! layout roles written by compare-and-set (and read with the acks), a hand-over's `W` countdown
//! held and restarted on the pace the workers' status records report, and the fatal markers
//! cleared on a new token or new intents, and a fresh bot's epoch settled before its first pods
//! (and left to the workers' hold when any key of theirs exists).

use std::time::{Duration, Instant};

use redis::Commands;
use redis_test_server::{Options, RedisServer};
use shardset_contract::redis_tls::CaBundle;
use shardset_contract::{Keys, LayoutRoles, Role, ShardState, ShardStatus};
use shardset_operator::crd::ReshardStrategy;
use shardset_operator::plan::{ObservedPod, ShardRange};
use shardset_operator::redis_state::{
    BotOwner, Cleaned, FreshEpoch, RedisPool, RedisTarget, summarize,
};
use shardset_operator::reshard::decide::decide;
use shardset_operator::reshard::decision::Inputs;
use shardset_operator::reshard::views::views;

/// The ShardSet the tests clean up for.
const OWNER: &str = "bots/bot";

/// A connection to `server`, with its password when it has one.
fn connect(server: &RedisServer, password: Option<&str>) -> redis::Connection {
    let url = match password {
        Some(p) => format!("redis://:{p}@127.0.0.1:{}/", server.port),
        None => server.url(),
    };
    redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("connect")
}

/// `url` with `password`, no CA bundle.
fn password_target<'a>(url: &'a str, password: &'a str) -> RedisTarget<'a> {
    RedisTarget {
        url,
        password: Some(password),
        ca: None,
    }
}

fn with_password(password: &str) -> RedisServer {
    RedisServer::start_with(Options {
        args: vec!["--requirepass".into(), password.into()],
        ..Options::default()
    })
}

fn record(state: ShardState, guilds: u32) -> String {
    serde_json::to_string(&ShardStatus {
        state,
        guilds,
        pod: "bot-4-0-1".into(),
        reason: None,
        updated_at_ms: 1,
        layout_revision: 0,
        lapses: 0,
        behind_ms: None,
        bus_accepting: None,
    })
    .expect("json")
}

#[tokio::test]
async fn reads_shard_status_records_of_one_layout() {
    let server = RedisServer::start();
    let keys = Keys::new(42);
    let mut conn = connect(&server, None);
    let _: () = conn
        .set(keys.status(4, 0), record(ShardState::Ready, 7))
        .expect("set");
    let _: () = conn
        .set(keys.status(4, 2), record(ShardState::Ready, 5))
        .expect("set");
    // Another layout's record is not counted.
    let _: () = conn
        .set(keys.status(8, 1), record(ShardState::Ready, 100))
        .expect("set");

    let pool = RedisPool::default();
    let records = pool
        .shard_statuses(RedisTarget::plain(&server.url()), 42, 4)
        .await
        .expect("read");
    assert_eq!(records.len(), 4);
    assert!(records[1].is_none() && records[3].is_none());
    assert_eq!(summarize(&records).guilds, Some(12));
}

#[tokio::test]
async fn uses_the_password_and_cleans_only_the_bots_keys() {
    let server = with_password("hunter2");
    let mut conn = connect(&server, Some("hunter2"));
    let ours = Keys::new(42);
    let theirs = Keys::new(43);
    for key in [
        ours.epoch(),
        ours.gate(0),
        ours.session(4, 1),
        ours.lease(4, 1),
        ours.status(4, 1),
        ours.queue(0),
        ours.active_layout(),
        theirs.session(4, 1),
    ] {
        let _: () = conn.set(&key, "x").expect("set");
    }

    let pool = RedisPool::default();
    let wrong = pool
        .cleanup(password_target(&server.url(), "wrong"), 42, OWNER)
        .await;
    assert!(wrong.is_err(), "a wrong password is an error");
    let wrong = wrong.expect_err("error");
    assert!(
        !wrong.to_string().contains("wrong"),
        "no password in errors: {wrong}"
    );

    // A fresh pool: the failure above parks that connection for a while.
    let pool = RedisPool::default();
    let deleted = pool
        .cleanup(password_target(&server.url(), "hunter2"), 42, OWNER)
        .await
        .expect("cleanup");
    assert_eq!(deleted, Cleaned::Deleted(7));
    let left: Vec<String> = conn.keys("shardset:{*").expect("keys");
    assert_eq!(left, vec![theirs.session(4, 1)]);
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast_and_is_not_retried_at_once() {
    // A port nobody listens on: a server started and stopped again.
    let mut server = RedisServer::start();
    server.stop();
    let url = server.url();
    let pool = RedisPool::default();
    let started = Instant::now();
    let first = pool.shard_statuses(RedisTarget::plain(&url), 1, 2).await;
    assert!(first.is_err());
    assert!(started.elapsed() < Duration::from_secs(5), "bounded");

    // Now start a server on that port: the pool still answers from its parked failure.
    server.restart();
    let again = Instant::now();
    assert!(
        pool.shard_statuses(RedisTarget::plain(&url), 1, 2)
            .await
            .is_err()
    );
    assert!(
        again.elapsed() < Duration::from_millis(100),
        "no new attempt"
    );
    drop(server);
}

#[tokio::test]
async fn roles_are_written_by_compare_and_set_and_read_with_the_acks() {
    let server = RedisServer::start();
    let keys = Keys::new(42);
    let mut conn = connect(&server, None);
    let _: () = conn
        .set(keys.status(2, 1), record(ShardState::Ready, 3))
        .expect("set");
    let _: () = conn.set(keys.budget(), 17).expect("set");
    let pool = RedisPool::default();
    let doc = |revision: u64, role: Role| LayoutRoles {
        revision,
        roles: [("2".to_string(), role)].into(),
        ..LayoutRoles::default()
    };

    let empty = pool
        .reshard_state(RedisTarget::plain(&server.url()), 42, &[2, 4])
        .await
        .expect("read");
    assert_eq!(empty.roles, Ok(None));
    assert_eq!(empty.budget, Some(17));
    assert!(empty.now_ms > 1_700_000_000_000, "Redis TIME in ms");
    assert_eq!(empty.statuses[&2].len(), 2);
    assert!(empty.statuses[&2][0].is_none() && empty.statuses[&2][1].is_some());
    assert_eq!(empty.statuses[&4].len(), 4);

    // Written on the revision read (0: none); a write made on a stale read fails.
    let first = doc(1, Role::Active);
    assert!(
        pool.write_roles(RedisTarget::plain(&server.url()), 42, 0, &first)
            .await
            .expect("write")
    );
    assert!(
        !pool
            .write_roles(
                RedisTarget::plain(&server.url()),
                42,
                0,
                &doc(1, Role::Retired)
            )
            .await
            .expect("write"),
        "a second writer on the same read loses"
    );
    let second = doc(2, Role::Claiming);
    assert!(
        pool.write_roles(RedisTarget::plain(&server.url()), 42, 1, &second)
            .await
            .expect("write")
    );
    let read = pool
        .reshard_state(RedisTarget::plain(&server.url()), 42, &[2])
        .await
        .expect("read");
    assert_eq!(read.roles, Ok(Some(second)));

    // Something else under the key is reported, never overwritten.
    let _: () = conn.set(keys.active_layout(), "{oops").expect("set");
    let bad = pool
        .reshard_state(RedisTarget::plain(&server.url()), 42, &[2])
        .await
        .expect("read");
    assert!(bad.roles.is_err());
    assert!(
        !pool
            .write_roles(
                RedisTarget::plain(&server.url()),
                42,
                2,
                &doc(3, Role::Active)
            )
            .await
            .expect("write")
    );
    let kept: String = conn.get(keys.active_layout()).expect("get");
    assert_eq!(kept, "{oops");
}

/// One running, Ready pod of `layout` with shards `first..=last`.
fn pod(layout: u32, first: u32, last: u32) -> ObservedPod {
    ObservedPod {
        name: format!("bot-{layout}-{first}-{last}"),
        owned: true,
        layout: Some(layout.to_string()),
        range: Some(ShardRange { first, last }),
        hash: Some("h".into()),
        ready: true,
        terminating: false,
        never_ran: false,
    }
}

#[tokio::test]
async fn the_w_countdown_runs_on_the_pace_the_workers_report() {
    let server = RedisServer::start();
    let url = server.url();
    let keys = Keys::new(42);
    let mut conn = connect(&server, None);
    // Both layouts claim and acknowledged revision 3, as the workers' records say.
    let write = |conn: &mut redis::Connection, total: u32, shard: u32, pace: (u64, Option<u64>)| {
        let json = serde_json::to_string(&ShardStatus {
            state: ShardState::Ready,
            guilds: 1,
            pod: format!("bot-{total}-0-{}", total - 1),
            reason: None,
            updated_at_ms: 1,
            layout_revision: 3,
            lapses: pace.0,
            behind_ms: pace.1,
            bus_accepting: None,
        })
        .expect("json");
        let _: () = conn.set(keys.status(total, shard), json).expect("set");
    };
    for (total, shard) in (0..2).map(|s| (2, s)).chain((0..4).map(|s| (4, s))) {
        write(&mut conn, total, shard, (0, None));
    }
    // Shard 3 of the new layout handles 6 s late.
    write(&mut conn, 4, 3, (1, Some(6_000)));
    let both = LayoutRoles {
        revision: 3,
        roles: [("2".into(), Role::Claiming), ("4".into(), Role::Claiming)].into(),
        from: Some("2".into()),
        to: Some("4".into()),
        started_at_ms: Some(1),
        ..LayoutRoles::default()
    };
    let pool = RedisPool::default();
    assert!(
        pool.write_roles(RedisTarget::plain(&url), 42, 0, &both)
            .await
            .expect("write")
    );
    let observed = [pod(2, 0, 1), pod(4, 0, 3)];
    // One reconcile pass's decision on what Redis holds now, `after_ms` past Redis time.
    let (pool, url, observed) = (&pool, url.as_str(), &observed);
    let pass = |after_ms: u64| async move {
        let state = pool
            .reshard_state(RedisTarget::plain(url), 42, &[2, 4])
            .await
            .expect("read");
        let layouts = views(observed, &state.statuses, 4);
        let doc = state.roles.expect("roles");
        let decision = decide(&Inputs {
            target: 4,
            strategy: ReshardStrategy::BlueGreen,
            doc: doc.as_ref(),
            layouts: &layouts,
            remaining: Some(1000),
            reserve: 0,
            now_ms: state.now_ms + after_ms,
            window_ms: 2_000,
        });
        (doc, decision)
    };

    let (_, held) = pass(0).await;
    assert!(held.write.is_none(), "a shard is behind: {held:?}");
    assert!(
        held.message
            .contains("shard 3 on bot-4-0-3 (handling late)"),
        "{}",
        held.message
    );

    // Caught up: the countdown starts, and its mark is kept through the compare-and-set.
    write(&mut conn, 4, 3, (1, None));
    let (doc, marked) = pass(0).await;
    let marked = marked.write.expect("mark");
    assert!(marked.live_mark.is_some());
    assert!(
        pool.write_roles(RedisTarget::plain(url), 42, 3, &marked)
            .await
            .expect("write")
    );
    let (read, waiting) = pass(0).await;
    assert_eq!(read.as_ref(), Some(&marked));
    assert!(waiting.write.is_none(), "W has not passed: {waiting:?}");
    assert_ne!(read, doc);

    // The new layout's shard 0 reconnects and is READY again before the next pass: W passed
    // since the mark, but the countdown restarts instead of retiring the old layout.
    write(&mut conn, 4, 0, (1, None));
    let (_, restarted) = pass(2_000).await;
    let restarted = restarted.write.expect("restart");
    assert_eq!(restarted.revision, 3);
    assert_eq!(restarted.roles, both.roles, "not the next step");
    assert_ne!(restarted.live_mark, marked.live_mark);
    assert!(
        pool.write_roles(RedisTarget::plain(url), 42, 3, &restarted)
            .await
            .expect("write")
    );
    // Nothing lapses for W: the old layout retires.
    let (_, next) = pass(4_000).await;
    let next = next.write.expect("next step");
    assert_eq!(next.revision, 4);
    assert_eq!(next.roles.get("2"), Some(&Role::Retired));
}

#[tokio::test]
async fn fatal_markers_go_when_the_basis_changes() {
    let server = RedisServer::start();
    let ours = Keys::new(42);
    let theirs = Keys::new(43);
    let mut conn = connect(&server, None);
    let set_markers = |conn: &mut redis::Connection| {
        for key in [ours.fatal(4, 1), ours.fatal(8, 7), theirs.fatal(4, 1)] {
            let _: () = conn.set(&key, "disallowed intents (4014)").expect("set");
        }
    };
    set_markers(&mut conn);
    let pool = RedisPool::default();
    let url = server.url();

    // The first basis seen deletes nothing (the markers may be right).
    assert_eq!(
        pool.clear_fatal_on_new_basis(RedisTarget::plain(&url), 42, "aaaa")
            .await
            .expect("clear"),
        0
    );
    assert_eq!(
        pool.clear_fatal_on_new_basis(RedisTarget::plain(&url), 42, "aaaa")
            .await
            .expect("clear"),
        0
    );
    let left: Vec<String> = conn.keys(ours.pattern("fatal")).expect("keys");
    assert_eq!(left.len(), 2);

    // A new token or intents: every marker of the bot goes, and only once.
    assert_eq!(
        pool.clear_fatal_on_new_basis(RedisTarget::plain(&url), 42, "bbbb")
            .await
            .expect("clear"),
        2
    );
    let left: Vec<String> = conn.keys(ours.pattern("fatal")).expect("keys");
    assert!(left.is_empty(), "{left:?}");
    let other: Vec<String> = conn.keys(theirs.pattern("fatal")).expect("keys");
    assert_eq!(
        other,
        vec![theirs.fatal(4, 1)],
        "another bot's markers stay"
    );
    set_markers(&mut conn);
    assert_eq!(
        pool.clear_fatal_on_new_basis(RedisTarget::plain(&url), 42, "bbbb")
            .await
            .expect("clear"),
        0
    );
}

/// The keys deleted on `server`, in the order Redis deleted them (keyspace notifications, which
/// the server must have on: `notify-keyspace-events Eg`), until `stop` is set.
fn deletions(server: &RedisServer) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut conn = connect(server, None);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut pubsub = conn.as_pubsub();
        pubsub.subscribe("__keyevent@0__:del").expect("subscribe");
        let _ = ready_tx.send(());
        while let Ok(message) = pubsub.get_message() {
            let Ok(key) = message.get_payload::<String>() else {
                return;
            };
            if tx.send(key).is_err() {
                return;
            }
        }
    });
    ready_rx.recv().expect("subscribed");
    rx
}

#[tokio::test]
async fn cleanup_deletes_the_epoch_marker_before_any_gate() {
    // The take-gate script grants nothing for a window once the marker is gone; a gate deleted
    // while the marker still stood could be taken at once by a worker still running (issue 11,
    // item 14). Many gates, so that a scan order putting the marker first by chance is unlikely.
    let server = RedisServer::start_with(Options {
        args: vec!["--notify-keyspace-events".into(), "Eg".into()],
        ..Options::default()
    });
    let mut conn = connect(&server, None);
    let keys = Keys::new(42);
    let mut pipe = redis::pipe();
    for bucket in 0..2_000 {
        pipe.set(keys.gate(bucket), "x").ignore();
    }
    pipe.set(keys.epoch(), "run:1").ignore();
    let _: () = pipe.query(&mut conn).expect("set");
    let deleted = deletions(&server);

    let pool = RedisPool::default();
    let cleaned = pool
        .cleanup(RedisTarget::plain(&server.url()), 42, OWNER)
        .await
        .expect("cleanup");
    assert_eq!(cleaned, Cleaned::Deleted(2_001));
    let first = deleted
        .recv_timeout(Duration::from_secs(5))
        .expect("a deletion");
    assert_eq!(first, keys.epoch(), "the epoch marker goes first");
}

#[tokio::test]
async fn one_shardset_owns_a_bot_and_only_its_cleanup_deletes_the_keys() {
    let server = RedisServer::start();
    let mut conn = connect(&server, None);
    let keys = Keys::new(42);
    let pool = RedisPool::default();
    let url = server.url();

    // The first ShardSet claims the bot; asking again changes nothing.
    for _ in 0..2 {
        let owner = pool
            .claim_bot(RedisTarget::plain(&url), 42, OWNER, None)
            .await;
        assert_eq!(owner.expect("claim"), BotOwner::Ours);
    }
    // A second one is told who owns it, and cannot take it over...
    let second = pool
        .claim_bot(RedisTarget::plain(&url), 42, "other/bot", None)
        .await;
    assert_eq!(second.expect("claim"), BotOwner::Other(OWNER.into()));
    let _: () = conn.set(keys.gate(0), "x").expect("set");
    // ...nor delete the first one's keys.
    let cleaned = pool
        .cleanup(RedisTarget::plain(&url), 42, "other/bot")
        .await;
    assert_eq!(cleaned.expect("cleanup"), Cleaned::OwnedBy(OWNER.into()));
    let left: Vec<String> = conn.keys("shardset:{*").expect("keys");
    assert_eq!(left.len(), 2, "{left:?}");

    // Unless the owner is gone (its ShardSet no longer exists): then it takes over.
    let taken = pool
        .claim_bot(RedisTarget::plain(&url), 42, "other/bot", Some(OWNER))
        .await;
    assert_eq!(taken.expect("claim"), BotOwner::Ours);
    let first = pool
        .claim_bot(RedisTarget::plain(&url), 42, OWNER, None)
        .await;
    assert_eq!(first.expect("claim"), BotOwner::Other("other/bot".into()));

    // The owner's cleanup deletes everything, its claim too: a new ShardSet may claim the bot.
    let cleaned = pool
        .cleanup(RedisTarget::plain(&url), 42, "other/bot")
        .await;
    assert_eq!(cleaned.expect("cleanup"), Cleaned::Deleted(2));
    let left: Vec<String> = conn.keys("shardset:{*").expect("keys");
    assert!(left.is_empty(), "{left:?}");
    let owner = pool
        .claim_bot(RedisTarget::plain(&url), 42, OWNER, None)
        .await;
    assert_eq!(owner.expect("claim"), BotOwner::Ours);
}

#[tokio::test]
async fn the_operator_reaches_a_tls_redis_with_the_ca_bundle_and_refuses_it_without() {
    shardset_contract::rest::install_crypto_provider();
    let server = RedisServer::start_with(Options {
        tls: true,
        args: vec!["--requirepass".into(), "hunter2".into()],
        ..Options::default()
    });
    let url = server.url();
    assert!(url.starts_with("rediss://"));
    let ca = CaBundle::from_pem(
        server.ca_pem().expect("TLS").as_bytes().to_vec(),
        "Secret \"redis-tls\" key \"ca.crt\"",
    )
    .expect("the fixture's CA");
    let trusted = RedisTarget {
        url: &url,
        password: Some("hunter2"),
        ca: Some(&ca),
    };
    let statuses = RedisPool::default()
        .shard_statuses(trusted, 42, 2)
        .await
        .expect("read over TLS");
    assert_eq!(statuses, vec![None, None]);

    // Without the CA: the public roots do not know it; the error says so, without the password.
    let error = RedisPool::default()
        .shard_statuses(password_target(&url, "hunter2"), 42, 2)
        .await
        .expect_err("an unknown CA is refused")
        .to_string();
    assert!(error.contains("invalid peer certificate"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}

/// The workers' `take_gate.lua` (the protocol's normative script) for bucket 0 of a one-bucket
/// map, as shard 0 with a 1 s window: `{code, n}` (`{0, _}` granted, `{2, ms}` epoch hold).
fn take_gate(conn: &mut redis::Connection, keys: &Keys) -> (i64, i64) {
    redis::Script::new(include_str!(
        "../../shard-worker/src/identify/take_gate.lua"
    ))
    .key(keys.epoch())
    .key(keys.gate(0))
    .key(keys.budget())
    .key(keys.queue(0))
    .key(keys.seen(0))
    .key(keys.max_concurrency())
    .key(keys.budget_period())
    .arg("pod/1/0/1")
    .arg(3_100)
    .arg(1_100)
    .arg(0)
    .arg(0)
    .arg(7_200)
    .arg(1)
    .invoke(conn)
    .expect("take_gate.lua")
}

/// The budget as a worker stores it at start (`sync_budget.lua`'s result).
fn store_budget(conn: &mut redis::Connection, keys: &Keys) {
    let _: () = conn.set_ex(keys.budget(), 10, 3_600).expect("budget");
    let _: () = conn
        .hset(keys.budget_period(), "remaining", 10)
        .expect("period");
}

#[tokio::test]
async fn a_fresh_bot_identifies_without_the_epoch_hold_and_any_key_keeps_it() {
    let server = RedisServer::start();
    let mut conn = connect(&server, None);
    let pool = RedisPool::default();
    let url = server.url();

    // A fresh bot: claimed, the operator's own keys written, nothing of a worker.
    let fresh = Keys::new(42);
    let claim = pool.claim_bot(RedisTarget::plain(&url), 42, OWNER, None);
    assert_eq!(claim.await.expect("claim"), BotOwner::Ours);
    let _: () = conn
        .set(format!("{}:fatal-basis", fresh.prefix()), "basis")
        .expect("basis");
    let settled = pool
        .settle_fresh_epoch(RedisTarget::plain(&url), 42, OWNER)
        .await;
    assert_eq!(settled.expect("settle"), FreshEpoch::Settled);
    // The first worker stores the budget and takes the gate at once: no hold.
    store_budget(&mut conn, &fresh);
    assert_eq!(take_gate(&mut conn, &fresh), (0, 9));
    // Settling again finds keys of the workers and changes nothing.
    let again = pool
        .settle_fresh_epoch(RedisTarget::plain(&url), 42, OWNER)
        .await;
    assert!(
        matches!(again.expect("settle"), FreshEpoch::KeyFound(_)),
        "the bot has keys now"
    );

    // Any key of a worker keeps the hold: here a lease left by a pod (Redis kept it, so a
    // permit granted before may have lost only its gate and epoch).
    let used = Keys::new(43);
    let claim = pool.claim_bot(RedisTarget::plain(&url), 43, OWNER, None);
    assert_eq!(claim.await.expect("claim"), BotOwner::Ours);
    let _: () = conn.set(used.lease(4, 0), "old-pod").expect("lease");
    let kept = pool
        .settle_fresh_epoch(RedisTarget::plain(&url), 43, OWNER)
        .await;
    assert_eq!(
        kept.expect("settle"),
        FreshEpoch::KeyFound(used.lease(4, 0))
    );
    store_budget(&mut conn, &used);
    let (code, hold) = take_gate(&mut conn, &used);
    assert_eq!((code, hold), (2, 3_100), "the epoch hold of the first use");

    // A claim that is not this ShardSet's settles nothing either.
    let other = Keys::new(44);
    let claim = pool.claim_bot(RedisTarget::plain(&url), 44, "other/bot", None);
    assert_eq!(claim.await.expect("claim"), BotOwner::Ours);
    let refused = pool
        .settle_fresh_epoch(RedisTarget::plain(&url), 44, OWNER)
        .await;
    assert_eq!(refused.expect("settle"), FreshEpoch::NotSettled);
    let epoch: bool = conn.exists(other.epoch()).expect("exists");
    assert!(!epoch, "no marker written for another owner");
}

#[tokio::test]
async fn a_bot_deleted_moments_ago_keeps_the_epoch_hold_when_created_again() {
    // `kubectl delete` then `kubectl apply` of the same bot: the old pods may have sent an
    // Identify seconds before they went, and cleanup deleted its gate with the rest. The new
    // ShardSet has no pods and finds no worker key, yet its first Identify must wait the hold.
    let server = RedisServer::start();
    let mut conn = connect(&server, None);
    let pool = RedisPool::default();
    let url = server.url();
    let keys = Keys::new(45);
    let claim = pool.claim_bot(RedisTarget::plain(&url), 45, "ns/old", None);
    assert_eq!(claim.await.expect("claim"), BotOwner::Ours);
    let _: () = conn.set(keys.epoch(), "run:0").expect("epoch");
    let _: () = conn
        .set(keys.gate(3), "old-pod/3/1")
        .expect("gate just taken");
    let cleaned = pool
        .cleanup(RedisTarget::plain(&url), 45, "ns/old")
        .await
        .expect("cleanup");
    assert!(matches!(cleaned, Cleaned::Deleted(_)));

    let claim = pool.claim_bot(RedisTarget::plain(&url), 45, OWNER, None);
    assert_eq!(claim.await.expect("claim"), BotOwner::Ours);
    let settled = pool
        .settle_fresh_epoch(RedisTarget::plain(&url), 45, OWNER)
        .await
        .expect("settle");
    assert_eq!(settled, FreshEpoch::KeyFound(keys.cleaned()));
    store_budget(&mut conn, &keys);
    let (code, hold) = take_gate(&mut conn, &keys);
    assert_eq!((code, hold), (2, 3_100), "the epoch hold after a cleanup");
}
