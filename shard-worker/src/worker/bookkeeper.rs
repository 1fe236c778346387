//! Copies the board to Redis in the background: session checkpoints (every few seconds, so a
//! crash can still resume from the last one), shard status records for the operator, and lease
//! renewals. Redis errors are counted and retried on the next tick; they never reach a gateway
//! connection, with one exception: **self-fencing**. A shard whose lease was last confirmed
//! longer ago than the lease TTL minus [`BookkeeperConfig::fence_margin`] gives its session up
//! (closed resumably, so the next owner resumes it) before the lease can expire: another pod may
//! take the lease then, and two live sessions of one shard must never run at once. So a Redis
//! outage pauses the shards after about TTL − margin; they take their leases again and resume
//! (no Identify) once Redis is back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::shard::records::{Lease, Records};
use crate::worker::board::{Board, LiveSession, Slot};
use crate::worker::metrics::ReasonLabels;
use shardset_contract::{SessionRecord, ShardStatus};

/// Timing of the background writes.
#[derive(Debug, Clone)]
pub struct BookkeeperConfig {
    /// How often the board is looked at.
    pub tick: Duration,
    /// How often a live session is checkpointed (when its seq moved).
    pub checkpoint_every: Duration,
    /// TTL of saved sessions: the resume window.
    pub resume_window: Duration,
    /// TTL of a lease; renewed every third of it.
    pub lease_ttl: Duration,
    /// A shard whose lease was last confirmed `lease_ttl − fence_margin` ago stands down.
    pub fence_margin: Duration,
    /// TTL of status records; rewritten every third of it, and on every change.
    pub status_ttl: Duration,
    /// This pod's name, written into status records.
    pub pod: String,
}

/// How many guilds a shard holds, from the handler.
pub type GuildCount = Arc<dyn Fn(u32) -> Option<u32> + Send + Sync>;

/// The seq a checkpoint may save for `(shard, handled seq)`: what the handler settled and the
/// bus acknowledged ([`crate::shard::Shared::settled_seq`]).
pub type SettledSeq = Arc<dyn Fn(u32, u64) -> u64 + Send + Sync>;

#[derive(Default)]
struct Written {
    session: Option<(LiveSession, u64)>,
    checkpoint_at: Option<Instant>,
    status_version: Option<u64>,
    status_at: Option<Instant>,
    lease_at: Option<Instant>,
    /// The owner whose lease `lease_confirmed` is about.
    lease_owner: Option<String>,
    /// When the lease was last known to be ours (taken, or a renewal was sent and answered).
    lease_confirmed: Option<Instant>,
}

/// Runs until `stop` turns true.
pub async fn run(
    board: Arc<Board>,
    records: Records,
    config: BookkeeperConfig,
    guilds: GuildCount,
    settled: SettledSeq,
    mut stop: watch::Receiver<bool>,
) {
    let mut written: HashMap<u32, Written> = HashMap::new();
    let mut ticker = tokio::time::interval(config.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            // A state change or an acknowledgement: write it now (statuses only change on
            // their version, so an early pass costs nothing else).
            () = board.changed.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        for slot in board.slots() {
            // Before each shard's Redis calls (which may each take a timeout while Redis is
            // away), every shard is checked for a lease too old to keep its session.
            for other in board.slots() {
                fence(other, &config, written.entry(other.shard).or_default());
            }
            let w = written.entry(slot.shard).or_default();
            tend(&board, slot, &records, &config, &guilds, &settled, w).await;
        }
    }
}

