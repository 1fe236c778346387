//! The worker publishing to the bus (`docs/bus-protocol.md`): real `shard-worker` processes, the
//! fake Discord over real WebSockets, a real redis-server and a real nats-server. What reaches
//! the stream is read back and checked against what the fake's sessions were given: every
//! dispatch exactly once, with the protocol's headers and ids, each guild in gateway order;
//! through a `kill -9` of the worker, a 30 s outage of the bus and a full stream. The shard
//! status records say when the bus cannot be published to (the operator's `BusAvailable`).

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::bus::{
    Bus, PARTITIONS, STREAM, assert_every_dispatch_once, dispatched, rss_kib, wait_count,
};
use common::metrics::{total, total_with};
use common::roles::Roles;
use common::scenario::{Scenario, wait_until};
use common::worker::{WorkerProcess, WorkerSpec};
use fake_discord::control::SessionInfo;
use futures_util::TryStreamExt;
use shardset_contract::bus::{self as protocol, Partition};
use shardset_contract::env;

const READY: Duration = Duration::from_secs(30);
/// GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES: direct messages give events without a guild.
const INTENTS: &str = "4609";
/// Direct messages in the load, per cent.
const DM_PERCENT: u8 = 10;

/// A worker of shards `first..=last` of `total` publishing to `bus`.
fn publisher(
    s: &Scenario,
    bus: &Bus,
    pod: &str,
    (first, last, total): (u32, u32, u32),
    more: &[(&str, &str)],
) -> WorkerSpec {
    let mut spec = s.spec(pod, first, last, total);
    spec.extra_env = bus.env(more);
    spec.extra_env
        .push((env::DISCORD_INTENTS.into(), INTENTS.into()));
    spec
}

/// A worker started from `spec`, once it is ready.
async fn ready(spec: WorkerSpec) -> WorkerProcess {
    let worker = WorkerProcess::start(spec);
    assert!(
        worker.wait_ready(READY).await,
        "ready:\n{}",
        worker.log_text()
    );
    worker
}

/// The fake's sessions of layout `total`.
fn sessions(s: &Scenario, total: u32) -> Vec<SessionInfo> {
    s.fake
        .state()
        .sessions()
        .into_iter()
        .filter(|x| x.num_shards == total)
        .collect()
}

