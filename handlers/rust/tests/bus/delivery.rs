//! What reaches the handler: duplicates dropped by the stream, bad messages terminated without
//! blocking their partition, a failing handler retried in place then given up on.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use shardset_contract::bus::{self, Partition, header};
use shardset_handler::{Event, HandlerError, Replica};

use crate::support::{Bus, Record, Seen, assert_exactly_once_in_order, guild_in};

const TTL: Duration = Duration::from_millis(1500);
const WITHIN: Duration = Duration::from_secs(20);

#[tokio::test]
async fn duplicates_by_msg_id_are_dropped_by_the_stream() {
    let bus = Bus::start(TTL).await;
    let guild = Some(guild_in(1, 0));
    // A successor resuming the session replays seq 1 with the same session id; the other
    // layout publishes a claimed event under its content key twice (both layouts).
    let session = bus::session_msg_id("sess", 1);
    let content = bus::content_msg_id(&format!("{:032x}", 0xabcdef_u128));
    let mut duplicates = Vec::new();
    for (id, seq) in [(&session, 1), (&session, 1), (&content, 2), (&content, 7)] {
        let ack = bus
            .publish_raw(guild, id, seq, br#"{"id":"1"}"#.to_vec())
            .await;
        duplicates.push(ack.await.expect("ack").duplicate);
    }
    assert_eq!(duplicates, [false, true, false, true]);
    // Same payload, distinct ids (a reaction added, removed, added again): all kept.
    let again = bus
        .publish_raw(
            guild,
            &bus::session_msg_id("sess", 3),
            3,
            br#"{"id":"1"}"#.to_vec(),
        )
        .await;
    assert!(!again.await.expect("ack").duplicate);

    let record = Record::default();
    let replica = Replica::start(bus.config("r", TTL), record.handler("r"))
        .await
        .expect("start");
    record.wait(WITHIN, |seen| seen.len() >= 3).await;
    let seqs: Vec<u64> = record.all().iter().map(|s| s.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    let info = bus
        .js
        .get_stream(&bus.stream)
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .clone();
    assert_eq!(
        info.config.duplicate_window,
        bus::DEFAULT_DUPLICATE_WINDOW,
        "the protocol's window"
    );
    replica.shutdown().await;
}

#[tokio::test]
async fn bad_messages_are_reported_and_terminated_without_blocking_the_partition() {
    let bus = Bus::start(TTL).await;
    let guild = guild_in(2, 0);
    let subject = bus::event_subject(
        &bus.prefix,
        Partition::of(Some(guild), crate::support::PARTITIONS),
    );
    // No headers at all.
    bus.js
        .publish(subject.clone(), "{}".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    // Headers, but the payload is not JSON.
    bus.publish_raw(Some(guild), "s:x:1", 1, b"{not json".to_vec())
        .await
        .await
        .expect("ack");
    // A seq that is not a number.
    let mut headers = HeaderMap::new();
    headers.insert(header::EVENT, "MESSAGE_CREATE");
    headers.insert(header::SHARD, "0");
    headers.insert(header::TOTAL, "16");
    headers.insert(header::SEQ, "first");
    bus.js
        .publish_with_headers(subject, headers, "{}".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let good = bus.publish(Some(guild)).await;

    let record = Record::default();
    let replica = Replica::start(bus.config("r", TTL), record.handler("r"))
        .await
        .expect("start");
    record.wait(WITHIN, |seen| !seen.is_empty()).await;
    assert_eq!(
        record.all().iter().map(|s| s.seq).collect::<Vec<_>>(),
        [good]
    );
    let stats = replica.shutdown().await;
    assert_eq!((stats.bad, stats.handled), (3, 1));
    // Nothing left pending on that partition's consumer.
    let consumer_name = bus::consumer_name(
        &bus.stream,
        bus::DEFAULT_GROUP,
        Partition::of(Some(guild), crate::support::PARTITIONS),
    );
    let mut stream = bus.js.get_stream(&bus.stream).await.expect("stream");
    let mut consumer: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer(&consumer_name).await.expect("consumer");
    let info = consumer.info().await.expect("info");
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0));
    // Interest retention: settled messages (terminated included) leave the stream.
    assert_eq!(stream.info().await.expect("info").state.messages, 0);
}

#[tokio::test]
async fn a_failing_handler_is_retried_in_order_then_given_up_on() {
    let bus = Bus::start(TTL).await;
    let guild = Some(guild_in(0, 0));
    let flaky = bus.publish(guild).await; // fails twice, then succeeds
    let poison = bus.publish(guild).await; // always fails (and panics once)
    let after = bus.publish(guild).await;
    let record = Record::default();
    let attempts = Arc::new(AtomicU64::new(0));
    let handler = {
        let record = record.clone();
        let attempts = attempts.clone();
        move |event: Event| {
            let record = record.clone();
            let attempts = attempts.clone();
            async move {
                record.push(Seen::of("r", &event));
                if event.seq == flaky && event.delivered < 3 {
                    return Err(HandlerError::from("not yet"));
                }
                if event.seq == poison {
                    if attempts.fetch_add(1, Ordering::Relaxed) == 0 {
                        panic!("a handler bug");
                    }
                    return Err(HandlerError::from("never"));
                }
                Ok(())
            }
        }
    };
    let mut config = bus.config("r", TTL);
    config.max_attempts = 3;
    let replica = Replica::start(config, handler).await.expect("start");
    record
        .wait(WITHIN, |seen| seen.iter().any(|s| s.seq == after))
        .await;
    let order: Vec<(u64, u64)> = record.all().iter().map(|s| (s.seq, s.delivered)).collect();
    assert_eq!(
        order,
        [
            (flaky, 1),
            (flaky, 2),
            (flaky, 3),
            (poison, 1),
            (poison, 2),
            (poison, 3),
            (after, 1)
        ],
        "retried in place: nothing overtakes a failing event"
    );
    let stats = replica.shutdown().await;
    assert_eq!((stats.handled, stats.failed, stats.terminated), (2, 4, 1));
    let published: BTreeSet<u64> = [flaky, poison, after].into();
    let handled_once: Vec<Seen> = record
        .all()
        .into_iter()
        .filter(|s| s.delivered == 1)
        .collect();
    assert_exactly_once_in_order(&handled_once, &published);
}
