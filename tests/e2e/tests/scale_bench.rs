//! Benchmark, not a test (`make bench-scale`; skipped unless `SHARDSET_BENCH=1`): the design at
//! internet size on the kind cluster. A fresh operator chart with its fresh Redis, the fake
//! Discord chart at a scaled Identify window (1,000 ms, `max_concurrency` 16), then `kubectl
//! apply` of a 1,024-shard ShardSet at 8 shards per pod (128 pods) with small resource requests.
//! It measures apply → all pods created, → all shards READY at the fake (the last session's
//! creation) against the minimum `(ceil(N/C) − 1) × window + one connect` (one connect: the first
//! READY of the run, from the apply), the fake's violations, the gaps between consecutive
//! Identifies of a bucket, the operator's reconcile time, API requests and memory (during the start
//! and at steady state), Redis commands/s and memory per shard, and the CPU of the fake, Redis and
//! the workers. Prints the figures, then one line (see [`summary_line`]); asserts nothing about
//! them.
//!
//! `make bench-operator-scale` ([`bench_operator_scale`]) is the operator at scale (issue 16): many
//! ShardSets in one namespace, each its own bot on its own fake (a fake serves one bot), all on
//! the chart's Redis; it prints the operator's reconcile latency (p50/p99), memory and API
//! requests per minute at rest, one line per figure (`operator-scale: ...`).
//!
//! Settings (environment): `SHARDSET_SCALE_SHARDS` (1024), `SHARDSET_SCALE_PER_POD` (8),
//! `SHARDSET_SCALE_WINDOW_MS` (1000), `SHARDSET_SCALE_CONCURRENCY` (16), `SHARDSET_SCALE_STEADY_S`
//! (30: how long steady state is watched). `SHARDSET_BENCH_LINE_FILE`: write the final line there
//! instead of printing it (`make bench-scale` prints it last, after cargo's own lines).
//!
//! The workers keep their default `IDENTIFY_MARGIN_MS` (100 ms below Discord's 5 s window: what a
//! busy host adds between a send and its arrival, for a gate confirmed at the send); a ShardSet
//! cannot change it (every pod of a bot must share it), so the bench measures what users get. The
//! shards confirm their gates at the gateway's answer and hold them window + the answer margin
//! (25 ms), the margin's share of each round.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use shardset_e2e::TestNamespace;
use shardset_e2e::background::Recorder;
use shardset_e2e::charts::{Stack, StackSettings, live_sessions, now_ms};
use shardset_e2e::metrics::Metrics;
use shardset_e2e::shardsets::ShardSet;
use shardset_e2e::shardsets::{has_condition, pods_of, wait_pods, wait_shardset};
use shardset_e2e::usage::{self, ContainerUsage};
use shardset_e2e::waits::{Look, poll};

use fake_discord::control::{bucket_gaps_ms, spread, timed_bucket_gaps};

/// The worker's margin at windows shorter than Discord's (shard-worker's `BUSY_HOST_MARGIN`).
const DEFAULT_MARGIN_MS: u32 = 100;
/// What a shard's answered gate holds beyond the window (shard-worker's `ANSWER_MARGIN`).
const ANSWER_MARGIN_MS: u32 = 25;
/// Pods of the stack besides the workers: two operator replicas, Redis, the fake.
const STACK_PODS: u32 = 4;
/// How often the containers' CPU and memory are read during the run.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// What the run is asked for.
#[derive(Debug, Clone, Copy)]
struct Settings {
    shards: u32,
    per_pod: u32,
    window_ms: u32,
    concurrency: u32,
    steady: Duration,
}

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Self {
        Self {
            shards: env_u32("SHARDSET_SCALE_SHARDS", 1024),
            per_pod: env_u32("SHARDSET_SCALE_PER_POD", 8),
            window_ms: env_u32("SHARDSET_SCALE_WINDOW_MS", 1000),
            concurrency: env_u32("SHARDSET_SCALE_CONCURRENCY", 16),
            steady: Duration::from_secs(env_u32("SHARDSET_SCALE_STEADY_S", 30).into()),
        }
    }

    fn pods(&self) -> u32 {
        self.shards.div_ceil(self.per_pod)
    }

    /// `(ceil(N/C) − 1) × window`: the rounds after the first, each one window apart at best.
    fn floor_s(&self) -> f64 {
        f64::from(self.shards.div_ceil(self.concurrency).saturating_sub(1))
            * f64::from(self.window_ms)
            / 1000.0
    }
}

