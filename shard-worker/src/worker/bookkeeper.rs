//! Copies the board to Redis in the background: session checkpoints (every few seconds, so a
//! crash can still resume from the last one), shard status records for the operator, and lease
//! renewals. Redis errors are counted and retried on the next tick; they never reach a gateway
//! connection. A renewal answered records when the lease was confirmed
//! ([`Slot::confirm_lease`]): a shard whose lease goes unconfirmed for the lease TTL minus
//! [`BookkeeperConfig::fence_margin`] is fenced by [`crate::worker::fence`], which does not wait
//! for this loop (each of its Redis calls may take seconds against an unreachable Redis). A
//! lease found another's (a renewal or a checkpoint refused) is given up at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::shard::records::{Lease, Records, session_record_ttl};
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
    /// A shard whose lease was last confirmed `lease_ttl − fence_margin` ago is fenced
    /// ([`crate::worker::fence`]).
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

/// Whether the pod's bus publisher can publish now (`None`: no bus), for the status records:
/// the operator's `BusAvailable` condition reads it.
pub type BusAccepting = Arc<dyn Fn() -> Option<bool> + Send + Sync>;

/// What the status record reports from outside the shard's own state.
#[derive(Clone)]
pub struct Reported {
    pub guilds: GuildCount,
    pub bus: BusAccepting,
}

#[derive(Default)]
struct Written {
    session: Option<(LiveSession, u64)>,
    checkpoint_at: Option<Instant>,
    status_version: Option<u64>,
    status_at: Option<Instant>,
    /// The bus state the last status record written said.
    status_bus: Option<bool>,
    lease_at: Option<Instant>,
    /// The owner whose lease `lease_at` is about.
    lease_owner: Option<String>,
}

/// Runs until `stop` turns true.
pub async fn run(
    board: Arc<Board>,
    records: Records,
    config: BookkeeperConfig,
    reported: Reported,
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
            let w = written.entry(slot.shard).or_default();
            track_owner(slot, w);
            tend(&board, slot, &records, &config, &reported, &settled, w).await;
        }
    }
}

/// Renews a lease at once when its owner changed (the shard took it moments ago).
fn track_owner(slot: &Slot, w: &mut Written) {
    let owner = slot.lock().lease_owner.clone();
    if owner != w.lease_owner {
        w.lease_owner = owner;
        w.lease_at = None;
    }
}

