//! Side-by-side benchmarks of the shard worker and twilight-gateway 0.18 on the fake Discord,
//! in one run, printing ratios (`make bench`). Measured, never asserted.
//!
//! 1. Cold start: N shards over P `shard-worker` processes sharing Redis, against the theoretical
//!    minimum `(ceil(N/C) − 1) × window + one connect` (one connect = the first READY of the run),
//!    and the fake's violation count; twilight runs the same shards in one process with its own
//!    `InMemoryQueue` (which cannot span processes). Discord's real 5 s window by default, because
//!    twilight's queue has it built in.
//! 2. Memory: RSS per connected shard, `(RSS(K shards) − RSS(1 shard)) / (K − 1)`.
//!
//! The worker's transport compression is `--compression` (env `GATEWAY_COMPRESSION`, default
//! zlib-stream: what the twilight side speaks, so the two compare like for like).
//! 3. Throughput: both clients hold the same layout on one fake, which sends every synthetic
//!    MESSAGE_CREATE to both; dispatches handled per CPU-second of each client process (inflate +
//!    parse + handler).
//! 4. The bus path ([`bus`]): the worker's dispatches per CPU-second publishing to a local
//!    `nats-server` with acks, beside the same worker handling the same load in process.

mod bus;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use fake_discord::control::{IdentifyOutcome, LoadSettings};
use fake_discord::{Config, FakeDiscord, RunningFake};
use redis_test_server::RedisServer;
use shardset_contract::{GatewayCompression, Keys, env};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Debug, Clone, Parser)]
#[command(about = "Side-by-side benchmarks: shard-worker vs twilight-gateway on the fake Discord")]
struct Args {
    /// Which benchmarks to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "cold,memory,throughput,bus"
    )]
    only: Vec<String>,
    /// Cold start: shards.
    #[arg(long, default_value_t = 64)]
    shards: u32,
    /// Cold start: worker processes (shard-worker side).
    #[arg(long, default_value_t = 8)]
    processes: u32,
    /// Cold start: max_concurrency.
    #[arg(long, default_value_t = 16)]
    concurrency: u32,
    /// Cold start: Identify window of the fake (twilight's queue always waits 5000 ms).
    #[arg(long, default_value_t = 5_000)]
    window_ms: u64,
    /// Cold start: the workers' `IDENTIFY_MARGIN_MS` (default: the worker's own, 2 % of the
    /// window, at least 50 ms).
    #[arg(long)]
    margin_ms: Option<u64>,
    /// Cold start: the shard-worker side only (twilight's queue waits 5 s a round whatever the
    /// fake's window, so at 1,024 shards it alone takes over 5 minutes).
    #[arg(long)]
    worker_only: bool,
    /// Memory: shards in the large run.
    #[arg(long, default_value_t = 200)]
    memory_shards: u32,
    /// Throughput: shards per client.
    #[arg(long, default_value_t = 4)]
    load_shards: u32,
    /// Throughput: synthetic MESSAGE_CREATE per second (high enough that the clients' own work,
    /// not the wake-up per message, dominates; try 5000 for a lighter load).
    #[arg(long, default_value_t = 20_000)]
    load_rate: u32,
    /// Throughput: seconds of load.
    #[arg(long, default_value_t = 15)]
    load_seconds: u64,
    /// Throughput: bytes of each MESSAGE_CREATE's `d`.
    #[arg(long, default_value_t = 1_024)]
    payload_bytes: usize,
    /// The bus path: synthetic MESSAGE_CREATE per second (one worker handles them in process,
    /// then another publishes them to nats-server and waits for each acknowledgement).
    #[arg(long, default_value_t = 5_000)]
    bus_rate: u32,
    /// Use this shard-worker binary instead of the one beside this benchmark (e.g. a build with
    /// symbols, for perf).
    #[arg(long)]
    worker_bin: Option<PathBuf>,
    /// The shard-worker's transport compression (zstd-stream, zlib-stream, none); twilight's
    /// side always speaks zlib-stream.
    #[arg(long, env = env::GATEWAY_COMPRESSION, default_value_t = GatewayCompression::ZlibStream)]
    compression: GatewayCompression,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    shardset_contract::rest::install_crypto_provider();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut bins = Binaries::beside_me()?;
    if let Some(worker) = &args.worker_bin {
        bins.worker = worker.clone();
    }
    let mut redis = Redis::start().await?;
    if args.only.iter().any(|o| o == "cold") {
        cold_start(&args, &bins, &mut redis).await?;
    }
    if args.only.iter().any(|o| o == "memory") {
        memory(&args, &bins, &mut redis).await?;
    }
    if args.only.iter().any(|o| o == "throughput") {
        throughput(&args, &bins, &mut redis).await?;
    }
    if args.only.iter().any(|o| o == "bus") {
        bus::bus_path(&args, &bins, &mut redis).await?;
    }
    redis.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The two clients.

