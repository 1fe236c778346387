//! The replica's bus metrics against a real nats-server (README "Metrics and endpoints"): an
//! event held by the handler shows as lag and pending on its partition, a refused one as a
//! redelivery, and the partitions owned are counted; read from the registry's text, as
//! Prometheus reads `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use shardset_handler::{Event, HandlerError, Metrics, Replica};
use tokio::sync::{Notify, Semaphore};

use crate::support::{Bus, PARTITIONS, Record, Seen, guild_in};

const TTL: Duration = Duration::from_millis(1500);
const WITHIN: Duration = Duration::from_secs(20);

/// The value of the series `name{labels}` in the registry's text, if present.
fn value(registry: &Registry, series: &str) -> Option<f64> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until the series' value satisfies `ok` (the backlog is sampled every 50 ms, and
/// nothing announces a sample: this re-reads the registry meanwhile).
async fn wait_value(registry: &Registry, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let waiting = async {
        loop {
            if let Some(v) = value(registry, series).filter(|v| ok(*v)) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    match tokio::time::timeout(WITHIN, waiting).await {
        Ok(v) => v,
        Err(_) => panic!(
            "{series} not as expected within {WITHIN:?}: {:?}",
            value(registry, series)
        ),
    }
}

#[tokio::test]
async fn lag_pending_redeliveries_and_partitions_owned_are_exported() {
    let bus = Bus::start(TTL).await;
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry, &bus.stream, "default");
    let series = |name: &str, partition: &str| {
        format!(
            "shardset_bus_{name}{{stream=\"{}\",partition=\"{partition}\"}}",
            bus.stream
        )
    };
    let owned = format!(
        "shardset_bus_partitions_owned{{stream=\"{}\",group=\"default\"}}",
        bus.stream
    );

    // The handler holds each event of partition 0 until given a permit, and refuses the first
    // delivery of the second event.
    let permits = Arc::new(Semaphore::new(0));
    let started = Arc::new(Notify::new());
    let record = Record::default();
    let handler = {
        let (permits, started, record) = (permits.clone(), started.clone(), record.clone());
        move |event: Event| {
            let (permits, started, record) = (permits.clone(), started.clone(), record.clone());
            async move {
                if event.seq == 2 && event.delivered == 1 {
                    return Err::<(), HandlerError>("refused once".into());
                }
                started.notify_one();
                permits.acquire().await.expect("open").forget();
                record.push(Seen::of("r", &event));
                Ok(())
            }
        }
    };
    let mut config = bus.config("r", TTL);
    config.backlog_every = Duration::from_millis(50);
    let replica = Replica::start_with_metrics(config, handler, metrics)
        .await
        .expect("start");
    let every_partition = f64::from(PARTITIONS + 1);
    wait_value(&registry, &owned, |v| v == every_partition).await;
    // Nothing published yet: the owned partitions export 0 lag, 0 pending.
    assert_eq!(
        wait_value(&registry, &series("consumer_pending_messages", "0"), |_| {
            true
        })
        .await,
        0.0
    );
    assert_eq!(
        value(&registry, &series("consumer_lag_seconds", "0")),
        Some(0.0)
    );

    let guild = Some(guild_in(0, 0));
    for _ in 0..3 {
        bus.publish(guild).await;
    }
    started.notified().await;
    // Event 1 is in hand (acknowledgement pending), 2 and 3 wait behind it.
    wait_value(&registry, &series("consumer_pending_messages", "0"), |v| {
        v == 3.0
    })
    .await;
    let lag = wait_value(&registry, &series("consumer_lag_seconds", "0"), |v| v > 0.2).await;
    assert!(lag < 20.0, "lag {lag} s: the age of event 1");
    // Other partitions hold nothing.
    assert_eq!(
        value(&registry, &series("consumer_pending_messages", "1")),
        Some(0.0)
    );

    permits.add_permits(3);
    record.wait(WITHIN, |seen| seen.len() == 3).await;
    let seqs: Vec<u64> = record.all().iter().map(|s| s.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(
        value(&registry, &series("redeliveries_total", "0")),
        Some(1.0),
        "event 2, refused once"
    );
    wait_value(&registry, &series("consumer_pending_messages", "0"), |v| {
        v == 0.0
    })
    .await;
    wait_value(&registry, &series("consumer_lag_seconds", "0"), |v| {
        v == 0.0
    })
    .await;

    // Leaving: no partition owned, their gauges gone (the next owner exports them).
    replica.shutdown().await;
    assert_eq!(value(&registry, &owned), Some(0.0));
    assert_eq!(
        value(&registry, &series("consumer_pending_messages", "0")),
        None
    );
    assert_eq!(value(&registry, &series("consumer_lag_seconds", "0")), None);
}
