//! Side-by-side benchmarks of the shard worker and twilight-gateway 0.18 on the fake Discord,
//! in one run, printing ratios (`make bench`). Measured, never asserted. This file owns the
//! options, the order of the runs, Redis and the helpers on the fake; each benchmark has its file.
//!
//! 1. [`cold`]: N shards over P `shard-worker` processes sharing Redis, against the theoretical
//!    minimum `(ceil(N/C) − 1) × window + one connect` (one connect = the first READY of the run),
//!    and the fake's violation count; twilight runs the same shards in one process with its own
//!    `InMemoryQueue` (which cannot span processes). Discord's real 5 s window by default, because
//!    twilight's queue has it built in.
//! 2. [`memory`]: RSS per connected shard, `(RSS(K shards) − RSS(1 shard)) / (K − 1)`.
//! 3. [`throughput`]: both clients hold the same layout on one fake, which sends every synthetic
//!    MESSAGE_CREATE to both; dispatches handled per CPU-second of each client process (inflate +
//!    parse + handler), at each `--load-rate`.
//! 4. [`bus`]: the worker's dispatches per CPU-second publishing to a local `nats-server` with
//!    acks, beside the same worker handling the same load in process.
//! 5. [`scaling`]: one process of each client at 1, 64, 256 and 1,024 shards: RSS, CPU to READY
//!    and CPU at rest (the scaling curve).
//!
//! **Compression.** `--compression` (env `GATEWAY_COMPRESSION`) lists the transport compressions
//! to compare, `zstd-stream,zlib-stream` by default: memory and throughput run once for each, the
//! worker and twilight speaking the same one (twilight's client is built once per compression,
//! [`clients::Binaries`]); cold start and the bus path run at the first. [`report`] prints the
//! machine and the date first and a summary table of every figure and ratio last.

mod bus;
mod clients;
mod cold;
mod held;
mod memory;
mod report;
mod scaling;
mod throughput;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use fake_discord::{Config, FakeDiscord, RunningFake};
use redis_test_server::RedisServer;
use shardset_contract::{GatewayCompression, Keys, env};

use clients::{Binaries, Worker, cpu_seconds};

#[derive(Debug, Clone, Parser)]
#[command(about = "Side-by-side benchmarks: shard-worker vs twilight-gateway on the fake Discord")]
struct Args {
    /// Which benchmarks to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "cold,memory,throughput,bus,scaling"
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
    /// Cold start: the workers' `IDENTIFY_MARGIN_MS` (default: the worker's own, 100 ms below
    /// 5 s; the shards hold a gate the answer margin, 25 ms, beyond the window, or this when
    /// lower).
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
    /// Throughput: synthetic MESSAGE_CREATE per second, one run per rate (at 20,000/s the
    /// clients' own work dominates; at 5,000/s the wake-up per message weighs more).
    #[arg(long, value_delimiter = ',', default_value = "5000,20000")]
    load_rate: Vec<u32>,
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
    /// Scaling curve: the shard counts of one process.
    #[arg(long, value_delimiter = ',', default_value = "1,64,256,1024")]
    scaling_shards: Vec<u32>,
    /// Scaling curve: seconds at rest over which the CPU share is measured.
    #[arg(long, default_value_t = 10)]
    scaling_rest_s: u64,
    /// Use this shard-worker binary instead of the one beside this benchmark (e.g. a build with
    /// symbols, for perf).
    #[arg(long)]
    worker_bin: Option<PathBuf>,
    /// Transport compressions to compare (zstd-stream, zlib-stream, none): memory and throughput
    /// run once for each, twilight speaking the same one (at `none`, twilight speaks
    /// zlib-stream: it has no build without compression here); cold start and the bus path run
    /// at the first.
    #[arg(
        long,
        env = env::GATEWAY_COMPRESSION,
        value_delimiter = ',',
        default_value = "zstd-stream,zlib-stream"
    )]
    compression: Vec<GatewayCompression>,
}

impl Args {
    /// The compression of the runs that use only one (cold start, the bus path).
    fn first_compression(&self) -> GatewayCompression {
        self.compression.first().copied().unwrap_or_default()
    }

    fn runs(&self, benchmark: &str) -> bool {
        self.only.iter().any(|o| o == benchmark)
    }
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
    if args.compression.is_empty() || args.load_rate.is_empty() {
        bail!("--compression and --load-rate need at least one value each");
    }
    let mut bins = Binaries::beside_me()?;
    if let Some(worker) = &args.worker_bin {
        bins.worker = worker.clone();
    }
    report::machine("at the start");
    let mut redis = Redis::start().await?;
    let mut summary = report::Summary::default();
    if args.runs("cold") {
        cold::cold_start(&args, &bins, &mut redis).await?;
    }
    if args.runs("memory") {
        for &compression in &args.compression {
            summary
                .memory
                .push(memory::memory(&args, &bins, &mut redis, compression).await?);
        }
    }
    if args.runs("throughput") {
        for &compression in &args.compression {
            for &rate in &args.load_rate {
                let measured =
                    throughput::throughput(&args, &bins, &mut redis, compression, rate).await?;
                summary.throughput.push(measured);
            }
        }
    }
    if args.runs("bus") {
        bus::bus_path(&args, &bins, &mut redis).await?;
    }
    if args.runs("scaling") {
        summary.scaling = scaling::scaling(&args, &bins, &mut redis).await?;
    }
    redis.stop().await;
    summary.print();
    report::machine("at the end");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Redis for the worker side.

pub(crate) struct Redis {
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
