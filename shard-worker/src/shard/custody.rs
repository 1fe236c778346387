//! A shard's custody in Redis, around its sessions rather than in them (`docs/redis-protocol.md`,
//! "Custody between pods"): taking its lease (and the saved session that comes with it), the
//! final save and the release, its fatal marker (a shard closed for good is not identified again,
//! by any pod), what is saved when its task dies, and which resume URLs it trusts with the token.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::config::Shared;
use super::records::{Lease, Records, session_record_ttl};
use crate::gateway::session::Resumable;
use crate::gateway::trust;
use crate::handler::Handler;
use crate::identify::queue::jitter;
use crate::worker::board::Slot;
use crate::worker::bookkeeper::unix_ms;
use crate::worker::metrics::SourceLabels;
use shardset_contract::{FATAL_MARKER_TTL_MS, FatalMarker, SessionRecord, ShardState};

/// How often a shard closed for good looks whether its marker is still there.
const FATAL_MARKER_POLL: Duration = Duration::from_secs(5);

/// The shard's fatal marker, if a pod saw it closed for good (checked before every Identify).
/// Redis errors read as "none": the gate, which needs Redis too, still decides.
pub(super) async fn fatal_marker(records: Option<&Records>, shard: u32) -> Option<FatalMarker> {
    let records = records?;
    match tokio::time::timeout(Duration::from_secs(2), records.fatal(shard)).await {
        Ok(Ok(marker)) => marker,
        Ok(Err(e)) => {
            debug!(shard_id = shard, error = %e, "cannot read the fatal marker");
            None
        }
        Err(_) => None,
    }
}

/// After shard `shard`'s task died (its handler panicked): saves the session it held (up to the
/// last dispatch the handler settled, so the one that panicked is replayed on resume), gives the
/// lease up and reports the shard Fatal with `reason`. The connection went with the task
/// (dropped, so the session stays resumable).
pub async fn abandon<H: Handler>(shared: &Shared<H>, shard: u32, reason: String) {
    let Some(slot) = shared.board.slot(shard) else {
        return;
    };
    shared
        .board
        .set_state(shard, ShardState::Fatal, Some(reason));
    let Some(records) = &shared.records else {
        return;
    };
    let _io = slot.io.lock().await;
    let (session, owner) = {
        let mut s = slot.lock();
        s.finalized = true;
        (s.session.clone(), s.lease_owner.take())
    };
    let Some(owner) = owner else {
        return;
    };
    if let Some(session) = session {
        let session = (session.session_id, session.resume_gateway_url);
        save_for_next_owner(shared, records, slot, &owner, session).await;
    }
    release_lease(records, shard, &owner).await;
}

/// The final save of `slot`'s session `(session_id, resume_gateway_url)` for the next owner, up
/// to the last dispatch the handler settled, if `owner` still holds the lease. The caller holds
/// the slot's I/O lock and marked it final, so no checkpoint can land after it.
pub(super) async fn save_for_next_owner<H: Handler>(
    shared: &Shared<H>,
    records: &Records,
    slot: &Slot,
    owner: &str,
    (session_id, resume_gateway_url): (String, String),
) {
    let shard = slot.shard;
    let record = SessionRecord {
        session_id,
        seq: shared.settled_seq(shard, slot.handled_seq()),
        resume_gateway_url,
        saved_at_ms: unix_ms(),
    };
    let ttl = session_record_ttl(shared.config.lease_ttl, shared.config.resume_window);
    match records.save_session(shard, owner, &record, ttl).await {
        Ok(true) => info!(
            shard_id = shard,
            seq = record.seq,
            "session saved for the next owner"
        ),
        Ok(false) => warn!(
            shard_id = shard,
            "another pod holds the shard's lease: its record stands, this session is not saved"
        ),
        Err(e) => {
            warn!(shard_id = shard, error = %e, "cannot save the session; the next owner resumes from the last checkpoint")
        }
    }
}

/// Gives `shard`'s lease up if `owner` still holds it; a failure leaves it to expire.
pub(super) async fn release_lease(records: &Records, shard: u32, owner: &str) {
    if let Err(e) = records.release_lease(shard, owner).await {
        debug!(shard_id = shard, error = %e, "cannot release the lease; it expires on its own");
    }
}

