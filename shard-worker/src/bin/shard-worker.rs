//! The default shard worker: runs shards `SHARD_FIRST..=SHARD_LAST` of a `SHARD_TOTAL` layout,
//! configured by the env contract the operator writes (each variable has a flag of the same
//! meaning for runs by hand; the token is env-only), with the default handler. The startup is the
//! library's `worker::Builder`; this file only parses, sets up logging and the runtime, and says
//! how the worker ended. See the README's "Shard worker" section.
//!
//! SIGTERM: stop dispatching, save each session to Redis (up to what the handler settled and,
//! with `NATS_URL`, the bus acknowledged), close with a resumable code, release the leases, drain
//! the forward queue and the bus's last publishes, exit 0. (A retired layout ends its sessions
//! instead.)
//!
//! A token Discord refuses (401) or shards closed for good (4004, 4010–4014) do not end the
//! process: a restart would only call Discord again (a crash loop spends requests and, for
//! Identify, session starts). The worker reports them (shard state Fatal with the reason in
//! `P:status` and `/metrics`, `/readyz` 503, `/healthz` 200) and waits for SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;
use clap::Parser;
use prometheus_client::registry::Registry;
use shard_worker::handler::default::DefaultHandler;
use shard_worker::worker::{Builder, Settings, shutdown_on_signal};
use shardset_contract::env;
use tracing::{error, info};

#[derive(Debug, Parser)]
#[command(
    name = "shard-worker",
    version,
    about = "Runs a range of Discord gateway shards"
)]
struct Args {
    #[command(flatten)]
    settings: Settings,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Runtime threads. 1 (the default) runs every shard on one thread: a gateway shard is light,
    /// and one thread avoids cross-thread wake-ups on every dispatch. Raise it for pods with many
    /// busy shards.
    #[arg(long, env = env::WORKER_THREADS, default_value_t = 1)]
    threads: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing(args.log_json);
    let mut builder = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.threads);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args.settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "shard worker failed");
            ExitCode::FAILURE
        }
    }
}

/// `RUST_LOG` (default `info`) decides what is logged, except the targets that can carry the
/// token ([`shardset_contract::token::NEVER_LOGGED_TARGETS`]): a second filter turns those off, so
/// even `RUST_LOG=trace` (or `tungstenite=trace`) cannot bring them back.
fn init_tracing(json: bool) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let never = shardset_contract::token::NEVER_LOGGED_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, target| t.with_target(*target, LevelFilter::OFF),
    );
    let registry = tracing_subscriber::registry().with(filter).with(never);
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if json {
        registry.with(layer.json()).init();
    } else {
        registry.with(layer).init();
    }
}

/// The worker with the default handler: a guild cache, forwarding with `FORWARD_URL`, REST
/// replies with `REPLY_TO_MESSAGES`.
async fn run(settings: Settings) -> anyhow::Result<()> {
    let worker = Builder::with_env_secrets(settings);
    let settings = worker.settings();
    let replier = if settings.reply_to_messages {
        Some(worker.rest()?)
    } else {
        None
    };
    let shutdown = shutdown_on_signal();
    let handler = DefaultHandler::new(settings.forward_url.clone(), replier, shutdown.clone());
    let mut registry = Registry::default();
    handler.register(&mut registry);
    let outcome = worker
        .registry(registry)
        .run(Arc::new(handler), shutdown)
        .await?;
    if !outcome.panicked.is_empty() {
        // A bug in the handler: exit with an error so the pod restarts; the restart resumes
        // every session (saved above), replaying the dispatch that panicked.
        bail!(
            "the handler panicked on shard(s) {:?}; every session was saved for the restart",
            outcome.panicked
        );
    }
    if !outcome.fatal.is_empty() {
        info!(
            fatal = outcome.fatal.len(),
            "exiting after SIGTERM; shards closed for good are reported in P:status until then"
        );
    }
    Ok(())
}
