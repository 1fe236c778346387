//! Running a worker: every shard of its board, their bookkeeping, the layout-roles watcher and
//! the pace watcher, until shutdown or a handler's panic. [`super::builder::Builder`] sets the parts up from the
//! worker's settings; tests and other binaries can also build the [`Shared`] parts themselves.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::handler::Handler;
use crate::shard::{self, Exit, Shared};
use crate::worker::bookkeeper::{
    self, BookkeeperConfig, BusAccepting, GuildCount, Reported, SettledSeq,
};
use crate::worker::fence;

/// How a worker's shards ended.
#[derive(Debug, Default)]
pub struct Outcome {
    pub stopped: Vec<u32>,
    /// `(shard, close code)` of shards closed fatally (code 0: the Identify-loop guard).
    pub fatal: Vec<(u32, u16)>,
    /// Shards whose task panicked (a bug in the handler). The worker then stopped every other
    /// shard too (saving their sessions): the process should exit with an error and be
    /// restarted, resuming every session.
    pub panicked: Vec<u32>,
    /// Why no shard started, when [`super::builder::Builder::run`] could not start them: Discord
    /// refused the token, or the configuration must not run (a `MAX_CONCURRENCY` that does not
    /// divide Discord's). Every shard was reported Fatal with this reason until shutdown.
    pub refused: Option<String>,
}

/// The status reason of a shard whose handler panicked.
pub const HANDLER_PANICKED: &str = "the handler panicked";

/// Runs every shard on the board until `shutdown` turns true (or a shard's task panicked),
/// with the bookkeeper and the layout-roles watcher when Redis records are configured.
///
/// A panic in the handler ends its shard's task: that shard's session is saved (up to the last
/// settled dispatch, so the one that panicked is replayed) and its lease released, then every
/// other shard stops as on shutdown. A process that went on without the shard would keep its
/// lease renewed and hide the dead shard; a restart resumes every session instead.
pub async fn run<H: Handler>(
    shared: Arc<Shared<H>>,
    bookkeeping: BookkeeperConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Outcome {
    let (stop_tx, stop_rx) = watch::channel(false);
    // The shards' own shutdown: the caller's, or a panic of one of them.
    let (shards_stop_tx, shards_stop) = watch::channel(false);
    let mut background = JoinSet::new();
    // Self-fencing's deadline, for as long as the shards run (dropped at the end of `run`).
    let _fence = shared.records.as_ref().map(|_| {
        let fence_after = bookkeeping
            .lease_ttl
            .saturating_sub(bookkeeping.fence_margin);
        fence::spawn(Arc::clone(&shared.board), fence_after)
    });
    if let Some(records) = shared.records.clone() {
        let handler = Arc::clone(&shared.handler);
        let guilds: GuildCount = Arc::new(move |shard| handler.guilds_on(shard));
        let publishing = Arc::clone(&shared);
        let bus: BusAccepting = Arc::new(move || publishing.bus.as_ref().map(|b| b.accepting()));
        let settling = Arc::clone(&shared);
        let settled: SettledSeq =
            Arc::new(move |shard, handled| settling.settled_seq(shard, handled));
        background.spawn(bookkeeper::run(
            Arc::clone(&shared.board),
            records.clone(),
            bookkeeping,
            Reported { guilds, bus },
            settled,
            stop_rx.clone(),
        ));
        background.spawn(crate::handover::acting::watch(
            Arc::clone(&shared.acting),
            Arc::clone(&shared.board),
            stop_rx.clone(),
        ));
        background.spawn(crate::worker::pace_watch::run(
            Arc::clone(&shared.board),
            shared.acting.lag_bound_ms(),
            stop_rx,
        ));
    }

    let mut shards = JoinSet::new();
    let mut task_shards = HashMap::new();
    let ids: Vec<u32> = shared.board.slots().map(|s| s.shard).collect();
    for shard in ids {
        let task_shared = Arc::clone(&shared);
        let stop = shards_stop.clone();
        let task = shards.spawn(async move { (shard, shard::run(task_shared, shard, stop).await) });
        task_shards.insert(task.id(), shard);
    }
    let mut outcome = Outcome::default();
    // Set once the caller asked to stop (or went away): asked once, not on every turn.
    let mut stopping = false;
    loop {
        let result = tokio::select! {
            result = shards.join_next_with_id() => match result {
                Some(result) => result,
                None => break,
            },
            _ = shutdown.wait_for(|s| *s), if !stopping => {
                stopping = true;
                let _ = shards_stop_tx.send(true);
                continue;
            }
        };
        match result {
            Ok((_, (shard, Exit::Stopped))) => outcome.stopped.push(shard),
            Ok((_, (shard, Exit::Fatal(code)))) => {
                warn!(shard_id = shard, code, "shard closed for good");
                outcome.fatal.push((shard, code));
            }
            Err(e) => {
                let shard = task_shards.get(&e.id()).copied();
                error!(shard_id = ?shard, error = %e, "shard task failed; stopping every shard so that a restart resumes them");
                if let Some(shard) = shard {
                    let reason = if e.is_panic() {
                        HANDLER_PANICKED.to_owned()
                    } else {
                        format!("shard task failed: {e}")
                    };
                    shard::abandon(&shared, shard, reason).await;
                    outcome.panicked.push(shard);
                }
                let _ = shards_stop_tx.send(true);
            }
        }
    }
    let _ = stop_tx.send(true);
    while background.join_next().await.is_some() {}
    outcome.stopped.sort_unstable();
    outcome.panicked.sort_unstable();
    info!(
        stopped = outcome.stopped.len(),
        fatal = outcome.fatal.len(),
        panicked = outcome.panicked.len(),
        "all shards ended"
    );
    outcome
}