struct Binaries {
    worker: PathBuf,
    twilight: PathBuf,
}

impl Binaries {
    /// `shard-worker` and `twilight-shards` from the same target directory as this binary.
    fn beside_me() -> anyhow::Result<Self> {
        let me = std::env::current_exe()?;
        let dir = me.parent().context("binary directory")?;
        let bins = Self {
            worker: dir.join("shard-worker"),
            twilight: dir.join("twilight-shards"),
        };
        for bin in [&bins.worker, &bins.twilight] {
            if !bin.exists() {
                bail!(
                    "{} is missing: build it first (make bench does)",
                    bin.display()
                );
            }
        }
        Ok(bins)
    }

    /// The `shard-worker` as this run starts it.
    fn worker(&self, args: &Args) -> WorkerBin<'_> {
        WorkerBin {
            path: &self.worker,
            compression: args.compression,
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A `shard-worker` process.
struct Worker {
    child: Child,
    listen: String,
}

/// What every `shard-worker` process of a run is started with.
struct WorkerBin<'a> {
    path: &'a Path,
    compression: GatewayCompression,
}

impl Worker {
    fn spawn(
        bin: &WorkerBin<'_>,
        fake: &RunningFake,
        redis: &Redis,
        range: (u32, u32, u32),
        window_ms: u64,
        margin_ms: Option<u64>,
    ) -> anyhow::Result<Self> {
        let margin: Vec<_> = margin_ms
            .map(|margin| (env::IDENTIFY_MARGIN_MS, margin.to_string()))
            .into_iter()
            .collect();
        Self::spawn_with(bin, fake, redis, range, window_ms, &margin)
    }

