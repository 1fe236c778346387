//! `demo-handler`: the demo handler service (see the library documentation). Configured by the
//! handler library's env variables (`NATS_URL`, `SHARDSET_STREAM`, ... in docs/bus-protocol.md)
//! plus `DISCORD_TOKEN` (required, never logged), `DISCORD_API_URL` (default Discord's; the fake's
//! in the demo) and `DEMO_HANDLER_LISTEN` (`/healthz`, `/metrics`; default `0.0.0.0:8080`).
//! `LOG_FORMAT=json` logs JSON lines. SIGTERM hands the partitions over cleanly.

use std::net::SocketAddr;
use std::sync::Arc;

use demo_handler::metrics::{self, Metrics};
use demo_handler::reply::Replier;
use shardset_contract::env::{DISCORD_API_URL, DISCORD_TOKEN};
use shardset_contract::rest::{DEFAULT_API_URL, DiscordRest};
use shardset_contract::token::Token;
use shardset_handler::{Config, Event, Replica};
use tracing::{error, info};

/// Where `/healthz` and `/metrics` are served.
const DEMO_HANDLER_LISTEN: &str = "DEMO_HANDLER_LISTEN";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    init_tracing(std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json"));
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "demo-handler stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let token = std::env::var(DISCORD_TOKEN)
        .ok()
        .filter(|t| !t.is_empty())
        .ok_or("DISCORD_TOKEN is not set")?;
    let api = std::env::var(DISCORD_API_URL).unwrap_or_else(|_| DEFAULT_API_URL.to_owned());
    let rest = DiscordRest::new(&api, Token::new(token))?;
    let listen: SocketAddr = std::env::var(DEMO_HANDLER_LISTEN)
        .unwrap_or_else(|_| "0.0.0.0:8080".to_owned())
        .parse()?;
    let (metrics, bus_metrics, registry) = Metrics::registered(&config.stream, &config.group);
    tokio::spawn(async move {
        if let Err(e) = metrics::serve(listen, registry).await {
            error!(error = %e, %listen, "cannot serve /metrics");
        }
    });
    info!(api = %rest.base(), config = ?config, "starting");
    let replier = Arc::new(Replier::new(rest, metrics.clone()));
    let handler = move |event: Event| {
        let replier = replier.clone();
        async move { replier.handle(event).await }
    };
    let replica = Replica::start_with_metrics(config, handler, bus_metrics).await?;
    let mut ownership = replica.ownership();
    // Until SIGTERM, or the replica's loop ending (its ownership channel closes).
    tokio::select! {
        () = shardset_contract::pod::terminated() => {}
        () = async { while ownership.changed().await.is_ok() {} } => {}
    }
    info!("shutting down: handing the partitions over");
    let stats = replica.shutdown().await;
    info!(?stats, "stopped");
    Ok(())
}

/// `RUST_LOG` (default `info`), minus the targets that may carry the token (as in the worker).
fn init_tracing(json: bool) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let never = shardset_contract::token::NEVER_LOGGED_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, target| t.with_target(*target, LevelFilter::OFF),
    );
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter).with(never);
    if json {
        registry.with(layer.json()).init();
    } else {
        registry.with(layer).init();
    }
}
