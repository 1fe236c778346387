//! The fifth benchmark, the scaling curve (issue 16): one process of each client holding 1, 64,
//! 256 and 1,024 connected shards (`--scaling-shards`) at the first compression: its RSS, the CPU
//! it spent connecting them, and its CPU share while they only keep their connections. A cost
//! that grows faster than the shard count shows here before it shows in production.

use std::time::Duration;

use crate::clients::Binaries;
use crate::held::{Client, hold};
use crate::report::Scaling;
use crate::{Args, Redis};

pub async fn scaling(
    args: &Args,
    bins: &Binaries,
    redis: &mut Redis,
) -> anyhow::Result<Vec<Scaling>> {
    let compression = args.first_compression();
    let rest = Duration::from_secs(args.scaling_rest_s);
    println!(
        "\n== scaling curve, {compression}: one process per client at {:?} shards; RSS 2 s after the last READY, CPU to then, CPU share over {} s at rest",
        args.scaling_shards, args.scaling_rest_s
    );
    let mut curve = Vec::new();
    for &n in &args.scaling_shards {
        let n = n.max(1);
        let worker = hold(Client::Worker, bins, redis, compression, n, rest).await?;
        let twilight = hold(Client::Twilight, bins, redis, compression, n, rest).await?;
        for (client, held) in [(Client::Worker, &worker), (Client::Twilight, &twilight)] {
            println!(
                "{:<14} {n:>5} shards: RSS {:>8} KiB ({:>6.1} KiB per shard), CPU to READY {:>6.2} s, at rest {:>5.2} % of a core",
                client.name(),
                held.rss_kib,
                held.rss_kib as f64 / f64::from(n),
                held.start_cpu_s,
                held.rest_cpu_share * 100.0
            );
        }
        curve.push(Scaling {
            compression,
            shards: n,
            worker,
            twilight,
        });
    }
    Ok(curve)
}