/// Waits (at most `within`) until the stream holds every dispatch the sessions of layout
/// `total` were given, and returns those sessions. The load was stopped; the generator may still finish the tick it was
/// in (10 ms), so the match must hold on two polls in a row.
async fn wait_all_published(
    s: &Scenario,
    bus: &Bus,
    total: u32,
    within: Duration,
) -> Vec<SessionInfo> {
    let deadline = Instant::now() + within;
    let mut matched: Option<Vec<(u32, u64)>> = None;
    loop {
        let before = sessions(s, total);
        let count = bus.count().await;
        let after = sessions(s, total);
        let seqs = |x: &[SessionInfo]| x.iter().map(|x| (x.shard, x.seq)).collect::<Vec<_>>();
        let expected = dispatched(&after).len() as u64;
        if seqs(&before) == seqs(&after) && count == expected && after.iter().all(|x| x.connected) {
            if matched.as_ref() == Some(&seqs(&after)) {
                return after;
            }
            matched = Some(seqs(&after));
        } else {
            matched = None;
        }
        if Instant::now() >= deadline {
            // The caller's checks say what is missing.
            eprintln!("the stream holds {count} of {expected} dispatches");
            return after;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dispatch_reaches_the_stream_once_with_its_headers_in_gateway_order() {
    let s = Scenario::start(2, 200, 1_000).await;
    let bus = Bus::start();
    let worker = ready(publisher(&s, &bus, "pub", (0, 1, 2), &[])).await;

    s.set_load_with_dms(200, DM_PERCENT);
    tokio::time::sleep(Duration::from_secs(4)).await;
    s.set_load_with_dms(0, DM_PERCENT);
    let sessions = wait_all_published(&s, &bus, 2, Duration::from_secs(30)).await;
    let stored = bus.stored().await;
    let per_guild = assert_every_dispatch_once(&stored, &sessions, 2);
    eprintln!(
        "{} events of {} guilds and {} without a guild stored once each, in gateway order",
        stored.len(),
        per_guild.len() - 1,
        per_guild.get(&None).copied().unwrap_or(0)
    );
    assert!(stored.len() > 800, "the load ran");
    assert!(
        per_guild.get(&None).copied().unwrap_or(0) > 2,
        "READY and direct messages go to the global partition"
    );

    // Before its first publish the worker made the default group's consumers of every
    // partition (interest retention keeps events only for them), and it keeps the layout key.
    let js = bus.js().await;
    let stream = js.get_stream(STREAM).await.expect("stream");
    let consumers: BTreeSet<String> = stream
        .consumer_names()
        .try_collect()
        .await
        .expect("consumers");
    let expected: BTreeSet<String> = Partition::all(PARTITIONS)
        .map(|p| protocol::consumer_name(STREAM, protocol::DEFAULT_GROUP, p))
        .collect();
    assert_eq!(consumers, expected);
    let kv = js
        .get_key_value(protocol::handlers_bucket(STREAM))
        .await
        .expect("the handlers' bucket");
    let layout = kv
        .get(protocol::LAYOUT_KEY)
        .await
        .expect("get")
        .expect("layout key");
    assert_eq!(&layout[..], br#"{"total":2}"#);

    let metrics = worker.metrics().await;
    let published = total_with(
        &metrics,
        "shardset_bus_published_total",
        "result=\"stored\"",
    );
    assert_eq!(published as usize, stored.len(), "{metrics}");
    assert_eq!(
        total_with(
            &metrics,
            "shardset_bus_published_total",
            "result=\"duplicate\""
        ),
        0.0
    );
    assert!(total(&metrics, "shardset_bus_publish_duration_seconds_count") > 0.0);
    assert_eq!(s.identifies(), 2);
    s.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_load_is_replaced_and_its_replays_are_dropped_as_duplicates() {
    let s = Scenario::start(2, 200, 1_000).await;
    let bus = Bus::start();
    let first = ready(publisher(&s, &bus, "first", (0, 1, 2), &[])).await;
    s.set_load_with_dms(150, DM_PERCENT);
    // Well past a checkpoint (every 2 s) under load.
    assert!(wait_count(&bus, 900, Duration::from_secs(30)).await);

    // kill -9, and the successor starts at once: it waits for the dead pod's lease to expire,
    // resumes each session from its checkpoint and replays into the bus.
    let pid = first.pid().expect("pid");
    drop(first);
    let at_kill = bus.count().await;
    let successor = WorkerProcess::start(publisher(&s, &bus, "successor", (0, 1, 2), &[]));
    assert!(
        successor.wait_ready(Duration::from_secs(60)).await,
        "successor:\n{}",
        successor.log_text()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.set_load_with_dms(0, DM_PERCENT);

    let sessions = wait_all_published(&s, &bus, 2, Duration::from_secs(30)).await;
    let stored = bus.stored().await;
    assert_every_dispatch_once(&stored, &sessions, 2);
    let metrics = successor.metrics().await;
    let duplicates = total_with(
        &metrics,
        "shardset_bus_published_total",
        "result=\"duplicate\"",
    );
    let resumes = total(&metrics, "shardset_worker_resumes_total");
    eprintln!(
        "worker {pid} killed with {at_kill} events stored; {} stored in all, each once; the successor's replays dropped by Nats-Msg-Id: {duplicates}; resumes: {resumes}",
        stored.len()
    );
    assert!(
        duplicates > 0.0,
        "the successor replayed from its checkpoint"
    );
    assert_eq!(resumes, 2.0, "both sessions resumed");
    assert_eq!(s.identifies(), 2, "no Identify after the crash");
    s.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_s_bus_outage_under_load_loses_nothing_bounds_memory_and_needs_no_identify() {
    const OUTAGE: Duration = Duration::from_secs(30);
    let s = Scenario::start(2, 200, 1_000).await;
    let mut bus = Bus::start();
    let worker = ready(publisher(
        &s,
        &bus,
        "pub",
        (0, 1, 2),
        &[(env::SHARDSET_BUS_SHARD_MAX_IN_FLIGHT, "256")],
    ))
    .await;
    let pid = worker.pid().expect("pid");
    s.set_load_with_dms(100, DM_PERCENT);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_before = rss_kib(pid);

    // The bus goes away (killed, as a crash or a cut network looks) under load.
    bus.nats.stop();
    let outage = Instant::now();
    let paused = wait_until(Duration::from_secs(10), || async {
        total(&worker.metrics().await, "shardset_bus_paused_shards") == 2.0
    })
    .await;
    assert!(
        paused,
        "both shards stopped reading:\n{}",
        worker.metrics().await
    );
    // Paused means not reading: from here the shards take no dispatch (but the one each may
    // have been counting as it paused) while the fake goes on generating.
    let read_at_pause = total(&worker.metrics().await, "shardset_worker_events_total");
    let generated_at_pause = s.fake.state().load_status().generated;
    let mut rss_during = 0;
    let mut in_flight_during = 0.0_f64;
    while outage.elapsed() < OUTAGE {
        rss_during = rss_during.max(rss_kib(pid));
        let metrics = worker.metrics().await;
        in_flight_during = in_flight_during.max(total(&metrics, "shardset_bus_in_flight"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let generated_during = s.fake.state().load_status().generated;
    let read_during =
        total(&worker.metrics().await, "shardset_worker_events_total") - read_at_pause;
    bus.nats.restart();

    // Back: the shards read on, resume their sessions and publish what they missed.
    assert!(
        worker.wait_ready(Duration::from_secs(60)).await,
        "resumed:\n{}",
        worker.log_text()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.set_load_with_dms(0, DM_PERCENT);
    let sessions = wait_all_published(&s, &bus, 2, Duration::from_secs(60)).await;
    let rss_after = rss_kib(pid);
    let stored = bus.stored().await;
    assert_every_dispatch_once(&stored, &sessions, 2);
    let metrics = worker.metrics().await;
    eprintln!(
        "outage of {OUTAGE:?} under load ({generated_during} messages generated by then, {} during the pause, {read_during} of them read): {} events stored once each; worker RSS before {rss_before} KiB, during at most {rss_during} KiB, after {rss_after} KiB; in flight during at most {in_flight_during}; publish errors {}, retries {}, resumes {}",
        generated_during - generated_at_pause,
        stored.len(),
        total(&metrics, "shardset_bus_publish_errors_total"),
        total(&metrics, "shardset_bus_publish_retries_total"),
        total(&metrics, "shardset_worker_resumes_total"),
    );
    assert!(
        generated_during > generated_at_pause + 1_000,
        "the load went on during the outage: {generated_at_pause} -> {generated_during}"
    );
    assert!(
        read_during <= 2.0,
        "the shards stopped reading the gateway while the bus was down: {read_during} dispatches read"
    );
    assert!(in_flight_during <= 2.0 * 257.0, "bounded in flight");
    assert!(
        rss_during < rss_before + 32 * 1024,
        "memory bounded during the outage: {rss_before} -> {rss_during} KiB"
    );
    assert!(
        total(&metrics, "shardset_worker_resumes_total") >= 2.0,
        "sessions resumed"
    );
    assert_eq!(s.identifies(), 2, "no new Identify");
    s.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_pauses_the_shards_until_a_handler_makes_room() {
    let s = Scenario::start(1, 200, 1_000).await;
    let bus = Bus::start();
    // Room for the start-up (READY and ~256 GUILD_CREATE) and a few seconds of load.
    let worker = ready(publisher(
        &s,
        &bus,
        "pub",
        (0, 0, 1),
        &[(env::SHARDSET_BUS_MAX_MESSAGES, "600")],
    ))
    .await;
    s.set_load_with_dms(100, DM_PERCENT);
    let full = wait_until(Duration::from_secs(30), || async {
        let metrics = worker.metrics().await;
        total(&metrics, "shardset_bus_paused_shards") == 1.0
            && total_with(
                &metrics,
                "shardset_bus_publish_errors_total",
                "reason=\"full\"",
            ) > 0.0
    })
    .await;
    assert!(
        full,
        "the shard paused on a full stream:\n{}",
        worker.metrics().await
    );
    assert_eq!(bus.count().await, 600);

    // A handler service consumes (and acknowledges) the events: the stream makes room, the
    // shard reads on.
    let handled: Arc<Mutex<Vec<(u32, u64)>>> = Arc::default();
    let record = Arc::clone(&handled);
    let mut config = shardset_handler::Config::new(bus.nats.url(), STREAM);
    config.replica = "handler-1".into();
    config.fetch_expires = Duration::from_millis(250);
    let replica =
        shardset_handler::Replica::start(config, move |event: shardset_handler::Event| {
            record.lock().expect("lock").push((event.shard, event.seq));
            std::future::ready(Ok::<(), shardset_handler::HandlerError>(()))
        })
        .await
        .expect("a handler replica");
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.set_load_with_dms(0, DM_PERCENT);

    let deadline = Instant::now() + Duration::from_secs(60);
    let sessions = loop {
        let sessions = sessions(&s, 1);
        let expected: BTreeSet<(u32, u64)> = dispatched(&sessions).into_keys().collect();
        let got: BTreeSet<(u32, u64)> = handled.lock().expect("lock").iter().copied().collect();
        if got == expected && sessions.iter().all(|x| x.connected) {
            break sessions;
        }
        assert!(
            Instant::now() < deadline,
            "handled {} of {} dispatches",
            got.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    replica.shutdown().await;
    let handled = handled.lock().expect("lock").clone();
    let unique: BTreeSet<_> = handled.iter().collect();
    let metrics = worker.metrics().await;
    eprintln!(
        "{} dispatches handled once each through a full stream; full refusals {}, sessions {sessions:?}",
        handled.len(),
        total_with(
            &metrics,
            "shardset_bus_publish_errors_total",
            "reason=\"full\""
        )
    );
    assert_eq!(unique.len(), handled.len(), "each handled once");
    assert_eq!(s.identifies(), 1);
    s.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_records_say_when_the_bus_cannot_be_published_to() {
    let s = Scenario::start(2, 200, 1_000).await;
    let mut bus = Bus::start();
    let _worker = ready(publisher(&s, &bus, "pub", (0, 1, 2), &[])).await;
    s.set_load(20);
    let mut records = Roles::new(&s);
    assert!(
        records_say(&mut records, true, Duration::from_secs(10)).await,
        "publishing: true"
    );
    bus.nats.stop();
    let down = Instant::now();
    assert!(
        records_say(&mut records, false, Duration::from_secs(10)).await,
        "the bus gone: false on every shard"
    );
    eprintln!(
        "records said the bus was unreachable {:?} after it stopped",
        down.elapsed()
    );
    bus.nats.restart();
    let up = Instant::now();
    assert!(
        records_say(&mut records, true, Duration::from_secs(60)).await,
        "publishing again: true"
    );
    eprintln!("and that it was back {:?} after its restart", up.elapsed());
    s.set_load(0);
    s.assert_no_violations();
}

/// Waits (at most `within`) until the status records of both shards of layout 2 say
/// `busAccepting: accepting`: what the operator reads for its `BusAvailable` condition.
async fn records_say(records: &mut Roles, accepting: bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if (0..2).all(|shard| {
            records
                .status(2, shard)
                .is_some_and(|r| r.bus_accepting == Some(accepting))
        }) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