/// Tracks when each shard's lease was taken, and makes a shard whose lease could not be
/// renewed in time give its session up (see the module documentation).
fn fence(slot: &Slot, config: &BookkeeperConfig, w: &mut Written) {
    let now = Instant::now();
    let owner = slot.lock().lease_owner.clone();
    if owner != w.lease_owner {
        // Taken (the shard claimed it moments ago) or given up: renew at once if ours.
        w.lease_confirmed = owner.as_ref().map(|_| now);
        w.lease_owner = owner;
        w.lease_at = None;
        return;
    }
    let Some(confirmed) = w.lease_confirmed else {
        return;
    };
    let limit = config.lease_ttl.saturating_sub(config.fence_margin);
    if w.lease_owner.is_some() && now.duration_since(confirmed) >= limit {
        warn!(
            shard_id = slot.shard,
            "the lease could not be renewed in time (Redis unreachable?): closing the session resumably before another pod may take it"
        );
        let mut s = slot.lock();
        if s.lease_owner == w.lease_owner {
            s.lease_owner = None;
            drop(s);
            slot.lease_lost_flag
                .store(true, std::sync::atomic::Ordering::Release);
            slot.lease_lost.notify_one();
        }
        w.lease_owner = None;
        w.lease_confirmed = None;
        w.lease_at = None;
    }
}

async fn tend(
    board: &Board,
    slot: &Slot,
    records: &Records,
    config: &BookkeeperConfig,
    guilds: &GuildCount,
    settled: &SettledSeq,
    w: &mut Written,
) {
    let now = Instant::now();
    let due =
        |at: Option<Instant>, every: Duration| at.is_none_or(|t| now.duration_since(t) >= every);
    let errors = |what: &'static str| {
        board
            .metrics()
            .redis_errors
            .get_or_create(&ReasonLabels { reason: what })
            .inc()
    };

    let _io = slot.io.lock().await;
    let snapshot = slot.lock().clone();

    if let (Some(session), Some(_), false) =
        (&snapshot.session, &snapshot.lease_owner, snapshot.finalized)
    {
        let seq = settled(slot.shard, slot.handled_seq());
        let changed = w.session.as_ref() != Some(&(session.clone(), seq));
        if changed && due(w.checkpoint_at, config.checkpoint_every) {
            let record = SessionRecord {
                session_id: session.session_id.clone(),
                seq,
                resume_gateway_url: session.resume_gateway_url.clone(),
                saved_at_ms: unix_ms(),
            };
            match records
                .save_session(slot.shard, &record, config.resume_window)
                .await
            {
                Ok(()) => {
                    w.session = Some((session.clone(), seq));
                    w.checkpoint_at = Some(now);
                }
                Err(e) => {
                    errors("checkpoint");
                    debug!(shard_id = slot.shard, error = %e, "checkpoint failed");
                }
            }
        }
    }

    if let Some(owner) = &snapshot.lease_owner
        && due(w.lease_at, config.lease_ttl / 3)
    {
        match records
            .claim_lease(slot.shard, owner, config.lease_ttl)
            .await
        {
            Ok(Lease::Held) => {
                w.lease_at = Some(now);
                // Renewed from the moment the request left (a conservative start).
                if w.lease_owner.as_ref() == Some(owner) {
                    w.lease_confirmed = Some(now);
                }
            }
            Ok(Lease::Taken { .. }) => {
                warn!(
                    shard_id = slot.shard,
                    "another pod took this shard's lease; giving the shard up"
                );
                slot.lock().lease_owner = None;
                slot.lease_lost_flag
                    .store(true, std::sync::atomic::Ordering::Release);
                slot.lease_lost.notify_one();
            }
            Err(e) => {
                errors("lease");
                debug!(shard_id = slot.shard, error = %e, "lease renewal failed");
            }
        }
    }

    if w.status_version != Some(snapshot.version) || due(w.status_at, config.status_ttl / 3) {
        let status = ShardStatus {
            state: snapshot.state,
            guilds: guilds(slot.shard).unwrap_or(0),
            pod: config.pod.clone(),
            reason: snapshot.reason.clone(),
            updated_at_ms: unix_ms(),
            layout_revision: board.layout_revision(),
        };
        match records
            .write_status(slot.shard, &status, config.status_ttl)
            .await
        {
            Ok(()) => {
                w.status_version = Some(snapshot.version);
                w.status_at = Some(now);
            }
            Err(e) => {
                errors("status");
                debug!(shard_id = slot.shard, error = %e, "status write failed");
            }
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
