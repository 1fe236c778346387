//! The fourth benchmark, the bus path: what publishing every dispatch to NATS JetStream costs
//! the worker. The same load reaches one `shard-worker` handling it in process (the default
//! handler), then another publishing it to a local `nats-server -js` and waiting for each
//! acknowledgement (the stream and its default group's consumers made by the worker, nothing
//! consuming): dispatches per CPU-second of each worker, and the server's CPU beside.

use std::time::{Duration, Instant};

use anyhow::Context;
use fake_discord::Config;
use fake_discord::control::LoadSettings;
use nats_test_server::NatsServer;
use shardset_contract::env;

use crate::{Args, Binaries, Redis, Worker, cpu_seconds, fake, wait_ready};

/// What one worker did under the load.
struct Measured {
    generated: u64,
    dispatches: u64,
    cpu: f64,
    elapsed: f64,
    nats_cpu: Option<f64>,
}

pub async fn bus_path(args: &Args, bins: &Binaries, redis: &mut Redis) -> anyhow::Result<()> {
    let n = args.load_shards;
    println!(
        "\n== bus: {} MESSAGE_CREATE/s of ~{} B for {} s on {n} shards, {}: handled in process, then published to a local nats-server with acks",
        args.bus_rate,
        args.payload_bytes,
        args.load_seconds,
        args.first_compression()
    );
    let in_process = measure(args, bins, redis, None).await?;
    let nats = tokio::task::spawn_blocking(NatsServer::start)
        .await
        .context("start nats-server (make test-tools builds it)")?;
    let published = measure(args, bins, redis, Some(&nats)).await?;
    let line = |name: &str, m: &Measured| {
        let per_core = m.dispatches as f64 / m.cpu.max(1e-9);
        println!(
            "{name:<22} {:>9} of {:>9}   cpu {:>6.2} s   {per_core:>10.0} dispatches per CPU-second   ({:.0}/s wall)",
            m.dispatches,
            m.generated,
            m.cpu,
            m.dispatches as f64 / m.elapsed
        );
        per_core
    };
    let local = line("in process (handled)", &in_process);
    let bus = line("bus (acknowledged)", &published);
    if let Some(nats_cpu) = published.nats_cpu {
        println!(
            "nats-server            cpu {nats_cpu:>6.2} s   {:>10.0} messages per CPU-second",
            published.dispatches as f64 / nats_cpu.max(1e-9)
        );
    }
    println!("ratio per core, bus / in process: {:.2}", bus / local);
    Ok(())
}

/// One worker on `args.load_shards` shards of a fresh fake under `args.bus_rate`, publishing to
/// `nats` if given; counts what it handled (or what the stream acknowledged).
async fn measure(
    args: &Args,
    bins: &Binaries,
    redis: &mut Redis,
    nats: Option<&NatsServer>,
) -> anyhow::Result<Measured> {
    let n = args.load_shards;
    let f = fake(Config {
        max_concurrency: n,
        identify_window_ms: 100,
        guilds: 64,
        replay_buffer: 1 << 20,
        ..Config::default()
    })
    .await?;
    redis.reset().await?;
    let bus_env = nats.map(|nats| {
        vec![
            (env::NATS_URL, nats.url()),
            (env::SHARDSET_STREAM, "shardset-bench-bot".to_owned()),
            (
                env::SHARDSET_SUBJECT_PREFIX,
                "shardset.bench.bot".to_owned(),
            ),
        ]
    });
    let worker = Worker::spawn_with(
        &bins.worker(args.first_compression()),
        &f,
        redis,
        (0, n - 1, n),
        100,
        bus_env.as_deref().unwrap_or_default(),
    )?;
    wait_ready(&f, n, n as usize, Instant::now(), Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let counter = match nats {
        Some(_) => "shardset_bus_published_total",
        None => "shardset_worker_events_total",
    };
    let pid = worker.child.id();
    let nats_pid = nats.and_then(NatsServer::pid);
    let (count0, cpu0, nats_cpu0) = (
        worker.counter(counter).await,
        cpu_seconds(pid),
        cpu_seconds(nats_pid),
    );
    let generated0 = f.state().load_status().generated;
    let began = Instant::now();
    let load = |rate| LoadSettings {
        rate,
        payload_bytes: args.payload_bytes,
        dm_percent: 0,
    };
    f.state().load.send_replace(load(args.bus_rate));
    tokio::time::sleep(Duration::from_secs(args.load_seconds)).await;
    f.state().load.send_replace(load(0));
    // Read again on each poll: the generator may still finish the tick it was in.
    let generated = || f.state().load_status().generated - generated0;
    let drained = Instant::now();
    while worker.counter(counter).await - count0 < generated()
        && drained.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let measured = Measured {
        generated: generated(),
        dispatches: worker.counter(counter).await - count0,
        cpu: cpu_seconds(pid) - cpu0,
        elapsed: began.elapsed().as_secs_f64(),
        nats_cpu: nats.map(|_| cpu_seconds(nats_pid) - nats_cpu0),
    };
    drop(worker);
    f.shutdown().await;
    Ok(measured)
}