/// The final line (`make bench-scale`'s contract: issue 16).
fn summary_line(
    s: &Settings,
    all_ready_s: f64,
    minimum_s: f64,
    violations: usize,
    pods_created_s: f64,
) -> String {
    format!(
        "bench-scale: shards={} pods={} window_ms={} all_ready_s={all_ready_s:.2} minimum_s={minimum_s:.2} ratio={:.3} violations={violations} pods_created_s={pods_created_s:.2}",
        s.shards,
        s.pods(),
        s.window_ms,
        all_ready_s / minimum_s
    )
}

/// Fails early, with what to do, when the schedulable nodes have no room for `needed` more pods
/// (110 per node by default: 128 worker pods need the two workers of `make cluster`).
async fn ensure_room(client: &Client, needed: u32) -> anyhow::Result<()> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let mut room: i64 = 0;
    for node in &nodes.items {
        let tainted = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| t.iter().any(|t| t.effect == "NoSchedule"));
        if tainted {
            continue;
        }
        let allocatable = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get("pods"))
            .and_then(|q| q.0.parse::<i64>().ok())
            .unwrap_or(0);
        let running = pods
            .items
            .iter()
            .filter(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&node.name_any())
            })
            .filter(|p| {
                !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .count() as i64;
        room += allocatable - running;
    }
    if room < i64::from(needed) {
        bail!(
            "the cluster's schedulable nodes have room for {room} more pods, the bench needs {needed}: \
             make a cluster with more workers (SHARDSET_CLUSTER_WORKERS=3 make bench-scale; 110 pods per node)"
        );
    }
    Ok(())
}

/// A number from Redis `INFO` text (`name:value` lines).
fn info_field(info: &str, name: &str) -> f64 {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Redis's command count and memory at one moment.
#[derive(Debug, Clone, Copy)]
struct RedisReading {
    at: Instant,
    commands: f64,
    used_memory: f64,
}

async fn redis_reading(
    conn: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<RedisReading> {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .arg("memory")
        .query_async(conn)
        .await?;
    Ok(RedisReading {
        at: Instant::now(),
        commands: info_field(&info, "total_commands_processed"),
        used_memory: info_field(&info, "used_memory"),
    })
}

/// The containers' counters at one moment, `<pod>/<container>` → usage.
#[derive(Debug, Clone, Default)]
struct UsageReading {
    /// Seconds since the apply (negative: before it).
    at_s: f64,
    containers: BTreeMap<String, ContainerUsage>,
}

impl UsageReading {
    /// Summed over the containers whose key starts with `prefix`.
    fn of(&self, prefix: &str) -> ContainerUsage {
        self.containers
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .fold(ContainerUsage::default(), |a, (_, u)| ContainerUsage {
                cpu_s: a.cpu_s + u.cpu_s,
                working_set_bytes: a.working_set_bytes + u.working_set_bytes,
            })
    }

    /// The CPU `prefix` used per wall second from `earlier` to this reading, in % of one core.
    fn cpu_percent_since(&self, earlier: &UsageReading, prefix: &str) -> f64 {
        let wall = self.at_s - earlier.at_s;
        if wall <= 0.0 {
            return f64::NAN;
        }
        100.0 * (self.of(prefix).cpu_s - earlier.of(prefix).cpu_s) / wall
    }
}

/// The operator's figures from one `/metrics` reading to a later one.
struct OperatorSpan<'m> {
    from: &'m Metrics,
    to: &'m Metrics,
}

impl OperatorSpan<'_> {
    fn delta(&self, f: impl Fn(&Metrics) -> f64) -> f64 {
        f(self.to) - f(self.from)
    }

    fn reconciles(&self) -> f64 {
        self.delta(Metrics::reconciles)
    }

    fn mean_reconcile_ms(&self) -> f64 {
        1000.0 * self.delta(|m| m.get("shardset_operator_reconcile_duration_seconds_sum"))
            / self
                .delta(|m| m.get("shardset_operator_reconcile_duration_seconds_count"))
                .max(1.0)
    }

    /// API requests by verb, leader-election renewals apart.
    fn requests_by_verb(&self) -> BTreeMap<String, f64> {
        let mut by_verb = BTreeMap::new();
        let before: BTreeMap<String, f64> = self.from.requests().into_iter().collect();
        for (series, n) in self.to.requests() {
            if series.contains("resource=\"leases\"") {
                continue;
            }
            let verb = series
                .split("verb=\"")
                .nth(1)
                .and_then(|v| v.split('"').next())
                .unwrap_or("?")
                .to_owned();
            *by_verb.entry(verb).or_insert(0.0) += n - before.get(&series).copied().unwrap_or(0.0);
        }
        by_verb.retain(|_, n| *n > 0.0);
        by_verb
    }

    fn writes(&self) -> f64 {
        self.delta(Metrics::writes)
    }
}

