//! What a run prints around its benchmarks: the machine, the date and the load average (at the
//! start and at the end: the machine may be shared), and a summary of every side-by-side figure
//! with its ratio, as a Markdown table like the README's.

use shardset_contract::GatewayCompression;

use crate::held::Held;

/// RSS per connected shard of both clients at one compression.
pub struct Memory {
    pub compression: GatewayCompression,
    /// Shards of the large run.
    pub shards: u32,
    pub worker_kib: f64,
    pub twilight_kib: f64,
}

impl Memory {
    /// shard-worker / twilight (aim: <= 0.5).
    pub fn ratio(&self) -> f64 {
        self.worker_kib / self.twilight_kib
    }
}

/// Dispatches per CPU-second of both clients at one compression and load rate.
pub struct Throughput {
    pub compression: GatewayCompression,
    /// MESSAGE_CREATE per second.
    pub rate: u32,
    pub worker: f64,
    pub twilight: f64,
}

impl Throughput {
    /// shard-worker / twilight (aim: >= 2).
    pub fn ratio(&self) -> f64 {
        self.worker / self.twilight.max(1e-9)
    }
}

/// One point of the scaling curve: both clients holding `shards` in one process.
pub struct Scaling {
    pub compression: GatewayCompression,
    pub shards: u32,
    pub worker: Held,
    pub twilight: Held,
}

/// Every side-by-side figure of a run.
#[derive(Default)]
pub struct Summary {
    pub memory: Vec<Memory>,
    pub throughput: Vec<Throughput>,
    pub scaling: Vec<Scaling>,
}

impl Summary {
    pub fn print(&self) {
        if self.memory.is_empty() && self.throughput.is_empty() && self.scaling.is_empty() {
            return;
        }
        println!("\n== summary");
        println!("| | shard-worker | twilight-gateway 0.18 | ratio |");
        println!("|---|---|---|---|");
        for m in &self.memory {
            println!(
                "| RSS per connected shard, {} ({} shards) | {:.1} KiB | {:.1} KiB | **{:.2}** (aim <= 0.5) |",
                m.compression,
                m.shards,
                m.worker_kib,
                m.twilight_kib,
                m.ratio()
            );
        }
        for t in &self.throughput {
            println!(
                "| dispatches per CPU-second, {}, {} MESSAGE_CREATE/s | {:.0} k | {:.0} k | **{:.2}** (aim >= 2) |",
                t.compression,
                t.rate,
                t.worker / 1000.0,
                t.twilight / 1000.0,
                t.ratio()
            );
        }
        for c in &self.scaling {
            let (w, t) = (&c.worker, &c.twilight);
            println!(
                "| one process, {} shards, {}: RSS / CPU to READY / CPU at rest | {:.1} MiB / {:.2} s / {:.2} % | {:.1} MiB / {:.2} s / {:.2} % | {} / {} / {} |",
                c.shards,
                c.compression,
                w.rss_kib as f64 / 1024.0,
                w.start_cpu_s,
                w.rest_cpu_share * 100.0,
                t.rss_kib as f64 / 1024.0,
                t.start_cpu_s,
                t.rest_cpu_share * 100.0,
                ratio(w.rss_kib as f64, t.rss_kib as f64),
                ratio(w.start_cpu_s, t.start_cpu_s),
                ratio(w.rest_cpu_share, t.rest_cpu_share)
            );
        }
    }
}

/// `a / b` with two decimals, or "—" when `b` is below what `/proc` resolves (a clock tick).
fn ratio(a: f64, b: f64) -> String {
    if b > 1e-6 {
        format!("{:.2}", a / b)
    } else {
        "—".to_owned()
    }
}

/// Prints the machine, the date (UTC) and the load average, `when` in the run.
pub fn machine(when: &str) {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, name)| name.trim());
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let memory_gib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let kernel = read("/proc/sys/kernel/osrelease");
    let loadavg = read("/proc/loadavg");
    let load = loadavg
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let now = jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC");
    println!(
        "machine {when}: {cpu}, {cpus} CPUs, {memory_gib:.1} GiB, Linux {}; {now}; load average {load}",
        kernel.trim()
    );
}
