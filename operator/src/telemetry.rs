//! Logging: JSON lines by default (one object per event, stable keys `shardset`, `namespace`,
//! `pod`, `layout`), or human-readable text for runs by hand. `RUST_LOG` filters as usual.
//! The token never reaches a log line: it lives in `shardset_contract::token::Token`, which prints
//! `<redacted>`, and the libraries that could print it (tungstenite traces every frame it sends)
//! are turned off after `RUST_LOG`'s filter, whatever it says
//! (`shardset_contract::token::NEVER_LOGGED_TARGETS`).

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Installs the global subscriber. Default filter: `info` for us, `warn` for the libraries.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,kube=warn,kube_lease_manager=warn"));
    let never = shardset_contract::token::NEVER_LOGGED_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, target| t.with_target(*target, LevelFilter::OFF),
    );
    let registry = tracing_subscriber::registry().with(filter).with(never);
    match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(true),
            )
            .init(),
        LogFormat::Text => registry.with(fmt::layer()).init(),
    }
}
