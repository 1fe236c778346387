//! A bot's own worker: the operator's pods run this binary (`spec.image`) instead of the stock
//! `shard-worker`, configured by the same pod env; every dispatch reaches `MyBot`.

use std::sync::Arc;

use shard_worker::handler::{Dispatch, Handler};
use shard_worker::worker::{Builder, shutdown_on_signal};

struct MyBot;

impl Handler for MyBot {
    async fn dispatch(&self, d: Dispatch<'_>) {
        // In order per shard; `d.data` is the raw JSON of `d`, `d.guild_id()` parses on demand.
        if d.event == "MESSAGE_CREATE" && d.act().await {
            // Act here: exactly one layout gets here for each event, also during a reshard.
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    // The pod env the operator writes (SHARD_FIRST, ..., DISCORD_TOKEN, REDIS_PASSWORD).
    let worker = Builder::from_env()?;
    let outcome = worker.run(Arc::new(MyBot), shutdown_on_signal()).await?;
    // A handler that panicked: every session was saved; exit non-zero and let the pod restart.
    anyhow::ensure!(outcome.panicked.is_empty(), "the handler panicked");
    Ok(())
}
