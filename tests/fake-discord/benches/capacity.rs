//! Capacity benchmark of the fake Discord (`make bench-fake`): one `fake-discord` process (the
//! release binary, a separate process so its CPU and memory are measured alone) holds N
//! zlib-stream shard connections, then streams synthetic MESSAGE_CREATE load to all of them at
//! increasing rates. The clients inflate every frame with one zlib context per connection, as
//! real clients do. Prints figures; asserts nothing (performance is measured, not asserted).
//!
//! Knobs (env): BENCH_CONNECTIONS (2000), BENCH_RATES (events/s, "50000,100000,150000"),
//! BENCH_SECONDS per rate (10), BENCH_PAYLOAD_BYTES (1024), BENCH_ZLIB_LEVEL (fake's default),
//! BENCH_HOLD_SECONDS idle hold with heartbeats (10).

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use flate2::{Decompress, FlushDecompress};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "bench-token";
const HEARTBEAT_MS: u64 = 10_000;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Totals {
    ready: AtomicU64,
    dispatches: AtomicU64,
    wire_bytes: AtomicU64,
    closed: AtomicU64,
}

/// One shard: Hello, Identify, then inflate and count every frame, heartbeating on time.
async fn shard(
    url: String,
    shard: u32,
    total: u32,
    totals: Arc<Totals>,
    gate: Arc<Semaphore>,
) -> anyhow::Result<()> {
    let permit = gate.acquire_owned().await?;
    let (ws, _) =
        tokio_tungstenite::connect_async(format!("{url}/?v=10&encoding=json&compress=zlib-stream"))
            .await?;
    let (mut sink, mut stream) = ws.split();
    let mut inflate = Decompress::new(true);
    let mut pending = Vec::new();
    let mut out = Vec::with_capacity(64 * 1024);
    let mut seq: Option<u64> = None;
    let mut identified = false;
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now()
            + Duration::from_millis(HEARTBEAT_MS * u64::from(shard % 100) / 100),
        Duration::from_millis(HEARTBEAT_MS),
    );
    let mut permit = Some(permit);
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            _ = heartbeat.tick() => {
                sink.send(Message::text(json!({"op": 1, "d": seq}).to_string())).await?;
                continue;
            }
        };
        let data = match message {
            Some(Ok(Message::Binary(data))) => data,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                totals.closed.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Some(Ok(_)) => continue,
        };
        totals
            .wire_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        pending.extend_from_slice(&data);
        if !pending.ends_with(&[0, 0, 0xff, 0xff]) {
            continue;
        }
        out.clear();
        let start = inflate.total_in();
        while ((inflate.total_in() - start) as usize) < pending.len() {
            let used = (inflate.total_in() - start) as usize;
            out.reserve(pending.len() * 4 + 1_024);
            inflate.decompress_vec(&pending[used..], &mut out, FlushDecompress::Sync)?;
        }
        pending.clear();
        if out.starts_with(br#"{"t":"MESSAGE_CREATE""#) {
            totals.dispatches.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let value: Value = serde_json::from_slice(&out)?;
        if let Some(s) = value["s"].as_u64() {
            seq = Some(s);
        }
        match (value["op"].as_u64(), value["t"].as_str()) {
            (Some(10), _) if !identified => {
                identified = true;
                let identify = json!({"op": 2, "d": {
                    "token": TOKEN, "intents": 1 | (1 << 9) | (1 << 15),
                    "properties": {"os": "linux", "browser": "bench", "device": "bench"},
                    "shard": [shard, total],
                }});
                sink.send(Message::text(identify.to_string())).await?;
            }
            (Some(0), Some("READY")) => {
                totals.ready.fetch_add(1, Ordering::Relaxed);
                permit.take();
            }
            (Some(9), _) => bail!("shard {shard}: invalid session"),
            _ => {}
        }
    }
}