fn verbs(by_verb: &BTreeMap<String, f64>) -> String {
    if by_verb.is_empty() {
        return "none".into();
    }
    by_verb
        .iter()
        .map(|(v, n)| format!("{v} {n:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

const MIB: f64 = 1024.0 * 1024.0;

/// Waits for an operator replica of `stack` to lead; its metrics then, and its pod's name (the
/// Lease's holder).
async fn leading(stack: &Stack<'_>) -> anyhow::Result<(Metrics, String)> {
    let metrics = poll(
        "an operator replica leading",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || async {
            Ok(match stack.leader_metrics().await {
                Ok(m) if m.leader() => Look::Done(m),
                Ok(_) => Look::NotYet("no leader yet".into()),
                Err(e) => Look::NotYet(format!("{e:#}")),
            })
        },
    )
    .await?;
    let leader = stack
        .ns
        .api::<k8s_openapi::api::coordination::v1::Lease>()
        .get(shardset_e2e::charts::OPERATOR_RELEASE)
        .await?
        .spec
        .and_then(|s| s.holder_identity)
        .context("the Lease has no holder")?;
    Ok((metrics, leader))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_scale() -> anyhow::Result<()> {
    if std::env::var("SHARDSET_BENCH").as_deref() != Ok("1") {
        eprintln!("SKIPPED bench_scale: a benchmark; run `make bench-scale` (SHARDSET_BENCH=1)");
        return Ok(());
    }
    let s = Settings::from_env();
    let pods = s.pods();
    let Some(ns) = TestNamespace::new("scale-bench").await else {
        return Ok(());
    };
    ensure_room(&ns.client, pods + STACK_PODS).await?;
    let load_before = load_average();

    let settings = StackSettings {
        identify_window_ms: s.window_ms,
        max_concurrency: s.concurrency,
        guilds: s.shards * 4,
        // Discord's own interval: a scaled one would only add heartbeat load.
        heartbeat_interval_ms: 41_250,
        fake_values: vec![
            // Discord raises the daily limit for large bots; 1,000 would run out at 1,024 shards.
            format!("--set=sessionStartLimit={}", (2 * s.shards).max(1000)),
            // A connection holds its compression state (~360 KiB at zlib-stream).
            "--set=resources.limits.memory=2Gi".into(),
        ],
        worker_logs: false,
        ..StackSettings::default()
    };
    let stack = Stack::install_with(&ns, &settings).await?;
    let (operator_before, leader) = leading(&stack).await?;
    let redis_forward = stack.redis_forward().await?;
    let mut redis = stack.redis_connection(&redis_forward).await?;
    let redis_before = redis_reading(&mut redis).await?;

    // The containers' CPU and memory every SAMPLE_EVERY from just before the apply to the end.
    let start = Instant::now();
    let samples = {
        let (client, name) = (ns.client.clone(), ns.name.clone());
        Recorder::<Vec<UsageReading>>::start(move |seen| async move {
            loop {
                let at_s = start.elapsed().as_secs_f64();
                if let Ok(containers) = usage::containers(&client, &name).await
                    && let Ok(mut seen) = seen.lock()
                {
                    seen.push(UsageReading { at_s, containers });
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        })
    };
    let usage_before = UsageReading {
        at_s: 0.0,
        containers: usage::containers(&ns.client, &ns.name).await?,
    };

    let manifest = stack.shardset("bot", s.shards, s.per_pod).pod(
        "resources",
        json!({"requests": {"cpu": "5m", "memory": "24Mi"}}),
    );
    let start_ms = now_ms();
    let applied_at = Instant::now();
    manifest.apply(&ns)?;
    let applied_s = applied_at.elapsed().as_secs_f64();

    let minimum_guess = Duration::from_secs_f64(s.floor_s());
    let timeout = minimum_guess * 4 + Duration::from_secs(600);
    wait_pods(&ns, "bot", timeout, |p| p.len() as u32 >= pods).await?;
    let pods_created_s = applied_at.elapsed().as_secs_f64();
    eprintln!(
        "bench-scale: {pods} pods created after {pods_created_s:.2} s; waiting for {} shards READY",
        s.shards
    );

    // Every shard READY and connected at the fake: the counter first (cheap), then the sessions.
    let fake = &stack.fake;
    poll(
        "every Identify accepted",
        timeout,
        Duration::from_secs(1),
        || async {
            let c = fake.counters().await?;
            Ok(if c.identifies_accepted >= u64::from(s.shards) {
                Look::Done(())
            } else {
                Look::NotYet(format!("{} accepted", c.identifies_accepted))
            })
        },
    )
    .await?;
    let live = poll(
        "every shard live",
        Duration::from_secs(120),
        Duration::from_secs(1),
        || async {
            let live = live_sessions(&fake.sessions().await?, s.shards);
            Ok(if live.len() == s.shards as usize {
                Look::Done(live)
            } else {
                Look::NotYet(format!("{} live", live.len()))
            })
        },
    )
    .await?;
    let seen_ready_s = applied_at.elapsed().as_secs_f64();
    let since_apply = |ms: u64| ms.saturating_sub(start_ms) as f64 / 1000.0;
    let created: Vec<u64> = live.values().map(|v| v.created_at_ms).collect();
    let all_ready_s = since_apply(created.iter().copied().max().unwrap_or_default());
    let first_ready_s = since_apply(created.iter().copied().min().unwrap_or_default());
    // When the worker containers started (the kubelets' part of the gap to the minimum).
    let started_ms: Vec<u64> = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&pods_of("bot")))
        .await?
        .items
        .iter()
        .filter_map(|p| {
            let status = p.status.as_ref()?.container_statuses.as_ref()?.first()?;
            let at = status
                .state
                .as_ref()?
                .running
                .as_ref()?
                .started_at
                .as_ref()?;
            u64::try_from(at.0.as_millisecond()).ok()
        })
        .collect();
    let operator_started = stack.leader_metrics().await?;
    let redis_started = redis_reading(&mut redis).await?;
    let usage_started = UsageReading {
        at_s: start.elapsed().as_secs_f64(),
        containers: usage::containers(&ns.client, &ns.name).await?,
    };
    let status_ready = wait_shardset(&ns, "bot", Duration::from_secs(300), |ss| {
        has_condition(ss, "Ready", "True", "AllShardsReady")
    })
    .await;
    let status_ready_s = applied_at.elapsed().as_secs_f64();

    // Steady state: every shard connected, nothing to change.
    let steady_from = (
        stack.leader_metrics().await?,
        redis_reading(&mut redis).await?,
        UsageReading {
            at_s: start.elapsed().as_secs_f64(),
            containers: usage::containers(&ns.client, &ns.name).await?,
        },
    );
    tokio::time::sleep(s.steady).await; // a measuring window, not a wait for an event
    let operator_steady = stack.leader_metrics().await?;
    let redis_steady = redis_reading(&mut redis).await?;
    let usage_steady = UsageReading {
        at_s: start.elapsed().as_secs_f64(),
        containers: usage::containers(&ns.client, &ns.name).await?,
    };
    samples.stop();
    let samples = samples.seen();

    let identifies = fake.identifies().await?;
    let violations = fake.violations().await?;
    let counters = fake.counters().await?;
    let load_after = load_average();

    // ---- figures ----
    let minimum_s = s.floor_s() + first_ready_s;
    let leader_prefix = format!("{leader}/");
    let fake_prefix = format!("{}-", shardset_e2e::charts::FAKE_RELEASE);
    let redis_prefix = format!("{}-redis-", shardset_e2e::charts::OPERATOR_RELEASE);
    let workers_prefix = "bot-";
    let peak = |prefix: &str, to_s: f64| {
        samples
            .iter()
            .filter(|r| r.at_s <= to_s)
            .map(|r| r.of(prefix).working_set_bytes)
            .max()
            .unwrap_or(0) as f64
            / MIB
    };
    let peak_cpu = |prefix: &str, to_s: f64| {
        samples
            .windows(2)
            .filter(|w| w[1].at_s <= to_s)
            .map(|w| w[1].cpu_percent_since(&w[0], prefix))
            .fold(0.0_f64, f64::max)
    };
    let start_end_s = usage_started.at_s;

    println!();
    println!(
        "bench-scale: {} shards at {} per pod ({pods} pods) on kind, fake Identify window {} ms, max_concurrency {}, IDENTIFY_MARGIN_MS {DEFAULT_MARGIN_MS} (the worker's default below 5 s)",
        s.shards, s.per_pod, s.window_ms, s.concurrency
    );
    println!(
        "  load average before {load_before}, after {load_after} ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("  kubectl apply returned                     {applied_s:>8.2} s");
    println!(
        "  all {pods} pods created                      {pods_created_s:>8.2} s   (aim < 10 s)"
    );
    let first_identify_s = identifies
        .iter()
        .map(|i| i.at_ms)
        .min()
        .map_or(f64::NAN, since_apply);
    println!(
        "  worker containers started: first {:.2} s, last {:.2} s ({} of {pods} running)",
        started_ms
            .iter()
            .copied()
            .min()
            .map_or(f64::NAN, since_apply),
        started_ms
            .iter()
            .copied()
            .max()
            .map_or(f64::NAN, since_apply),
        started_ms.len()
    );
    println!("  first Identify at the fake                 {first_identify_s:>8.2} s");
    println!("  first shard READY (one connect)            {first_ready_s:>8.2} s");
    println!(
        "  all {} shards READY (last session created) {all_ready_s:>8.2} s   (seen by polling at {seen_ready_s:.2} s)",
        s.shards
    );
    println!(
        "  minimum (ceil(N/C) − 1) × window + one connect = {:.2} + {first_ready_s:.2} = {minimum_s:.2} s; ratio {:.3} (aim ≤ 1.05)",
        s.floor_s(),
        all_ready_s / minimum_s
    );
    match &status_ready {
        Ok(_) => println!("  ShardSet Ready=True (AllShardsReady)       {status_ready_s:>8.2} s"),
        Err(e) => println!("  ShardSet Ready=True not seen: {e:#}"),
    }
    println!(
        "  the fake: {} Identifies ({} accepted), {} violations{}; its longest lag from arrival to judging {:.1} ms",
        identifies.len(),
        counters.identifies_accepted,
        violations.len(),
        if violations.is_empty() {
            String::new()
        } else {
            format!(" (first: {:?})", violations[0])
        },
        counters.identify_lag_max_us as f64 / 1000.0
    );
    let rounds = s.shards.div_ceil(s.concurrency).saturating_sub(1);
    let over: Vec<f64> = bucket_gaps_ms(&identifies, |i| i.at_us)
        .into_iter()
        .map(|g| g - f64::from(s.window_ms))
        .collect();
    let mean_over = over.iter().sum::<f64>() / over.len().max(1) as f64;
    println!(
        "  gaps between a bucket's consecutive Identifies, beyond the window (ms): {}  mean {mean_over:.1}  ({} gaps)",
        spread(&over),
        over.len()
    );
    // Where the rounds' extra time goes: while worker containers still start (CPU starved by the
    // kubelets, waiters not yet connected) or after the last one runs.
    let last_started_us = started_ms.iter().copied().max().unwrap_or_default() * 1000;
    let (starting, settled): (Vec<_>, Vec<_>) = timed_bucket_gaps(&identifies, |i| i.at_us)
        .into_iter()
        .partition(|(end_us, _)| *end_us <= last_started_us);
    let beyond = |gaps: &[(u64, f64)]| {
        let mut over: Vec<f64> = gaps
            .iter()
            .map(|(_, g)| g - f64::from(s.window_ms))
            .collect();
        over.sort_by(f64::total_cmp);
        format!("{} gaps, {}", over.len(), spread(&over))
    };
    println!(
        "    ending while worker containers still started (to {:.2} s): {}",
        since_apply(last_started_us / 1000),
        beyond(&starting)
    );
    println!(
        "    ending after the last container started:          {}",
        beyond(&settled)
    );
    println!(
        "  gap to the minimum: {:.2} s over {rounds} rounds = {:.0} ms a round ({ANSWER_MARGIN_MS} ms of it the answer margin)",
        all_ready_s - minimum_s,
        1000.0 * (all_ready_s - minimum_s) / f64::from(rounds.max(1))
    );

    let start_span = OperatorSpan {
        from: &operator_before,
        to: &operator_started,
    };
    let steady_span = OperatorSpan {
        from: &steady_from.0,
        to: &operator_steady,
    };
    let steady_s = s.steady.as_secs_f64();
    println!(
        "  operator, apply → all READY: {:.0} reconciles, mean {:.1} ms; API requests: {}; peak memory {:.1} MiB, peak CPU {:.0} %",
        start_span.reconciles(),
        start_span.mean_reconcile_ms(),
        verbs(&start_span.requests_by_verb()),
        peak(&leader_prefix, start_end_s),
        peak_cpu(&leader_prefix, start_end_s)
    );
    println!(
        "  operator, steady state ({steady_s:.0} s): {:.0} reconciles, mean {:.1} ms; API requests: {} ({:.1}/min); writes {:.0} ({:.2} per reconcile; aim 0); memory {:.1} MiB, CPU {:.1} %",
        steady_span.reconciles(),
        steady_span.mean_reconcile_ms(),
        verbs(&steady_span.requests_by_verb()),
        60.0 * steady_span.requests_by_verb().values().sum::<f64>() / steady_s,
        steady_span.writes(),
        steady_span.writes() / steady_span.reconciles().max(1.0),
        usage_steady.of(&leader_prefix).working_set_bytes as f64 / MIB,
        usage_steady.cpu_percent_since(&steady_from.2, &leader_prefix)
    );
    let per_s = |a: &RedisReading, b: &RedisReading| {
        (b.commands - a.commands) / b.at.duration_since(a.at).as_secs_f64()
    };
    println!(
        "  Redis: {:.0} commands/s during the start, {:.0}/s at steady state; memory {:.1} KiB per shard ({:.1} MiB in all, {:.1} MiB before the apply); CPU {:.1} % during the start, {:.1} % at steady state",
        per_s(&redis_before, &redis_started),
        per_s(&steady_from.1, &redis_steady),
        (redis_steady.used_memory - redis_before.used_memory) / 1024.0 / f64::from(s.shards),
        redis_steady.used_memory / MIB,
        redis_before.used_memory / MIB,
        usage_started.cpu_percent_since(&usage_before, &redis_prefix),
        usage_steady.cpu_percent_since(&steady_from.2, &redis_prefix)
    );
    println!(
        "  the fake's own CPU: {:.1} % of a core during the start (peak 2-s sample {:.0} %), {:.1} % at steady state; memory {:.1} MiB",
        usage_started.cpu_percent_since(&usage_before, &fake_prefix),
        peak_cpu(&fake_prefix, start_end_s),
        usage_steady.cpu_percent_since(&steady_from.2, &fake_prefix),
        usage_steady.of(&fake_prefix).working_set_bytes as f64 / MIB
    );
    println!(
        "  the {pods} worker pods: {:.1} % of a core at steady state in all, {:.1} MiB in all ({:.1} KiB per shard)",
        usage_steady.cpu_percent_since(&steady_from.2, workers_prefix),
        usage_steady.of(workers_prefix).working_set_bytes as f64 / MIB,
        usage_steady.of(workers_prefix).working_set_bytes as f64 / 1024.0 / f64::from(s.shards)
    );

    let line = summary_line(&s, all_ready_s, minimum_s, violations.len(), pods_created_s);
    match std::env::var("SHARDSET_BENCH_LINE_FILE") {
        Ok(path) if !path.is_empty() => std::fs::write(path, format!("{line}\n"))?,
        _ => println!("{line}"),
    }
    drop(redis_forward);
    drop(stack);
    Ok(())
}

/// The `q` quantile (0..1) of the reconciles between two readings of the operator's
/// `reconcile_duration_seconds` histogram, in ms, interpolated within its bucket as Prometheus's
/// `histogram_quantile` does (so no finer than the buckets: 5, 10, 25, 50, 100, 250 ms...).
fn reconcile_quantile_ms(from: &Metrics, to: &Metrics, q: f64) -> f64 {
    let prefix = "shardset_operator_reconcile_duration_seconds_bucket{le=\"";
    let mut buckets: Vec<(f64, f64)> = to
        .series_where(|k| k.starts_with(prefix))
        .into_iter()
        .filter_map(|(series, n)| {
            let le = series.strip_prefix(prefix)?.strip_suffix("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, n - from.get(&series)))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let Some(&(_, total)) = buckets.last() else {
        return f64::NAN;
    };
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return 1000.0 * lower;
            }
            let within = (count - below).max(f64::MIN_POSITIVE);
            return 1000.0 * (lower + (le - lower) * (rank - below) / within);
        }
        (lower, below) = (le, count);
    }
    f64::NAN
}

/// Benchmark (`make bench-operator-scale`): the operator at scale (issue 16). A fresh operator
/// chart with its Redis, `SHARDSET_OPSCALE_SHARDSETS` (20) fakes, then `kubectl apply` of as many
/// ShardSets of `SHARDSET_OPSCALE_SHARDS` (64) shards at `SHARDSET_OPSCALE_PER_POD` (16) per pod,
/// one per fake (80 pods in all). It waits for all pods created and every ShardSet
/// `Ready=True`, then watches the operator at rest for `SHARDSET_OPSCALE_REST_S` (120 s, two
/// resyncs of the chart's 60 s). Prints one line per figure; asserts nothing about them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_operator_scale() -> anyhow::Result<()> {
    if std::env::var("SHARDSET_BENCH").as_deref() != Ok("1") {
        eprintln!(
            "SKIPPED bench_operator_scale: a benchmark; run `make bench-operator-scale` (SHARDSET_BENCH=1)"
        );
        return Ok(());
    }
    let shardsets = env_u32("SHARDSET_OPSCALE_SHARDSETS", 20);
    let shards = env_u32("SHARDSET_OPSCALE_SHARDS", 64);
    let per_pod = env_u32("SHARDSET_OPSCALE_PER_POD", 16);
    let at_rest = Duration::from_secs(env_u32("SHARDSET_OPSCALE_REST_S", 120).into());
    let pods = shardsets * shards.div_ceil(per_pod);
    let Some(ns) = TestNamespace::new("opscale-bench").await else {
        return Ok(());
    };
    ensure_room(&ns.client, pods + STACK_PODS + shardsets - 1).await?;
    let load_before = load_average();
    let settings = StackSettings {
        identify_window_ms: 1000,
        max_concurrency: 16,
        guilds: shards * 4,
        heartbeat_interval_ms: 41_250,
        fake_values: vec!["--set=resources.requests.cpu=5m".into()],
        worker_logs: false,
        extra_fakes: shardsets - 1,
        ..StackSettings::default()
    };
    let stack = Stack::install_with(&ns, &settings).await?;
    let (before, leader) = leading(&stack).await?;
    let leader_prefix = format!("{leader}/");

    let applied_at = Instant::now();
    for n in 0..shardsets {
        stack
            .shardset(&format!("bot{n}"), shards, per_pod)
            .api_url(&Stack::fake_api_url(n))
            .pod(
                "resources",
                json!({"requests": {"cpu": "5m", "memory": "24Mi"}}),
            )
            .apply(&ns)?;
    }
    let peak_memory = AtomicU64::new(0);
    let pods_api = ns.api::<Pod>();
    let workers = ListParams::default().labels("shardset.io/shardset");
    poll(
        "every worker pod created",
        Duration::from_secs(600),
        Duration::from_millis(250),
        || async {
            let n = pods_api.list_metadata(&workers).await?.items.len() as u32;
            Ok(if n >= pods {
                Look::Done(())
            } else {
                Look::NotYet(format!("{n} of {pods} pods"))
            })
        },
    )
    .await?;
    let pods_created_s = applied_at.elapsed().as_secs_f64();
    let shardset_api = ns.api::<ShardSet>();
    poll(
        "every ShardSet Ready",
        Duration::from_secs(900),
        Duration::from_secs(1),
        || async {
            if let Ok(usage) = usage::containers(&ns.client, &ns.name).await {
                let reading = UsageReading {
                    at_s: 0.0,
                    containers: usage,
                };
                peak_memory.fetch_max(
                    reading.of(&leader_prefix).working_set_bytes,
                    Ordering::Relaxed,
                );
            }
            let ready = shardset_api
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .filter(|ss| has_condition(ss, "Ready", "True", "AllShardsReady"))
                .count() as u32;
            Ok(if ready >= shardsets {
                Look::Done(())
            } else {
                Look::NotYet(format!("{ready} of {shardsets} ShardSets Ready"))
            })
        },
    )
    .await?;
    let all_ready_s = applied_at.elapsed().as_secs_f64();
    let ready = stack.leader_metrics().await?;

    // At rest: every ShardSet Ready, nothing to change; the operator only resyncs.
    let rest_from = (
        stack.leader_metrics().await?,
        UsageReading {
            at_s: applied_at.elapsed().as_secs_f64(),
            containers: usage::containers(&ns.client, &ns.name).await?,
        },
    );
    tokio::time::sleep(at_rest).await; // the measuring window itself, not a wait for an event
    let rest_to = stack.leader_metrics().await?;
    let usage_rest = UsageReading {
        at_s: applied_at.elapsed().as_secs_f64(),
        containers: usage::containers(&ns.client, &ns.name).await?,
    };
    let load_after = load_average();

    let start = OperatorSpan {
        from: &before,
        to: &ready,
    };
    let rest = OperatorSpan {
        from: &rest_from.0,
        to: &rest_to,
    };
    let rest_s = at_rest.as_secs_f64();
    let rest_requests = rest.requests_by_verb();
    let memory = usage_rest.of(&leader_prefix).working_set_bytes;
    println!();
    println!(
        "operator-scale: shape {shardsets} ShardSets x {shards} shards at {per_pod} per pod = {pods} pods, one fake Discord per bot (1,000 ms window, max_concurrency 16), the chart's Redis; load average before {load_before}, after {load_after} ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("operator-scale: pods_created_s={pods_created_s:.2}");
    println!("operator-scale: all_ready_s={all_ready_s:.2}");
    println!(
        "operator-scale: reconcile_start_p50_ms={:.1} reconcile_start_p99_ms={:.1} ({:.0} reconciles, apply to all Ready)",
        reconcile_quantile_ms(&before, &ready, 0.5),
        reconcile_quantile_ms(&before, &ready, 0.99),
        start.reconciles()
    );
    println!(
        "operator-scale: reconcile_rest_p50_ms={:.1} reconcile_rest_p99_ms={:.1} ({:.0} reconciles in {rest_s:.0} s at rest)",
        reconcile_quantile_ms(&rest_from.0, &rest_to, 0.5),
        reconcile_quantile_ms(&rest_from.0, &rest_to, 0.99),
        rest.reconciles()
    );
    println!(
        "operator-scale: operator_memory_mib={:.1} (peak while starting {:.1})",
        memory as f64 / MIB,
        peak_memory.load(Ordering::Relaxed).max(memory) as f64 / MIB
    );
    println!(
        "operator-scale: api_requests_per_min_at_rest={:.1} ({}; leases apart)",
        60.0 * rest_requests.values().sum::<f64>() / rest_s,
        verbs(&rest_requests)
    );
    println!(
        "operator-scale: lists_at_rest={:.0} writes_at_rest={:.0} (per reconcile: {:.2} LISTs, {:.2} writes)",
        rest.delta(Metrics::lists),
        rest.writes(),
        rest.delta(Metrics::lists) / rest.reconciles().max(1.0),
        rest.writes() / rest.reconciles().max(1.0)
    );
    println!(
        "operator-scale: operator_cpu_at_rest_percent={:.2}",
        usage_rest.cpu_percent_since(&rest_from.1, &leader_prefix)
    );
    drop(stack);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_has_the_contracted_format() {
        let s = Settings {
            shards: 1024,
            per_pod: 8,
            window_ms: 1000,
            concurrency: 16,
            steady: Duration::from_secs(30),
        };
        assert_eq!(s.pods(), 128);
        assert_eq!(s.floor_s(), 63.0);
        assert_eq!(
            summary_line(&s, 74.0, 63.4, 0, 6.5),
            "bench-scale: shards=1024 pods=128 window_ms=1000 all_ready_s=74.00 minimum_s=63.40 ratio=1.167 violations=0 pods_created_s=6.50"
        );
    }

    #[test]
    fn reconcile_quantiles_interpolate_within_the_buckets() {
        let at = |counts: [u32; 4]| {
            Metrics::parse(&format!(
                "shardset_operator_reconcile_duration_seconds_bucket{{le=\"0.01\"}} {}\n\
                 shardset_operator_reconcile_duration_seconds_bucket{{le=\"0.05\"}} {}\n\
                 shardset_operator_reconcile_duration_seconds_bucket{{le=\"0.1\"}} {}\n\
                 shardset_operator_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {}\n",
                counts[0], counts[1], counts[2], counts[3]
            ))
        };
        let (from, to) = (at([5, 5, 5, 5]), at([5, 105, 205, 205]));
        // 200 new reconciles: 100 in (10, 50] ms, 100 in (50, 100] ms.
        assert!((reconcile_quantile_ms(&from, &to, 0.5) - 50.0).abs() < 1e-9);
        assert!((reconcile_quantile_ms(&from, &to, 0.25) - 30.0).abs() < 1e-9);
        assert!((reconcile_quantile_ms(&from, &to, 0.99) - 99.0).abs() < 1e-9);
        assert!(reconcile_quantile_ms(&from, &from, 0.5).is_nan(), "none");
    }

    #[test]
    fn info_fields_are_read_by_name() {
        let info = "# Stats\r\ntotal_commands_processed:1234\r\nused_memory:2048\r\nused_memory_human:2K\r\n";
        assert_eq!(info_field(info, "total_commands_processed"), 1234.0);
        assert_eq!(info_field(info, "used_memory"), 2048.0);
        assert_eq!(info_field(info, "missing"), 0.0);
    }
}
