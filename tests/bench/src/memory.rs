//! The second benchmark, memory: RSS per connected shard of each client at one compression,
//! `(RSS(K shards) − RSS(1 shard)) / (K − 1)`, each process measured 2 s after its last READY.

use std::time::Duration;

use shardset_contract::GatewayCompression;

use crate::clients::Binaries;
use crate::held::{Client, hold};
use crate::report::Memory;
use crate::{Args, Redis};

pub async fn memory(
    args: &Args,
    bins: &Binaries,
    redis: &mut Redis,
    compression: GatewayCompression,
) -> anyhow::Result<Memory> {
    let k = args.memory_shards.max(2);
    println!(
        "\n== memory, {compression}: RSS per connected shard (shard-worker: {compression}, twilight: {}), (RSS({k} shards) - RSS(1 shard)) / {}",
        bins.twilight(compression).compression,
        k - 1
    );
    let mut per_shard = Vec::new();
    for client in Client::BOTH {
        let mut rss = Vec::new();
        for n in [1, k] {
            rss.push(
                hold(client, bins, redis, compression, n, Duration::ZERO)
                    .await?
                    .rss_kib,
            );
        }
        let each = (rss[1] as f64 - rss[0] as f64) / f64::from(k - 1);
        println!(
            "{:<14} RSS(1) {:>7} KiB   RSS({k}) {:>8} KiB   per shard {each:>7.1} KiB",
            client.name(),
            rss[0],
            rss[1]
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
