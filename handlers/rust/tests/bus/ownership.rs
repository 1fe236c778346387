//! Partition ownership: one replica, scaling 1 -> 3, a killed replica, a clean shutdown.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardset_handler::{Event, HandlerError, Partition, Replica};

use crate::support::{
    Bus, PARTITIONS, Record, Seen, assert_exactly_once_in_order, assert_in_order, guild_in,
    wait_balanced,
};

const TTL: Duration = Duration::from_millis(1500);
const WITHIN: Duration = Duration::from_secs(20);

/// 8 events per guild partition over 2 guilds each, plus 8 global ones, interleaved.
async fn publish_round(bus: &Bus, round: u64, published: &mut BTreeSet<u64>) {
    for i in 0..8 {
        for p in 0..PARTITIONS {
            published.insert(bus.publish(Some(guild_in(p, round * 2 + i % 2))).await);
        }
        published.insert(bus.publish(None).await);
    }
}

#[tokio::test]
async fn one_replica_consumes_every_partition_in_order() {
    let bus = Bus::start(TTL).await;
    let mut published = BTreeSet::new();
    // Published before any handler runs: the stream keeps them for the group's consumers.
    publish_round(&bus, 0, &mut published).await;
    let record = Record::default();
    let replica = Replica::start(bus.config("solo", TTL), record.handler("solo"))
        .await
        .expect("start");
    let n = published.len();
    record.wait(WITHIN, |seen| seen.len() >= n).await;
    assert_eq!(replica.owned().len(), Partition::all(PARTITIONS).count());
    assert_exactly_once_in_order(&record.all(), &published);
    assert_eq!(replica.shutdown().await.handled, n as u64);
}

#[tokio::test]
async fn scaling_one_to_three_rebalances_without_skipping_or_reordering() {
    let bus = Arc::new(Bus::start(TTL).await);
    let record = Record::default();
    let first = Replica::start(bus.config("r1", TTL), record.handler("r1"))
        .await
        .expect("start");
    // Events keep coming while the replicas join.
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let mut published = BTreeSet::new();
            for round in 0..6 {
                publish_round(&bus, round, &mut published).await;
                tokio::time::sleep(Duration::from_millis(100)).await; // a steady pace, not a sync
            }
            published
        })
    };
    record.wait(WITHIN, |seen| seen.len() >= 20).await;
    let second = Replica::start(bus.config("r2", TTL), record.handler("r2"))
        .await
        .expect("start");
    let third = Replica::start(bus.config("r3", TTL), record.handler("r3"))
        .await
        .expect("start");
    wait_balanced(&[&first, &second, &third], WITHIN).await;
    let published = publisher.await.expect("publisher");
    let n = published.len();
    record.wait(WITHIN, |seen| seen.len() >= n).await;
    let seen = record.all();
    assert_exactly_once_in_order(&seen, &published);
    let replicas: BTreeSet<&str> = seen.iter().map(|s| s.replica.as_str()).collect();
    assert_eq!(replicas.len(), 3, "every replica handled events");
    // After the rebalance each partition is handled by one replica only.
    for partition in Partition::all(PARTITIONS) {
        let owners = [&first, &second, &third]
            .iter()
            .filter(|r| r.owned().contains(&partition))
            .count();
        assert_eq!(owners, 1, "partition {partition}");
    }
    for replica in [first, second, third] {
        replica.shutdown().await;
    }
}

#[tokio::test]
async fn a_killed_replica_fails_over_within_the_lease_ttl() {
    let bus = Bus::start(TTL).await;
    let record = Record::default();
    let survivor = Replica::start(bus.config("a", TTL), record.handler("a"))
        .await
        .expect("start");
    // The victim hangs on its events: one is in flight, unacknowledged, when it dies.
    let stalled = Record::default();
    let victim_handler = {
        let stalled = stalled.clone();
        move |event: Event| {
            stalled.push(Seen {
                replica: "b".into(),
                partition: event.partition,
                seq: event.seq,
                stream_seq: event.stream_seq,
                delivered: event.delivered,
            });
            std::future::pending::<Result<(), HandlerError>>()
        }
    };
    let victim = Replica::start(bus.config("b", TTL), victim_handler)
        .await
        .expect("start");
    wait_balanced(&[&survivor, &victim], WITHIN).await;
    let victims: BTreeSet<Partition> = victim.owned();
    let Some(Partition::Guild(p)) = victims.iter().copied().find(|p| *p != Partition::Global)
    else {
        panic!("the victim owns a guild partition: {victims:?}");
    };
    let in_flight = bus.publish(Some(guild_in(p, 0))).await;
    let queued = bus.publish(Some(guild_in(p, 1))).await;
    stalled.wait(WITHIN, |seen| !seen.is_empty()).await;
    assert_eq!(stalled.all()[0].seq, in_flight);

    let killed = Instant::now();
    drop(victim); // no release: its leases and its event in flight wait for the TTL
    let mut ownership = survivor.ownership();
    let all: BTreeSet<Partition> = Partition::all(PARTITIONS).collect();
    tokio::time::timeout(WITHIN, ownership.wait_for(|owned| *owned == all))
        .await
        .expect("the survivor takes every partition")
        .expect("ownership");
    let failover = killed.elapsed();
    // Expiry after at most one TTL, seen at the next tick (a third of the TTL); a second of slack
    // for a loaded machine.
    assert!(
        failover <= TTL + TTL / 3 + Duration::from_secs(1),
        "failover took {failover:?}"
    );
    // The event in flight comes back (a redelivery), then the next one, in order.
    record
        .wait(WITHIN, |seen| seen.iter().any(|s| s.seq == queued))
        .await;
    let seen = record.all();
    let mine: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.partition == Partition::Guild(p))
        .collect();
    assert_eq!(
        mine.iter().map(|s| s.seq).collect::<Vec<_>>(),
        [in_flight, queued]
    );
    assert!(
        mine[0].delivered >= 2,
        "the in-flight event is a redelivery"
    );
    assert_in_order(&seen);
    eprintln!("failover after {failover:?}");
    survivor.shutdown().await;
}

