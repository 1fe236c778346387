//! The third benchmark, throughput: both clients hold the same layout on one fake at one
//! compression, which sends every synthetic MESSAGE_CREATE to both; dispatches handled per
//! CPU-second of each client process (decompress + parse + handler).

use std::time::{Duration, Instant};

use fake_discord::Config;
use fake_discord::control::LoadSettings;
use shardset_contract::GatewayCompression;

use crate::clients::{Binaries, Twilight, Worker, cpu_seconds};
use crate::report::Throughput;
use crate::{Args, Redis, fake, wait_ready};

pub async fn throughput(
    args: &Args,
    bins: &Binaries,
    redis: &mut Redis,
    compression: GatewayCompression,
    rate: u32,
) -> anyhow::Result<Throughput> {
    let n = args.load_shards;
    let twilight_bin = bins.twilight(compression);
    println!(
        "\n== throughput, {compression}: {rate} MESSAGE_CREATE/s of ~{} B for {} s, both clients on {n} shards of one fake (each gets every event; twilight: {})",
        args.payload_bytes, args.load_seconds, twilight_bin.compression
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
    let worker = Worker::spawn_layout(&bins.worker(compression), &f, redis, n)?;
    let twilight = Twilight::spawn(&twilight_bin, &f, (0, n - 1, n), n).await?;
    wait_ready(&f, n, 2 * n as usize, start, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (w_pid, t_pid) = (worker.child.id(), twilight.child.id());
    let (w_events0, t_events0) = (worker.events().await, twilight.events());
    let (w_cpu0, t_cpu0) = (cpu_seconds(w_pid), cpu_seconds(t_pid));
    let generated0 = f.state().load_status().generated;
    let began = Instant::now();
    f.state().load.send_replace(LoadSettings {
        rate,
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
    let measured = Throughput {
        compression,
        rate,
        worker: line("shard-worker", w_events, w_cpu),
        twilight: line("twilight", t_events, t_cpu),
    };
    println!(
        "ratio per core, shard-worker / twilight: {:.2} (aim: >= 2)",
        measured.ratio()
    );
    drop(worker);
    drop(twilight);
    f.shutdown().await;
    Ok(measured)
}