async fn tend(
    board: &Board,
    slot: &Slot,
    records: &Records,
    config: &BookkeeperConfig,
    reported: &Reported,
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
    let record_ttl = session_record_ttl(config.lease_ttl, config.resume_window);

    if let (Some(session), Some(owner), false) =
        (&snapshot.session, &snapshot.lease_owner, snapshot.finalized)
    {
        let seq = settled(slot.shard, slot.handled_seq());
        if checkpoint_due(
            w.session.as_ref(),
            (session, seq),
            w.checkpoint_at,
            now,
            config.checkpoint_every,
        ) {
            let record = SessionRecord {
                session_id: session.session_id.clone(),
                seq,
                resume_gateway_url: session.resume_gateway_url.clone(),
                saved_at_ms: unix_ms(),
            };
            match records
                .save_session(slot.shard, owner, &record, record_ttl)
                .await
            {
                Ok(true) => {
                    w.session = Some((session.clone(), seq));
                    w.checkpoint_at = Some(now);
                }
                Ok(false) => {
                    // Fenced by the lease: another pod took the shard, and the record is its own.
                    warn!(
                        shard_id = slot.shard,
                        "another pod took this shard's lease; checkpoint not written, giving the shard up"
                    );
                    give_up(board, slot, owner);
                    return;
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
        let sent = std::time::Instant::now();
        match records
            .claim_lease(slot.shard, owner, config.lease_ttl, record_ttl)
            .await
        {
            Ok(Lease::Held) => {
                w.lease_at = Some(now);
                // Renewed from the moment the request left (a conservative start).
                slot.confirm_lease(owner, sent);
            }
            Ok(Lease::Taken { .. }) => {
                warn!(
                    shard_id = slot.shard,
                    "another pod took this shard's lease; giving the shard up"
                );
                give_up(board, slot, owner);
            }
            Err(e) => {
                errors("lease");
                debug!(shard_id = slot.shard, error = %e, "lease renewal failed");
            }
        }
    }

    // The bus's state is not the shard's (no version of it changes): a flip is written at once
    // too, so the operator sees an outage within a tick.
    let bus_accepting = (reported.bus)();
    if w.status_version != Some(snapshot.version)
        || w.status_bus != bus_accepting
        || due(w.status_at, config.status_ttl / 3)
    {
        let status = ShardStatus {
            state: snapshot.state,
            guilds: (reported.guilds)(slot.shard).unwrap_or(0),
            pod: config.pod.clone(),
            reason: snapshot.reason.clone(),
            updated_at_ms: unix_ms(),
            layout_revision: board.layout_revision(),
            lapses: snapshot.pace.lapses(),
            behind_ms: snapshot.pace.late_ms(),
            bus_accepting,
        };
        match records
            .write_status(slot.shard, &status, config.status_ttl)
            .await
        {
            Ok(()) => {
                w.status_version = Some(snapshot.version);
                w.status_bus = bus_accepting;
                w.status_at = Some(now);
            }
            Err(e) => {
                errors("status");
                debug!(shard_id = slot.shard, error = %e, "status write failed");
            }
        }
    }
}

/// Whether to checkpoint `session` at `seq` now, given what was last written (`written`) and
/// when (`written_at`). The same session moved on waits for `every` since the last write. A
/// session not written yet goes at once: until its record exists, the record still names the
/// session before it (ended by Discord: op 9, 4007, 4009, or a Resume refused), so a crash would
/// leave the successor resuming a dead session, then identifying, and nobody could ever resume
/// the new one: everything written to it and not yet handled would be lost. So does a session
/// written at seq 0 once its seq moved: a Resume replays what followed the seq, never the READY
/// (gateway.mdx, "Resuming"), so until a record passes the READY a crash loses it.
fn checkpoint_due(
    written: Option<&(LiveSession, u64)>,
    (session, seq): (&LiveSession, u64),
    written_at: Option<Instant>,
    now: Instant,
    every: Duration,
) -> bool {
    match written {
        Some((written, written_seq)) if written == session => {
            *written_seq != seq
                && (*written_seq == 0 || written_at.is_none_or(|t| now.duration_since(t) >= every))
        }
        _ => true,
    }
}

/// The lease `owner` held is another's now: the shard gives its session up.
fn give_up(board: &Board, slot: &Slot, owner: &str) {
    board.lose_lease(slot, "taken", |s| s.lease_owner.as_deref() == Some(owner));
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> LiveSession {
        LiveSession {
            session_id: id.into(),
            resume_gateway_url: "wss://resume".into(),
        }
    }

    #[test]
    fn a_new_sessions_first_record_is_written_at_once() {
        let every = Duration::from_secs(2);
        let now = Instant::now();
        let just_now = Some(now - Duration::from_millis(300));
        let one = (session("one"), 480);
        // Session one was checkpointed 300 ms ago; op 9 (not resumable), an Identify, and
        // session two is live: its record cannot wait for the interval.
        assert!(checkpoint_due(
            Some(&one),
            (&session("two"), 0),
            just_now,
            now,
            every
        ));
        assert!(checkpoint_due(None, (&session("one"), 0), None, now, every));
        // Written at 0 (its READY still on the way to the endpoint): the first seq past it goes
        // at once too.
        let two = (session("two"), 0);
        let now_written = Some(now);
        assert!(checkpoint_due(
            Some(&two),
            (&session("two"), 1),
            now_written,
            now,
            every
        ));
    }

    #[test]
    fn the_same_session_is_checkpointed_once_per_interval_when_its_seq_moved() {
        let every = Duration::from_secs(2);
        let now = Instant::now();
        let one = (session("one"), 480);
        let recent = Some(now - Duration::from_millis(300));
        let old = Some(now - every);
        assert!(!checkpoint_due(
            Some(&one),
            (&session("one"), 490),
            recent,
            now,
            every
        ));
        assert!(checkpoint_due(
            Some(&one),
            (&session("one"), 490),
            old,
            now,
            every
        ));
        assert!(
            !checkpoint_due(Some(&one), (&session("one"), 480), old, now, every),
            "nothing moved"
        );
    }
}
