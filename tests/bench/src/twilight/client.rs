//! The reference client of the benchmarks: twilight-gateway 0.18 (its own `InMemoryQueue`),
//! running shards `first..=last` of `total` against `--gateway-url`. Its transport compression is
//! fixed when twilight-gateway is compiled (the `zstd` feature wins over `zlib`), so this client is
//! built twice: `twilight-shards` (zlib-stream, like every other twilight user of the workspace)
//! and `twilight-shards-zstd` (its own package, `tests/bench/twilight-zstd`).
//!
//! Each shard reads typed events with `next_event(EventTypeFlags::all())` (inflate + parse into
//! twilight-model) and counts them, the way a twilight bot's event loop does. Prints
//! `compression <name>` first (the benchmark checks it), then one line per READY
//! (`ready <shard> <ms since start>`) and `events <total>` every 200 ms, on stdout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use twilight_gateway::queue::InMemoryQueue;
use twilight_gateway::{ConfigBuilder, Event, EventTypeFlags, Intents, Shard, ShardId, StreamExt};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    gateway_url: String,
    #[arg(long)]
    first: u32,
    #[arg(long)]
    last: u32,
    #[arg(long)]
    total: u32,
    #[arg(long)]
    max_concurrency: u16,
    /// Token (the fake accepts any non-empty one unless configured otherwise).
    #[arg(long, default_value = "bench-token")]
    token: String,
}

/// Runs the client; `compression` is what the calling binary was built with (printed first).
pub fn main(compression: &'static str) -> anyhow::Result<()> {
    let args = Args::parse();
    println!("compression {compression}");
    shardset_contract::rest::install_crypto_provider();
    // One thread, like the shard-worker's default: the same runtime on both sides.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    let queue = InMemoryQueue::new(
        args.max_concurrency,
        1_000_000,
        Duration::from_secs(86_400),
        1_000_000,
    );
    let intents = Intents::GUILDS | Intents::GUILD_MESSAGES;
    let events = Arc::new(AtomicU64::new(0));
    for id in args.first..=args.last {
        let config = ConfigBuilder::new(args.token.clone(), intents)
            .proxy_url(args.gateway_url.clone())
            .queue(queue.clone())
            .build();
        let mut shard = Shard::with_config(ShardId::new(id, args.total), config);
        let events = Arc::clone(&events);
        tokio::spawn(async move {
            while let Some(item) = shard.next_event(EventTypeFlags::all()).await {
                match item {
                    Ok(Event::Ready(_)) => println!("ready {id} {}", start.elapsed().as_millis()),
                    Ok(_) => {}
                    Err(e) => eprintln!("shard {id}: {e}"),
                }
                events.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        println!("events {}", events.load(Ordering::Relaxed));
    }
}
