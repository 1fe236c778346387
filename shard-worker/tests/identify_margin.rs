//! The gate's margin against a first Identify that reaches Discord late: real `shard-worker`
//! processes, the fake Discord and a real redis-server. Shards 0 and 1 share one bucket and run
//! in two pods; shard 0's pod reaches the fake through a relay that delivers what it sends late
//! (a lost segment, resent after the RTO), so its Identify arrives after its gate's window began
//! at the send; shard 1's pod identifies on time as soon as the gate lets it. Discord measures
//! the window between arrivals: the margin must cover the delay.

mod common;

use std::time::Duration;

use common::lag::Lag;
use common::scenario::{Scenario, wait_until};
use common::worker::WorkerProcess;
use fake_discord::control::Violation;

/// What one lost segment costs on Linux: the lone segment is resent after its RTO, at least
/// 200 ms (`TCP_RTO_MIN`) plus the smoothed round trip, here 50 ms.
const LOST_SEGMENT: Duration = Duration::from_millis(250);

/// Shard 0 (its pod's traffic `delay` late) and shard 1 (on time), one bucket, both identifying
/// after the first-use hold of a fresh Redis; `margin_ms` for both pods (`None`: the default).
/// Returns the gap between the two Identifies' arrivals at the fake, and its violations.
async fn late_first_identify(
    window_ms: u64,
    margin_ms: Option<u64>,
    delay: Duration,
) -> (Duration, Vec<Violation>) {
    let s = Scenario::start(1, window_ms, 1_000).await;
    let lag = Lag::start(s.fake.addr().port(), delay).await;
    let mut late = s.spec("late", 0, 0, 2);
    late.api_url = lag.api_url();
    late.margin_ms = margin_ms;
    let mut on_time = s.spec("on-time", 1, 1, 2);
    on_time.margin_ms = margin_ms;
    let late = WorkerProcess::start(late);
    let on_time = WorkerProcess::start(on_time);
    let both = wait_until(Duration::from_secs(60), || async { s.identifies() >= 2 }).await;
    assert!(
        both,
        "two Identifies\nlate:\n{}\non time:\n{}",
        late.log_text(),
        on_time.log_text()
    );
    let mut identifies = s.fake.state().identifies();
    identifies.sort_by_key(|i| i.at_us);
    let order: Vec<u32> = identifies.iter().map(|i| i.shard).take(2).collect();
    assert_eq!(order, [0, 1], "the lower shard id first (the late one)");
    let gap = Duration::from_micros(identifies[1].at_us - identifies[0].at_us);
    (gap, s.fake.state().violations())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_margin_covers_a_first_identify_resent_after_a_lost_segment() {
    // Discord's window, the worker's default margin.
    let (gap, violations) = late_first_identify(5_000, None, LOST_SEGMENT).await;
    assert!(
        violations.is_empty(),
        "arrivals {gap:?} apart: {violations:#?}"
    );
    assert!(gap >= Duration::from_millis(5_000), "{gap:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identify_later_than_the_margin_breaks_no_window() {
    // A scaled window, the short margin (100 ms; the shards' answer margin is 25 ms) and a
    // first Identify 400 ms late (a lost segment and its resend under a loaded host): the
    // window runs from Discord's answer, not from the send, so the margin does not have to
    // cover the delay.
    let (gap, violations) = late_first_identify(1_000, Some(100), Duration::from_millis(400)).await;
    assert!(
        violations.is_empty(),
        "arrivals {gap:?} apart: {violations:#?}"
    );
    assert!(gap >= Duration::from_millis(1_000), "{gap:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identify_whose_connection_is_lost_unanswered_breaks_no_window() {
    // Shard 0's connection ends on its side, without the gateway's Close, right after its
    // Identify left; the Identify still reaches the fake 400 ms later. No answer came, so the
    // gate must keep its first TTL: a window started at the loss (window + the 25 ms answer
    // margin) would let shard 1 of the same bucket arrive ~375 ms inside the window.
    let s = Scenario::start(1, 1_000, 1_000).await;
    let lag = Lag::start_cutting_identify(s.fake.addr().port(), Duration::from_millis(400)).await;
    let mut cut = s.spec("cut", 0, 0, 2);
    cut.api_url = lag.api_url();
    cut.margin_ms = Some(100);
    let mut on_time = s.spec("on-time", 1, 1, 2);
    on_time.margin_ms = Some(100);
    let cut = WorkerProcess::start(cut);
    let on_time = WorkerProcess::start(on_time);
    // Shard 0's first Identify (cut), then its second and shard 1's, in some order.
    let all = wait_until(Duration::from_secs(60), || async { s.identifies() >= 3 }).await;
    assert!(
        all,
        "three Identifies\ncut:\n{}\non time:\n{}",
        cut.log_text(),
        on_time.log_text()
    );
    let mut identifies = s.fake.state().identifies();
    identifies.sort_by_key(|i| i.at_us);
    let gaps: Vec<Duration> = identifies
        .windows(2)
        .map(|w| Duration::from_micros(w[1].at_us - w[0].at_us))
        .collect();
    assert_eq!(identifies[0].shard, 0, "the cut Identify first");
    let violations = s.fake.state().violations();
    assert!(
        violations.is_empty(),
        "arrivals {gaps:?} apart: {violations:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand: cargo test -p shard-worker --test identify_margin -- --ignored --nocapture"]
async fn measure_the_margin_a_late_first_identify_needs() {
    // The shards confirm the gate at the gateway's answer, so they hold window + the answer
    // margin (25 ms, or IDENTIFY_MARGIN_MS when lower): the gap at the fake is that plus the
    // answer's trip and the second pod's own lateness (its poll jitter and Redis round trips),
    // whatever the delay. A 1 s window keeps each run short; the jitter it allows (0.5 %) is
    // smaller than at 5 s.
    let window_ms = 1_000;
    println!("window {window_ms} ms | delay ms | IDENTIFY_MARGIN_MS | arrival gap ms | violations");
    for delay_ms in [100u64, 200, 250, 300, 400] {
        for margin_ms in [10u64, 25, 100] {
            let (gap, violations) =
                late_first_identify(window_ms, Some(margin_ms), Duration::from_millis(delay_ms))
                    .await;
            println!(
                "| {delay_ms} | {margin_ms} | {:.1} | {} |",
                gap.as_secs_f64() * 1_000.0,
                violations.len()
            );
        }
    }
}
