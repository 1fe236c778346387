//! `fake-discord`: serves the fake Discord gateway, REST API and control API on one address.

use std::net::SocketAddr;

use clap::Parser;
use fake_discord::{Config, FakeDiscord};
use tracing_subscriber::EnvFilter;

/// A fake Discord gateway and REST API that enforces Discord's rules and reports every
/// violation. REST under /api/v10, the control API under /control, the gateway WebSocket on any
/// other path.
#[derive(Debug, Parser)]
#[command(name = "fake-discord", version)]
struct Cli {
    /// Address to listen on (REST, control API and gateway share it).
    #[arg(long, env = "FAKE_DISCORD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,

    #[command(flatten)]
    config: Config,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr; stdout carries only the startup lines that tools parse.
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        subscriber.json().init();
    } else {
        subscriber.init();
    }
    let fake = FakeDiscord::spawn(cli.config, cli.listen).await?;
    println!("fake-discord listening on {}", fake.addr());
    println!("  DISCORD_API_URL={}", fake.api_url());
    println!("  control API:    {}", fake.control_url());
    shutdown_signal().await;
    tracing::info!("shutting down");
    fake.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
