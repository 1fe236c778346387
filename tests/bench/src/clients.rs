//! The two clients as processes: where their binaries are, starting them, reading what they
//! handled, and their RSS and CPU time from `/proc`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use fake_discord::RunningFake;
use shardset_contract::{GatewayCompression, env};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::Redis;

pub struct Binaries {
    pub worker: PathBuf,
    /// twilight-gateway's compression is chosen when it is compiled: one client per compression.
    twilight_zlib: PathBuf,
    twilight_zstd: PathBuf,
}

impl Binaries {
    /// `shard-worker`, `twilight-shards` and `twilight-shards-zstd` from the same target
    /// directory as this binary.
    pub fn beside_me() -> anyhow::Result<Self> {
        let me = std::env::current_exe()?;
        let dir = me.parent().context("binary directory")?;
        let bins = Self {
            worker: dir.join("shard-worker"),
            twilight_zlib: dir.join("twilight-shards"),
            twilight_zstd: dir.join("twilight-shards-zstd"),
        };
        for bin in [&bins.worker, &bins.twilight_zlib, &bins.twilight_zstd] {
            if !bin.exists() {
                bail!(
                    "{} is missing: build it first (make bench does)",
                    bin.display()
                );
            }
        }
        Ok(bins)
    }

    /// The `shard-worker` at `compression`.
    pub fn worker(&self, compression: GatewayCompression) -> WorkerBin<'_> {
        WorkerBin {
            path: &self.worker,
            compression,
        }
    }

    /// The twilight client for a run where the worker speaks `compression` (zlib-stream for
    /// `none`: twilight is not built without compression here).
    pub fn twilight(&self, compression: GatewayCompression) -> TwilightBin<'_> {
        match compression {
            GatewayCompression::ZstdStream => TwilightBin {
                path: &self.twilight_zstd,
                compression,
            },
            GatewayCompression::ZlibStream | GatewayCompression::None => TwilightBin {
                path: &self.twilight_zlib,
                compression: GatewayCompression::ZlibStream,
            },
        }
    }
}

/// A twilight client binary and the compression it was built for.
pub struct TwilightBin<'a> {
    path: &'a Path,
    pub compression: GatewayCompression,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A `shard-worker` process.
pub struct Worker {
    pub child: Child,
    listen: String,
}

/// What every `shard-worker` process of a run is started with.
pub struct WorkerBin<'a> {
    path: &'a Path,
    compression: GatewayCompression,
}

impl Worker {
    pub fn spawn(
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

    /// A worker holding every shard of an `n`-shard layout, at the 100 ms Identify window the
    /// memory, throughput and scaling runs give their fakes.
    pub fn spawn_layout(
        bin: &WorkerBin<'_>,
        fake: &RunningFake,
        redis: &Redis,
        n: u32,
    ) -> anyhow::Result<Self> {
        Self::spawn(bin, fake, redis, (0, n - 1, n), 100, None)
    }

    /// [`Worker::spawn`] with more env.
    pub fn spawn_with(
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
    pub async fn events(&self) -> u64 {
        self.counter("shardset_worker_events_total").await
    }

    /// The sum of every sample of counter `name` on its `/metrics`.
    pub async fn counter(&self, name: &str) -> u64 {
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

/// A twilight client process and what it printed.
pub struct Twilight {
    pub child: Child,
    events: Arc<Mutex<u64>>,
}

impl Twilight {
    /// Starts `bin` and checks that it speaks the compression it was built for (its first line).
    pub async fn spawn(
        bin: &TwilightBin<'_>,
        fake: &RunningFake,
        range: (u32, u32, u32),
        concurrency: u32,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(bin.path)
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
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next_line().await?.unwrap_or_default();
        let expected = format!("compression {}", bin.compression);
        if first != expected {
            bail!(
                "{} printed {first:?}, not {expected:?}: a build with the wrong twilight-gateway features (make bench builds both)",
                bin.path.display()
            );
        }
        let seen = Arc::clone(&events);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(n) = line.strip_prefix("events ").and_then(|n| n.parse().ok()) {
                    *seen.lock().unwrap_or_else(|p| p.into_inner()) = n;
                }
            }
        });
        Ok(Self { child, events })
    }

    pub fn events(&self) -> u64 {
        *self.events.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: Option<u32>) -> u64 {
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
pub fn cpu_seconds(pid: Option<u32>) -> f64 {
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
