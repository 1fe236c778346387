//! A worker: the shards `first..=last` of one layout, their bookkeeping and the layout watcher.
//! The binary wires it to the environment; tests and other binaries can build one directly.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::board::Board;
use crate::bookkeeper::{self, BookkeeperConfig, GuildCount};
use crate::handler::Handler;
use crate::shard::{self, Exit, Shared};

/// How a worker's shards ended.
#[derive(Debug, Default)]
pub struct Outcome {
    pub stopped: Vec<u32>,
    /// `(shard, close code)` of shards closed fatally.
    pub fatal: Vec<(u32, u16)>,
}

/// Runs every shard on the board until `shutdown` turns true (or all ended fatally), with the
/// bookkeeper and the layout-roles watcher when Redis records are configured.
pub async fn run<H: Handler>(
    shared: Arc<Shared<H>>,
    bookkeeping: BookkeeperConfig,
    shutdown: watch::Receiver<bool>,
) -> Outcome {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut background = JoinSet::new();
    if let Some(records) = shared.records.clone() {
        let handler = Arc::clone(&shared.handler);
        let guilds: GuildCount = Arc::new(move |shard| handler.guilds_on(shard));
        background.spawn(bookkeeper::run(
            Arc::clone(&shared.board),
            records.clone(),
            bookkeeping,
            guilds,
            stop_rx.clone(),
        ));
        background.spawn(crate::acting::watch(
            Arc::clone(&shared.acting),
            Arc::clone(&shared.board),
            stop_rx,
        ));
    }

    let mut shards = JoinSet::new();
    let shutdown_for_shards = shutdown.clone();
    let ids: Vec<u32> = shared.board.slots().map(|s| s.shard).collect();
    for shard in ids {
        let shared = Arc::clone(&shared);
        let shutdown = shutdown_for_shards.clone();
        shards.spawn(async move { (shard, shard::run(shared, shard, shutdown).await) });
    }
    let mut outcome = Outcome::default();
    while let Some(result) = shards.join_next().await {
        match result {
            Ok((shard, Exit::Stopped)) => outcome.stopped.push(shard),
            Ok((shard, Exit::Fatal(code))) => {
                warn!(shard_id = shard, code, "shard closed fatally; not retrying");
                outcome.fatal.push((shard, code));
            }
            Err(e) => warn!(error = %e, "shard task failed"),
        }
    }
    // Shards closed for good stay reported (status records, metrics, /readyz) until shutdown:
    // ending the process would only restart it and call Discord again.
    let mut shutdown = shutdown;
    if !*shutdown.borrow() && !outcome.fatal.is_empty() {
        info!("every shard ended; reporting until shutdown");
        let _ = shutdown.wait_for(|s| *s).await;
    }
    let _ = stop_tx.send(true);
    while background.join_next().await.is_some() {}
    outcome.stopped.sort_unstable();
    info!(
        stopped = outcome.stopped.len(),
        fatal = outcome.fatal.len(),
        "all shards ended"
    );
    outcome
}

/// A board with shards `first..=last`.
pub fn board(first: u32, last: u32, metrics: Arc<crate::metrics::Metrics>) -> Arc<Board> {
    Arc::new(Board::new(first, last, metrics))
}