/// CPU seconds (user + system) and RSS in MiB of a process.
fn process_usage(pid: u32) -> (f64, f64) {
    let ticks = 100.0; // USER_HZ on Linux
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let cpu = fields
        .get(11)
        .zip(fields.get(12))
        .and_then(|(u, s)| Some(u.parse::<f64>().ok()? + s.parse::<f64>().ok()?))
        .unwrap_or(0.0)
        / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, rss_kib / 1024.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

async fn counters(http: &reqwest::Client, control: &str) -> anyhow::Result<Value> {
    Ok(http
        .get(format!("{control}/counters"))
        .send()
        .await?
        .json()
        .await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let connections: u32 = env("BENCH_CONNECTIONS", 2_000);
    let rates: Vec<u32> = std::env::var("BENCH_RATES")
        .unwrap_or_else(|_| "50000,100000,150000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let seconds: u64 = env("BENCH_SECONDS", 10);
    let hold: u64 = env("BENCH_HOLD_SECONDS", 10);
    let payload: usize = env("BENCH_PAYLOAD_BYTES", 1_024);
    let guilds = connections * 10;

    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_fake-discord"));
    command
        .args(["--listen", "127.0.0.1:0", "--token", TOKEN])
        .args(["--guilds", &guilds.to_string()])
        .args(["--max-concurrency", &connections.to_string()])
        .args(["--session-start-limit", "100000"])
        .args(["--heartbeat-interval-ms", &HEARTBEAT_MS.to_string()])
        .args(["--replay-buffer", "256"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Ok(level) = std::env::var("BENCH_ZLIB_LEVEL") {
        command.args(["--zlib-level", &level]);
    }
    let mut fake = command.spawn().context("start fake-discord")?;
    let pid = fake.id().context("pid")?;
    let mut lines = BufReader::new(fake.stdout.take().context("stdout")?).lines();
    let addr = loop {
        let line = lines.next_line().await?.context("fake-discord exited")?;
        if let Some(addr) = line.strip_prefix("fake-discord listening on ") {
            break addr.to_owned();
        }
    };
    // Keep reading stdout so the fake never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let url = format!("ws://{addr}");
    let control = format!("http://{addr}/control");
    let http = reqwest::Client::new();

    println!(
        "fake-discord capacity benchmark (pid {pid}, {} cores, load average {})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    println!(
        "  {connections} zlib-stream shard connections, {guilds} guilds, {payload}-byte MESSAGE_CREATE payloads"
    );

    // Phase 1: connect and identify every shard.
    let totals = Arc::new(Totals::default());
    let gate = Arc::new(Semaphore::new(200));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..connections {
        tasks.push(tokio::spawn(shard(
            url.clone(),
            i,
            connections,
            Arc::clone(&totals),
            Arc::clone(&gate),
        )));
    }
    while totals.ready.load(Ordering::Relaxed) < u64::from(connections) {
        if started.elapsed() > Duration::from_secs(300) {
            bail!(
                "only {} of {connections} shards READY",
                totals.ready.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_time = started.elapsed();
    let (cpu0, rss0) = process_usage(pid);
    println!(
        "  connect + Identify + READY of {connections} shards: {:.2} s; fake RSS {rss0:.0} MiB ({:.1} KiB per connection)",
        connect_time.as_secs_f64(),
        rss0 * 1024.0 / f64::from(connections)
    );

    // Phase 2: hold them idle with heartbeats.
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let (cpu1, rss1) = process_usage(pid);
    let open = counters(&http, &control).await?["connections_open"]
        .as_u64()
        .unwrap_or(0);
    println!(
        "  held {hold} s with heartbeats: {open} connections open, {} closed; fake CPU {:.1} %, RSS {rss1:.0} MiB",
        totals.closed.load(Ordering::Relaxed),
        (cpu1 - cpu0) / hold as f64 * 100.0
    );

    // Phase 3: stream at increasing rates.
    println!(
        "  {:>10} {:>12} {:>12} {:>10} {:>9} {:>11} {:>8} {:>15}",
        "rate/s",
        "delivered/s",
        "fake sent/s",
        "wire MB/s",
        "fake CPU",
        "clients CPU",
        "RSS MiB",
        "load average"
    );
    for &rate in &rates {
        http.post(format!("{control}/load"))
            .json(&json!({"rate": rate, "payload_bytes": payload}))
            .send()
            .await?
            .error_for_status()?;
        tokio::time::sleep(Duration::from_secs(2)).await; // warm up
        let before = counters(&http, &control).await?;
        let (cpu_a, _) = process_usage(pid);
        let (own_a, _) = process_usage(std::process::id());
        let got_a = totals.dispatches.load(Ordering::Relaxed);
        let wire_a = totals.wire_bytes.load(Ordering::Relaxed);
        let t = Instant::now();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let elapsed = t.elapsed().as_secs_f64();
        let got = (totals.dispatches.load(Ordering::Relaxed) - got_a) as f64 / elapsed;
        let wire = (totals.wire_bytes.load(Ordering::Relaxed) - wire_a) as f64 / elapsed / 1e6;
        let (cpu_b, rss) = process_usage(pid);
        let (own_b, _) = process_usage(std::process::id());
        let after = counters(&http, &control).await?;
        let sent = (after["dispatches_sent"].as_u64().unwrap_or(0)
            - before["dispatches_sent"].as_u64().unwrap_or(0)) as f64
            / elapsed;
        println!(
            "  {rate:>10} {got:>12.0} {sent:>12.0} {wire:>10.1} {:>8.0}% {:>10.0}% {rss:>8.0} {:>15}",
            (cpu_b - cpu_a) / elapsed * 100.0,
            (own_b - own_a) / elapsed * 100.0,
            load_average()
        );
        http.delete(format!("{control}/load")).send().await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let end = counters(&http, &control).await?;
    println!(
        "  closed connections: {}, overflows: {}, violations: {}",
        totals.closed.load(Ordering::Relaxed),
        end["overflows"],
        end["violations"]
    );
    for task in tasks {
        task.abort();
    }
    let _ = fake.start_kill();
    let _ = fake.wait().await;
    Ok(())
}
