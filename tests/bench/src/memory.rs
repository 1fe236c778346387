//! The second benchmark, memory: RSS per connected shard of each client at one compression,
//! `(RSS(K shards) − RSS(1 shard)) / (K − 1)`, each process measured 2 s after its last READY.

use std::time::{Duration, Instant};

use fake_discord::Config;
use shardset_contract::GatewayCompression;

use crate::clients::{Binaries, Twilight, Worker, rss_kib};
use crate::report::Memory;
use crate::{Args, Redis, fake, wait_ready};

pub async fn memory(
    args: &Args,
    bins: &Binaries,
    redis: &mut Redis,
    compression: GatewayCompression,
) -> anyhow::Result<Memory> {
    let k = args.memory_shards.max(2);
    let twilight_bin = bins.twilight(compression);
    println!(
        "\n== memory, {compression}: RSS per connected shard (shard-worker: {compression}, twilight: {}), (RSS({k} shards) - RSS(1 shard)) / {}",
        twilight_bin.compression,
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
                let bin = bins.worker(compression);
                let w = Worker::spawn(&bin, &f, redis, (0, n - 1, n), 100, None)?;
                wait_ready(&f, n, n as usize, start, Duration::from_secs(120)).await?;
                tokio::time::sleep(Duration::from_secs(2)).await;
                let r = rss_kib(w.child.id());
                drop(w);
                r
            } else {
                let t = Twilight::spawn(&twilight_bin, &f, (0, n - 1, n), n).await?;
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
    let measured = Memory {
        compression,
        shards: k,
        worker_kib: per_shard[0],
        twilight_kib: per_shard[1],
    };
    println!(
        "ratio per shard, shard-worker / twilight: {:.2} (aim: <= 0.5)",
        measured.ratio()
    );
    Ok(measured)
}
