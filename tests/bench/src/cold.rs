//! The first benchmark, cold start: N shards over P `shard-worker` processes sharing Redis
//! against the minimum `(ceil(N/C) − 1) × window + first READY`, twilight's one process beside;
//! the fake's violations and the gaps between a bucket's Identifies (at arrival, and as the fake
//! judged them).

use std::time::{Duration, Instant};

use fake_discord::control::{bucket_gaps_ms, quantile, spread};
use fake_discord::{Config, RunningFake};

use crate::clients::{Binaries, Twilight, Worker};
use crate::{Args, Redis, fake, wait_ready};

/// The gaps between consecutive accepted Identifies of each bucket, in ms: at arrival (the
/// kernel's receive stamps, what the fake's rules use) and as the fake got round to judging them
/// (arrival + its lag: what a fake timing at processing would have measured).
fn gaps_arrival_and_judged(fake: &RunningFake) -> (Vec<f64>, Vec<f64>) {
    let records = fake.state().identifies();
    (
        bucket_gaps_ms(&records, |i| i.at_us),
        bucket_gaps_ms(&records, |i| i.at_us + i.lag_us),
    )
}

/// Prints the distribution of the bucket gaps and of the fake's own lag.
fn report_gaps(fake: &RunningFake, window_ms: u64) {
    let (arrival, judged) = gaps_arrival_and_judged(fake);
    let window = window_ms as f64;
    let over: Vec<f64> = arrival.iter().map(|g| g - window).collect();
    println!(
        "  bucket gaps at arrival, beyond the window (ms): {}  ({} gaps)",
        spread(&over),
        over.len()
    );
    let short = judged.iter().filter(|&&g| g < window).count();
    println!(
        "  timed when judged instead (arrival + the fake's lag): min gap {:.1} ms, {short} gaps under the window",
        quantile(&judged, 0.0)
    );
    let mut lag: Vec<f64> = fake
        .state()
        .identifies()
        .iter()
        .map(|i| i.lag_us as f64 / 1000.0)
        .collect();
    lag.sort_by(f64::total_cmp);
    println!(
        "  the fake's lag from arrival to judging an Identify (ms): p50 {:.2}  p99 {:.2}  max {:.2}",
        quantile(&lag, 0.5),
        quantile(&lag, 0.99),
        quantile(&lag, 1.0)
    );
}

pub async fn cold_start(args: &Args, bins: &Binaries, redis: &mut Redis) -> anyhow::Result<()> {
    let n = args.shards;
    let c = args.concurrency;
    let config = Config {
        max_concurrency: c,
        identify_window_ms: args.window_ms,
        guilds: n * 4,
        // Discord raises the daily limit for large bots; 1,000 would run out at 1,024 shards.
        session_start_limit: (2 * n).max(1_000),
        ..Config::default()
    };
    let rounds = n.div_ceil(c).saturating_sub(1);
    let floor = Duration::from_millis(args.window_ms * u64::from(rounds));
    let compression = args.first_compression();
    println!(
        "\n== cold start: {n} shards, max_concurrency {c}, Identify window {} ms, {compression} (shard-worker: {} processes sharing Redis; twilight: 1 process, its InMemoryQueue, {})",
        args.window_ms,
        args.processes,
        bins.twilight(compression).compression
    );
    println!(
        "{:<14} {:>10} {:>12} {:>10} {:>8} {:>11} {:>16}",
        "client", "all READY", "first READY", "minimum", "ratio", "violations", "min bucket gap"
    );

    // shard-worker
    redis.reset().await?;
    let f = fake(config.clone()).await?;
    let per = n.div_ceil(args.processes);
    let start = Instant::now();
    let mut workers = Vec::new();
    for p in 0..args.processes {
        let first = p * per;
        if first >= n {
            break;
        }
        let last = (first + per - 1).min(n - 1);
        workers.push(Worker::spawn(
            &bins.worker(compression),
            &f,
            redis,
            (first, last, n),
            args.window_ms,
            args.margin_ms,
        )?);
    }
    let (first, all) = wait_ready(&f, n, n as usize, start, Duration::from_secs(300)).await?;
    let ours = report_cold("shard-worker", &f, first, all, floor);
    report_gaps(&f, args.window_ms);
    drop(workers);
    f.shutdown().await;
    if args.worker_only {
        return Ok(());
    }

    // twilight
    let f = fake(config).await?;
    let start = Instant::now();
    let twilight = Twilight::spawn(&bins.twilight(compression), &f, (0, n - 1, n), c).await?;
    let (first, all) = wait_ready(&f, n, n as usize, start, Duration::from_secs(300)).await?;
    let theirs = report_cold("twilight", &f, first, all, floor);
    drop(twilight);
    f.shutdown().await;
    println!("ratio to minimum, shard-worker / twilight: {ours:.3} / {theirs:.3}");
    Ok(())
}

fn report_cold(
    name: &str,
    f: &RunningFake,
    first: Duration,
    all: Duration,
    floor: Duration,
) -> f64 {
    let minimum = floor + first;
    let ratio = all.as_secs_f64() / minimum.as_secs_f64();
    let (arrival, _) = gaps_arrival_and_judged(f);
    let gap = arrival
        .first()
        .map_or("-".to_owned(), |g| format!("{g:.1} ms"));
    println!(
        "{name:<14} {:>9.3}s {:>11.3}s {:>9.3}s {:>8.3} {:>11} {:>16}",
        all.as_secs_f64(),
        first.as_secs_f64(),
        minimum.as_secs_f64(),
        ratio,
        f.state().violations().len(),
        gap
    );
    ratio
}
