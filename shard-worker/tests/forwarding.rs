//! The default handler's forwarder (`FORWARD_URL`) with a real `shard-worker` process, the fake
//! Discord and a real redis-server: what reaches the endpoint when it fails for a while.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::collector::Collector;
use common::metrics::sample;
use common::scenario::{Scenario, wait_until};
use common::worker::WorkerProcess;

const READY: Duration = Duration::from_secs(30);

/// Waits until the endpoint got shard 0's dispatch `last` (the fake's seq once the load stopped),
/// checks that none of the session's dispatches up to the newest it got is missing, and returns
/// every seq it got, in the order it got them.
async fn delivered(s: &Scenario, collector: &Collector) -> Vec<u64> {
    let last = s.live_session(0).expect("live").seq;
    let caught_up = wait_until(Duration::from_secs(60), || async {
        collector.snapshot().iter().any(|f| f.seq >= last)
    })
    .await;
    assert!(caught_up, "the endpoint caught up to seq {last}");
    // More may have come after `last` was read.
    let seqs: Vec<u64> = collector.snapshot().iter().map(|f| f.seq).collect();
    let newest = seqs.iter().copied().max().unwrap_or(0);
    let missing: Vec<u64> = (1..=newest).filter(|q| !seqs.contains(q)).collect();
    assert!(
        missing.is_empty(),
        "{} dispatches never delivered (first {:?})",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_fails_for_a_while_gets_every_dispatch_in_order() {
    let s = Scenario::start(1, 200, 1_000).await;
    let collector = Collector::default();
    let (forward_url, _server) = collector.start().await;
    let mut spec = s.spec("fwd", 0, 0, 1);
    spec.forward_url = Some(forward_url);
    let worker = WorkerProcess::start(spec);
    assert!(worker.wait_ready(READY).await, "{}", worker.log_text());
    // The endpoint answers 500 for 4 s while dispatches keep coming, then recovers.
    collector.fail(true);
    s.set_load(100);
    tokio::time::sleep(Duration::from_secs(4)).await;
    collector.fail(false);
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.set_load(0);
    // Every dispatch of the session, each once, in the order the gateway sent them.
    let seqs = delivered(&s, &collector).await;
    let out_of_order = seqs.windows(2).position(|w| w[1] != w[0] + 1);
    assert_eq!(
        out_of_order,
        None,
        "each once, in order: {:?}",
        out_of_order.map(|i| &seqs[i..(i + 2)])
    );
    assert!(
        collector.refused.load(Ordering::SeqCst) > 0,
        "the endpoint did fail"
    );
    let metrics = worker.metrics().await;
    assert!(
        sample(&metrics, "shardset_worker_forward_retries_total").unwrap_or(0.0) > 0.0,
        "retries are counted:\n{metrics}"
    );
    s.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_while_the_endpoint_fails_ends_the_retries_and_the_next_owner_replays_the_rest() {
    let s = Scenario::start(1, 200, 1_000).await;
    let collector = Collector::default();
    let (forward_url, _server) = collector.start().await;
    let mut spec = s.spec("fwd-a", 0, 0, 1);
    spec.forward_url = Some(forward_url);
    let mut first = WorkerProcess::start(spec.clone());
    assert!(first.wait_ready(READY).await, "{}", first.log_text());
    // READY first (a resume never replays it, Discord's does not either).
    assert!(
        wait_until(Duration::from_secs(10), || async {
            collector.snapshot().iter().any(|f| f.seq == 1)
        })
        .await,
        "READY forwarded"
    );
    collector.fail(true);
    s.set_load(200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.set_load(0);
    // The endpoint still fails: the retries end with the shutdown, the process exits.
    let started = tokio::time::Instant::now();
    assert_eq!(
        first.terminate(Duration::from_secs(30)).await,
        Some(0),
        "clean exit"
    );
    eprintln!("exited {:?} after SIGTERM", started.elapsed());
    assert!(
        first.log_text().contains("the next owner replays them"),
        "{}",
        first.log_text()
    );
    collector.fail(false);
    spec.pod = "fwd-b".into();
    let second = WorkerProcess::start(spec);
    assert!(second.wait_ready(READY).await, "{}", second.log_text());
    delivered(&s, &collector).await;
    assert_eq!(s.identifies(), 1, "the next owner resumed");
}