/// After a shard was closed for good: writes its marker (`Keys::fatal`) if the close could not,
/// then, if `watch` (it stood down for a marker without trying), waits while the marker exists.
/// True when the marker is gone (deleted by the operator or by hand, or expired after the budget
/// period): the shard may try once more. False on shutdown; without `watch` or Redis records it
/// waits for the shutdown (the shard stays down in this process).
pub(super) async fn marker_cleared<H: Handler>(
    shared: &Shared<H>,
    shard: u32,
    mut unwritten: Option<FatalMarker>,
    watch: bool,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let Some(records) = &shared.records else {
        let _ = shutdown.wait_for(|s| *s).await;
        return false;
    };
    if !watch && unwritten.is_none() {
        let _ = shutdown.wait_for(|s| *s).await;
        return false;
    }
    let ttl = Duration::from_millis(FATAL_MARKER_TTL_MS);
    loop {
        if let Some(marker) = &unwritten {
            match records.mark_fatal(shard, marker, ttl).await {
                Ok(()) if !watch => {
                    let _ = shutdown.wait_for(|s| *s).await;
                    return false;
                }
                Ok(()) => unwritten = None,
                Err(e) => debug!(shard_id = shard, error = %e, "cannot write the fatal marker yet"),
            }
        } else {
            match records.fatal(shard).await {
                Ok(Some(_)) => {}
                Ok(None) => return true,
                Err(e) => debug!(shard_id = shard, error = %e, "cannot read the fatal marker"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(FATAL_MARKER_POLL + jitter(Duration::from_secs(1))) => {}
            _ = shutdown.wait_for(|s| *s) => return false,
        }
    }
}

/// Whether `shard` may send its token in a Resume to `url` (`gateway::trust`); one from
/// `source` (`record`, `ready`) that may not is logged without its query and counted.
pub(super) fn resume_url_trusted<H: Handler>(
    shared: &Shared<H>,
    shard: u32,
    url: &str,
    source: &'static str,
) -> bool {
    let Err(e) = shared.config.resume_trust.check(url) else {
        return true;
    };
    warn!(
        shard_id = shard,
        source,
        url = %trust::redacted(url),
        reason = e.metric_label(),
        "resume URL not trusted with the token ({e}): not resuming there"
    );
    shared
        .board
        .metrics()
        .untrusted_resume_urls
        .get_or_create(&SourceLabels { source })
        .inc();
    false
}

/// Waits for the shard's lease, then reads its saved session. `None`: shut down while waiting.
/// A session whose resume URL is not trusted counts as absent: the shard identifies.
pub(super) async fn take_lease<H: Handler>(
    shared: &Shared<H>,
    slot: &Slot,
    records: &Records,
    owner: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Option<(Resumable, u64)>> {
    let shard = slot.shard;
    loop {
        if *shutdown.borrow() {
            return None;
        }
        let pause = {
            let _io = slot.io.lock().await;
            let record_ttl =
                session_record_ttl(shared.config.lease_ttl, shared.config.resume_window);
            let sent = std::time::Instant::now();
            match records
                .claim_lease(shard, owner, shared.config.lease_ttl, record_ttl)
                .await
            {
                Ok(Lease::Held) => {
                    let mut s = slot.lock();
                    s.lease_owner = Some(owner.to_owned());
                    s.lease_confirmed = Some(sent);
                    s.finalized = false;
                    slot.lease_lost_flag.store(false, Ordering::Release);
                    None
                }
                Ok(Lease::Taken { pttl }) => {
                    shared.board.set_state(
                        shard,
                        ShardState::WaitingForLease,
                        Some("held by another pod".into()),
                    );
                    Some(pttl + jitter(Duration::from_millis(50)))
                }
                Err(e) => {
                    debug!(shard_id = shard, error = %e, "cannot claim the lease");
                    shared.board.set_state(
                        shard,
                        ShardState::WaitingForLease,
                        Some("redis unreachable".into()),
                    );
                    Some(Duration::from_millis(500) + jitter(Duration::from_millis(250)))
                }
            }
        };
        match pause {
            None => break,
            Some(pause) => {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.wait_for(|s| *s) => return None,
                }
            }
        }
    }
    // The lease is ours: the previous owner saved before releasing, so the record is final.
    loop {
        match records.load_session(shard).await {
            Ok(record) => {
                let record = record
                    .filter(|r| resume_url_trusted(shared, shard, &r.resume_gateway_url, "record"));
                return Some(record.map(|r| {
                    (
                        Resumable {
                            session_id: r.session_id,
                            resume_gateway_url: r.resume_gateway_url,
                        },
                        r.seq,
                    )
                }));
            }
            Err(e) => {
                debug!(shard_id = shard, error = %e, "cannot read the saved session");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.wait_for(|s| *s) => return None,
                }
            }
        }
    }
}