#[tokio::test]
async fn a_clean_shutdown_hands_over_at_once() {
    let bus = Bus::start(TTL).await;
    let record = Record::default();
    let stays = Replica::start(bus.config("a", TTL), record.handler("a"))
        .await
        .expect("start");
    let leaves = Replica::start(bus.config("b", TTL), record.handler("b"))
        .await
        .expect("start");
    wait_balanced(&[&stays, &leaves], WITHIN).await;
    let held = leaves.owned().len() as u64;
    let started = Instant::now();
    let stats = leaves.shutdown().await;
    assert_eq!(
        stats.released, held,
        "every lease released, none left to expire"
    );
    let mut ownership = stays.ownership();
    let all: BTreeSet<Partition> = Partition::all(PARTITIONS).collect();
    tokio::time::timeout(WITHIN, ownership.wait_for(|owned| *owned == all))
        .await
        .expect("the other replica takes every partition")
        .expect("ownership");
    let handover = started.elapsed();
    // No waiting for an expiry: the releases wake the other replica (a bound for loaded machines).
    assert!(handover < TTL * 2, "hand-over took {handover:?}");
    eprintln!("clean hand-over in {handover:?}");
    let mut published = BTreeSet::new();
    publish_round(&bus, 0, &mut published).await;
    let n = published.len();
    record.wait(WITHIN, |seen| seen.len() >= n).await;
    assert_exactly_once_in_order(&record.all(), &published);
    stays.shutdown().await;
}

#[tokio::test]
async fn bus_outages_are_ridden_out() {
    let mut bus = Bus::start(TTL).await;
    let record = Record::default();
    let replica = Replica::start(bus.config("r", TTL), record.handler("r"))
        .await
        .expect("start");
    let mut published = BTreeSet::new();
    publish_round(&bus, 0, &mut published).await;
    let n = published.len();
    record.wait(WITHIN, |seen| seen.len() >= n).await;
    // Interest retention: an event leaves the stream once acknowledged.
    bus.wait_settled(WITHIN).await;

    // A restart (SIGTERM, as Kubernetes stops the NATS pod), down for longer than the lease
    // TTL (the outage itself, not a wait for an event): the leases expire meanwhile, the store
    // and the acknowledgements survive. Exactly once, in order.
    bus.server.stop_gracefully();
    tokio::time::sleep(TTL * 2).await;
    bus.server.restart();
    publish_round(&bus, 1, &mut published).await;
    let n = published.len();
    record.wait(WITHIN, |seen| seen.len() >= n).await;
    assert_exactly_once_in_order(&record.all(), &published);
    let mut ownership = replica.ownership();
    let all: BTreeSet<Partition> = Partition::all(PARTITIONS).collect();
    tokio::time::timeout(WITHIN, ownership.wait_for(|owned| *owned == all))
        .await
        .expect("every partition owned again")
        .expect("ownership");

    // A crash of the server (SIGKILL): it may lose its last acknowledgements, so events it had
    // acknowledged come again. At least once, and each partition replays in order.
    bus.wait_settled(WITHIN).await;
    let handled_before_crash = record.all().len();
    bus.server.stop();
    bus.server.restart();
    publish_round(&bus, 2, &mut published).await;
    record
        .wait(WITHIN, |seen| {
            let handled: BTreeSet<u64> = seen.iter().map(|s| s.seq).collect();
            handled.is_superset(&published)
        })
        .await;
    let after_crash = record.all().split_off(handled_before_crash);
    let mut first_seen = BTreeSet::new();
    let firsts: Vec<Seen> = after_crash
        .into_iter()
        .filter(|s| first_seen.insert(s.seq))
        .collect();
    assert_in_order(&firsts);
    replica.shutdown().await;
}
