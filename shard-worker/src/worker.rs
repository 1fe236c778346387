//! A worker: the shards `first..=last` of one layout, their bookkeeping and the layout watcher.
//! The binary wires it to the environment; tests and other binaries can build one directly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::board::Board;
use crate::bookkeeper::{self, BookkeeperConfig, GuildCount};
use crate::handler::Handler;
use crate::identify::records::Records;
use crate::shard::{self, Exit, Shared};

/// How a worker's shards ended.
#[derive(Debug, Default)]
pub struct Outcome {
    pub stopped: Vec<u32>,
    /// `(shard, close code)` of shards closed fatally.
    pub fatal: Vec<(u32, u16)>,
}

/// Runs every shard on the board until `shutdown` turns true (or all ended fatally), with the
/// bookkeeper and the layout watcher when Redis records are configured.
pub async fn run<H: Handler>(
    shared: Arc<Shared<H>>,
    bookkeeping: BookkeeperConfig,
    layout: String,
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
        background.spawn(watch_layout(
            records,
            layout,
            Arc::clone(&shared.active),
            stop_rx,
        ));
    }

    let mut shards = JoinSet::new();
    let ids: Vec<u32> = shared.board.slots().map(|s| s.shard).collect();
    for shard in ids {
        let shared = Arc::clone(&shared);
        let shutdown = shutdown.clone();
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

/// Keeps `active` equal to "this layout acts on events": true when `P:active-layout` is unset
/// (no reshard under way) or names `layout`. Polled every second; on Redis errors the last known
/// value stays.
async fn watch_layout(
    records: Records,
    layout: String,
    active: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Ok(current) = records.active_layout().await {
            let is_active = current.as_deref().is_none_or(|c| c == layout);
            if active.swap(is_active, Ordering::Relaxed) != is_active {
                info!(layout = %layout, active = is_active, "layout activity changed");
            }
        }
    }
}

/// A board with shards `first..=last`.
pub fn board(first: u32, last: u32, metrics: Arc<crate::metrics::Metrics>) -> Arc<Board> {
    Arc::new(Board::new(first, last, metrics))
}
