//! One client process holding `n` connected shards of a fresh fake, measured from `/proc`: what
//! the memory benchmark and the scaling curve both need.

use std::time::{Duration, Instant};

use fake_discord::Config;
use shardset_contract::GatewayCompression;

use crate::clients::{Binaries, Twilight, Worker, cpu_seconds, rss_kib};
use crate::{Redis, fake, wait_ready};

/// Which client holds the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Worker,
    Twilight,
}

impl Client {
    pub const BOTH: [Client; 2] = [Client::Worker, Client::Twilight];

    pub fn name(self) -> &'static str {
        match self {
            Client::Worker => "shard-worker",
            Client::Twilight => "twilight",
        }
    }
}

/// What one process holding its shards cost.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    /// Resident memory 2 s after the last READY (each shard has had READY and its GUILD_CREATEs).
    pub rss_kib: u64,
    /// CPU time from the start of the process to 2 s after the last READY.
    pub start_cpu_s: f64,
    /// CPU share of one core while the shards only keep their connections (heartbeats), over
    /// the `rest` asked for (0 when `rest` is zero).
    pub rest_cpu_share: f64,
}

/// Starts `client` with shards `0..n` of `n` at `compression` on a fresh fake (all in one bucket
/// round: `max_concurrency` n, a 100 ms window, 4 guilds per shard, a budget of at least 2 n),
/// waits for every READY and measures it; then stops the process and the fake.
pub async fn hold(
    client: Client,
    bins: &Binaries,
    redis: &mut Redis,
    compression: GatewayCompression,
    n: u32,
    rest: Duration,
) -> anyhow::Result<Held> {
    let config = Config {
        max_concurrency: n,
        identify_window_ms: 100,
        guilds: n * 4,
        // Discord's default daily budget is 1,000 session starts: the 1,024-shard point needs more.
        session_start_limit: (2 * n).max(1_000),
        ..Config::default()
    };
    let f = fake(config).await?;
    redis.reset().await?;
    let start = Instant::now();
    let timeout = Duration::from_secs(120);
    // Either process is killed on drop (at the end of this function).
    let (_worker, _twilight, pid) = match client {
        Client::Worker => {
            let w = Worker::spawn_layout(&bins.worker(compression), &f, redis, n)?;
            let pid = w.child.id();
            (Some(w), None, pid)
        }
        Client::Twilight => {
            let t = Twilight::spawn(&bins.twilight(compression), &f, (0, n - 1, n), n).await?;
            let pid = t.child.id();
            (None, Some(t), pid)
        }
    };
    wait_ready(&f, n, n as usize, start, timeout).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_kib = rss_kib(pid);
    let start_cpu_s = cpu_seconds(pid);
    let rest_cpu_share = if rest.is_zero() {
        0.0
    } else {
        tokio::time::sleep(rest).await;
        (cpu_seconds(pid) - start_cpu_s) / rest.as_secs_f64()
    };
    f.shutdown().await;
    Ok(Held {
        rss_kib,
        start_cpu_s,
        rest_cpu_share,
    })
}