    /// [`Worker::spawn`] with more env.
    fn spawn_with(
        bin: &WorkerBin<'_>,
        fake: &RunningFake,
        redis: &Redis,
        range: (u32, u32, u32),
        window_ms: u64,
        more_env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let listen = format!("127.0.0.1:{}", free_port());
        let child = Command::new(bin.path)
            .env_clear()
            .env("RUST_LOG", "warn")
            .env(env::GATEWAY_COMPRESSION, bin.compression.name())
            .env(env::SHARD_FIRST, range.0.to_string())
            .env(env::SHARD_LAST, range.1.to_string())
            .env(env::SHARD_TOTAL, range.2.to_string())
            .env(env::REDIS_URL, redis.url())
            .env(env::DISCORD_API_URL, fake.api_url())
            .env(env::DISCORD_TOKEN, "bench-token")
            .env(env::POD_NAME, format!("bench-{}-{}", range.0, range.1))
            .env(env::IDENTIFY_WINDOW_MS, window_ms.to_string())
            .env(env::WORKER_LISTEN, &listen)
            .envs(more_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("start shard-worker")?;
        Ok(Self { child, listen })
    }

    /// Dispatches handled.
    async fn events(&self) -> u64 {
        self.counter("shardset_worker_events_total").await
    }

    /// The sum of every sample of counter `name` on its `/metrics`.
    async fn counter(&self, name: &str) -> u64 {
        let Ok(response) = reqwest::get(format!("http://{}/metrics", self.listen)).await else {
            return 0;
        };
        let text = response.text().await.unwrap_or_default();
        let labelled = format!("{name}{{");
        text.lines()
            .filter(|l| l.starts_with(&labelled))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

/// A `twilight-shards` process and what it printed.
struct Twilight {
    child: Child,
    events: Arc<Mutex<u64>>,
}

impl Twilight {
    fn spawn(
        bin: &Path,
        fake: &RunningFake,
        range: (u32, u32, u32),
        concurrency: u32,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            .args([
                "--gateway-url",
                &fake.gateway_url(),
                "--first",
                &range.0.to_string(),
                "--last",
                &range.1.to_string(),
                "--total",
                &range.2.to_string(),
                "--max-concurrency",
                &concurrency.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start twilight-shards")?;
        let events = Arc::new(Mutex::new(0));
        let stdout = child.stdout.take().context("stdout")?;
        let seen = Arc::clone(&events);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(n) = line.strip_prefix("events ").and_then(|n| n.parse().ok()) {
                    *seen.lock().unwrap_or_else(|p| p.into_inner()) = n;
                }
            }
        });
        Ok(Self { child, events })
    }

    fn events(&self) -> u64 {
        *self.events.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) a process used so far, in seconds.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // rest starts at field 3 (state): utime = field 14 -> index 11, stime -> index 12.
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

// ---------------------------------------------------------------------------------------------
// Redis for the worker side.

struct Redis {
    server: RedisServer,
}

impl Redis {
    async fn start() -> anyhow::Result<Self> {
        // The workspace's fixture (a blocking start: it waits for PING).
        let server = tokio::task::spawn_blocking(RedisServer::start)
            .await
            .context("start redis-server (apt-get install redis-server)")?;
        let redis = Self { server };
        redis.reset().await?;
        Ok(redis)
    }

    fn url(&self) -> String {
        self.server.url()
    }

    /// Empties Redis and marks its epoch as long established (a warm Redis, as in any running
    /// deployment; a brand-new Redis holds every Identify for one window, by design).
    async fn reset(&self) -> anyhow::Result<()> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await?;
        let app_id = Config::default().application_id;
        let _: () = shard_worker::identify::gate::settle_epoch_script()
            .key(Keys::new(app_id).epoch())
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn stop(&mut self) {
        self.server.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers on the fake.

async fn fake(config: Config) -> anyhow::Result<RunningFake> {
    Ok(FakeDiscord::spawn(config, "127.0.0.1:0".parse()?).await?)
}

/// Waits until `count` sessions of layout `total` are READY; returns (first READY, all READY)
/// measured from `start`.
async fn wait_ready(
    fake: &RunningFake,
    total: u32,
    count: usize,
    start: Instant,
    timeout: Duration,
) -> anyhow::Result<(Duration, Duration)> {
    let mut first = None;
    loop {
        let ready = fake
            .state()
            .sessions()
            .iter()
            .filter(|s| s.num_shards == total && s.ready)
            .count();
        if ready > 0 && first.is_none() {
            first = Some(start.elapsed());
        }
        if ready >= count {
            return Ok((first.unwrap_or_default(), start.elapsed()));
        }
        if start.elapsed() > timeout {
            bail!("only {ready} of {count} shards READY after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The gaps between consecutive accepted Identifies of each bucket, in ms: at arrival (the
/// kernel's receive stamps, what the fake's rules use) and as the fake got round to judging them
/// (arrival + its lag: what a fake timing at processing would have measured).
fn bucket_gaps_ms(fake: &RunningFake) -> (Vec<f64>, Vec<f64>) {
    let mut by_bucket: HashMap<u32, Vec<(u64, u64)>> = HashMap::new();
    for i in fake.state().identifies() {
        if i.outcome == IdentifyOutcome::Accepted {
            by_bucket
                .entry(i.bucket)
                .or_default()
                .push((i.at_us, i.at_us + i.lag_us));
        }
    }
    let mut arrival = Vec::new();
    let mut judged = Vec::new();
    for times in by_bucket.values_mut() {
        times.sort_unstable();
        for w in times.windows(2) {
            arrival.push((w[1].0 - w[0].0) as f64 / 1000.0);
        }
        let mut at_judging: Vec<u64> = times.iter().map(|t| t.1).collect();
        at_judging.sort_unstable();
        judged.extend(at_judging.windows(2).map(|w| (w[1] - w[0]) as f64 / 1000.0));
    }
    arrival.sort_by(f64::total_cmp);
    judged.sort_by(f64::total_cmp);
    (arrival, judged)
}

/// The `q` quantile (0..=1) of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Prints the distribution of the bucket gaps and of the fake's own lag.
fn report_gaps(fake: &RunningFake, window_ms: u64) {
    let (arrival, judged) = bucket_gaps_ms(fake);
    let window = window_ms as f64;
    let over: Vec<f64> = arrival.iter().map(|g| g - window).collect();
    println!(
        "  bucket gaps at arrival, beyond the window (ms): min {:.1}  p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  ({} gaps)",
        quantile(&over, 0.0),
        quantile(&over, 0.5),
        quantile(&over, 0.9),
        quantile(&over, 0.99),
        quantile(&over, 1.0),
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

// ---------------------------------------------------------------------------------------------
// 1. Cold start.

async fn cold_start(args: &Args, bins: &Binaries, redis: &mut Redis) -> anyhow::Result<()> {
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
    println!(
        "\n== cold start: {n} shards, max_concurrency {c}, Identify window {} ms (shard-worker: {} processes sharing Redis; twilight: 1 process, its InMemoryQueue)",
        args.window_ms, args.processes
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
            &bins.worker(args),
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
    let twilight = Twilight::spawn(&bins.twilight, &f, (0, n - 1, n), c)?;
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
    let (arrival, _) = bucket_gaps_ms(f);
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

// ---------------------------------------------------------------------------------------------
// 2. Memory.

async fn memory(args: &Args, bins: &Binaries, redis: &mut Redis) -> anyhow::Result<()> {
    let k = args.memory_shards.max(2);
    println!(
        "\n== memory: RSS per connected shard (shard-worker: {}, twilight: zlib-stream), (RSS({k} shards) - RSS(1 shard)) / {}",
        args.compression,
        k - 1
    );
    let mut per_shard = Vec::new();
    for client in ["shard-worker", "twilight"] {
        let mut rss = Vec::new();
        for n in [1, k] {
            let config = Config {
                max_concurrency: n,
                identify_window_ms: 100,
                guilds: n * 4,
                ..Config::default()
            };
            let f = fake(config).await?;
            redis.reset().await?;
            let start = Instant::now();
            let pid = if client == "shard-worker" {
                let w = Worker::spawn(&bins.worker(args), &f, redis, (0, n - 1, n), 100, None)?;
                wait_ready(&f, n, n as usize, start, Duration::from_secs(120)).await?;
                tokio::time::sleep(Duration::from_secs(2)).await;
                let r = rss_kib(w.child.id());
                drop(w);
                r
            } else {
                let t = Twilight::spawn(&bins.twilight, &f, (0, n - 1, n), n)?;
                wait_ready(&f, n, n as usize, start, Duration::from_secs(120)).await?;
                tokio::time::sleep(Duration::from_secs(2)).await;
                let r = rss_kib(t.child.id());
                drop(t);
                r
            };
            rss.push(pid);
            f.shutdown().await;
        }
        let each = (rss[1] as f64 - rss[0] as f64) / f64::from(k - 1);
        println!(
            "{client:<14} RSS(1) {:>7} KiB   RSS({k}) {:>8} KiB   per shard {each:>7.1} KiB",
            rss[0], rss[1]
        );
        per_shard.push(each);
    }
    println!(
        "ratio per shard, shard-worker / twilight: {:.2} (aim: <= 0.5)",
        per_shard[0] / per_shard[1]
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Throughput.

async fn throughput(args: &Args, bins: &Binaries, redis: &mut Redis) -> anyhow::Result<()> {
    let n = args.load_shards;
    println!(
        "\n== throughput: {} MESSAGE_CREATE/s of ~{} B for {} s, both clients on {n} shards of one fake (each gets every event)",
        args.load_rate, args.payload_bytes, args.load_seconds
    );
    let config = Config {
        max_concurrency: n,
        identify_window_ms: 100,
        guilds: 64,
        replay_buffer: 1 << 20,
        ..Config::default()
    };
    let f = fake(config).await?;
    redis.reset().await?;
    let start = Instant::now();
    let worker = Worker::spawn(&bins.worker(args), &f, redis, (0, n - 1, n), 100, None)?;
    let twilight = Twilight::spawn(&bins.twilight, &f, (0, n - 1, n), n)?;
    wait_ready(&f, n, 2 * n as usize, start, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (w_pid, t_pid) = (worker.child.id(), twilight.child.id());
    let (w_events0, t_events0) = (worker.events().await, twilight.events());
    let (w_cpu0, t_cpu0) = (cpu_seconds(w_pid), cpu_seconds(t_pid));
    let generated0 = f.state().load_status().generated;
    let began = Instant::now();
    f.state().load.send_replace(LoadSettings {
        rate: args.load_rate,
        payload_bytes: args.payload_bytes,
        dm_percent: 0,
    });
    tokio::time::sleep(Duration::from_secs(args.load_seconds)).await;
    f.state().load.send_replace(LoadSettings {
        rate: 0,
        payload_bytes: args.payload_bytes,
        dm_percent: 0,
    });
    let generated = f.state().load_status().generated - generated0;
    // Let both drain what was sent, then read the counters.
    let drained = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let w = worker.events().await - w_events0;
        let t = twilight.events() - t_events0;
        if (w >= generated && t >= generated) || drained.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    let elapsed = began.elapsed().as_secs_f64();
    let w_events = worker.events().await - w_events0;
    let t_events = twilight.events() - t_events0;
    let w_cpu = cpu_seconds(w_pid) - w_cpu0;
    let t_cpu = cpu_seconds(t_pid) - t_cpu0;
    println!("generated {generated} events in {:.1} s", args.load_seconds);
    let line = |name: &str, events: u64, cpu: f64| {
        let per_core = events as f64 / cpu.max(1e-9);
        println!(
            "{name:<14} handled {events:>9}   cpu {cpu:>6.2} s   {per_core:>10.0} dispatches per CPU-second   ({:.0}/s wall)",
            events as f64 / elapsed
        );
        per_core
    };
    let ours = line("shard-worker", w_events, w_cpu);
    let theirs = line("twilight", t_events, t_cpu);
    println!(
        "ratio per core, shard-worker / twilight: {:.2} (aim: >= 2)",
        ours / theirs
    );
    drop(worker);
    drop(twilight);
    f.shutdown().await;
    Ok(())
}
