//! How a session ends, with the shard's custody duties (`docs/redis-protocol.md`, "Custody
//! between pods"): on shutdown the session is saved for the next owner (once the handler settled
//! what it handled), closed with a resumable code and the lease released, in that order; a
//! retired layout ends its sessions (1000) and leaves no records; a shard closed for good is
//! marked (`Keys::fatal`); a shard held back by such a marker stands down without identifying.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::custody::{release_lease, save_for_next_owner};
use super::runner::{Runner, SessionEnd};
use crate::gateway::close_code;
use crate::gateway::session::Phase;
use crate::handler::Handler;
use crate::worker::bookkeeper::unix_ms;
use shardset_contract::{FATAL_MARKER_TTL_MS, FatalMarker, ShardState};

/// The longest a stopping shard waits for its handler to settle what it handled.
const SETTLE_WAIT: Duration = Duration::from_secs(5);

impl<'a, H: Handler> Runner<'a, H> {
    /// The shard was closed for good before (its marker exists): no Identify. Ends the
    /// connection (no session was started on it) and gives the lease up.
    pub(super) async fn stand_down(&mut self, marker: FatalMarker) -> SessionEnd {
        self.drop_permit().await;
        warn!(
            shard_id = self.shard,
            reason = %marker.reason,
            "this shard was closed for good (fatal marker in Redis): not identifying; delete the marker to try again"
        );
        self.close(close_code::SESSION_ENDING_CLOSE).await;
        self.board()
            .set_state(self.shard, ShardState::Fatal, Some(marker.reason.clone()));
        if let Some(records) = &self.shared.records {
            let _io = self.slot.io.lock().await;
            self.slot.lock().finalized = true;
            release_lease(records, self.shard, &self.owner).await;
            self.slot.lock().lease_owner = None;
        }
        SessionEnd::Fatal {
            code: marker.code.unwrap_or(0),
            unwritten: None,
            stood_down: true,
        }
    }

    /// Before the final save: gives the handler and the bus a moment (at most [`SETTLE_WAIT`])
    /// to settle what they took (e.g. the forward queue draining, the last acknowledgements), so
    /// the next owner resumes right after the last dispatch rather than replaying the queued
    /// ones: exactly once after a SIGTERM while they keep up, at least once when they do not.
    fn await_settled(&self) -> impl Future<Output = ()> + Send + 'a {
        let (shared, slot, shard) = (self.shared, self.slot, self.shard);
        async move {
            let handled = slot.handled_seq();
            let deadline = Instant::now() + SETTLE_WAIT;
            while shared.settled_seq(shard, handled) < handled && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Shutdown or a fatal close: the custody duties, then the end of the task.
    pub(super) async fn stop(&mut self, code: Option<u16>) -> SessionEnd {
        self.drop_permit().await;
        // Closed for good (a fatal code, or the Identify-loop guard): marked in Redis so that no
        // pod identifies the shard again for a budget period, however often it restarts.
        let fatal = match self.machine.phase() {
            Phase::Fatal(code) => Some(FatalMarker {
                code: Some(code),
                reason: close_code::fatal_reason(code).to_owned(),
                pod: self.shared.config.pod.clone(),
                at_ms: unix_ms(),
                intents: Some(self.shared.config.intents),
            }),
            Phase::IdentifyLoop => Some(FatalMarker {
                code: None,
                reason: self.identify_loop_reason(),
                pod: self.shared.config.pod.clone(),
                at_ms: unix_ms(),
                intents: Some(self.shared.config.intents),
            }),
            _ => None,
        };
        let end = |fatal: Option<FatalMarker>, unwritten: bool| match fatal {
            None => SessionEnd::Stopped,
            Some(marker) => SessionEnd::Fatal {
                code: marker.code.unwrap_or(0),
                unwritten: unwritten.then_some(marker),
                stood_down: false,
            },
        };
        let Some(records) = &self.shared.records else {
            if let Some(code) = code {
                self.close(code).await;
            }
            self.report_phase();
            return end(fatal, false);
        };
        if fatal.is_none() && !self.shared.acting.retired() {
            self.await_settled().await;
        }
        let io = self.slot.io.lock().await;
        self.slot.lock().finalized = true;
        let mut fatal_written = false;
        // A retired layout's sessions will never be resumed: end them (1000) and leave no
        // records behind (docs/resharding.md, "Roles").
        let retired = fatal.is_none() && self.shared.acting.retired();
        let code = match code {
            Some(close_code::RESUMABLE_CLOSE) if retired => Some(close_code::SESSION_ENDING_CLOSE),
            other => other,
        };
        if retired {
            if let Err(e) = records.delete_session(self.shard).await {
                debug!(shard_id = self.shard, error = %e, "cannot delete the retired session");
            }
            if let Err(e) = records.delete_status(self.shard).await {
                debug!(shard_id = self.shard, error = %e, "cannot delete the retired status");
            }
            info!(
                shard_id = self.shard,
                "retired layout: ending the session (close 1000)"
            );
        } else if let Some(marker) = &fatal {
            let ttl = Duration::from_millis(FATAL_MARKER_TTL_MS);
            match records.mark_fatal(self.shard, marker, ttl).await {
                Ok(()) => {
                    warn!(shard_id = self.shard, reason = %marker.reason, "closed for good: marked in Redis; no pod identifies this shard again until the marker is deleted or expires");
                    fatal_written = true;
                }
                Err(e) => {
                    warn!(shard_id = self.shard, error = %e, "cannot write the fatal marker yet; retrying")
                }
            }
            if let Err(e) = records.delete_session(self.shard).await {
                debug!(shard_id = self.shard, error = %e, "cannot delete the dead session");
            }
        } else if let Some(r) = self.machine.resumable()
            && code != Some(close_code::SESSION_ENDING_CLOSE)
        {
            // Connected (closing with 4000 next) or between connections (a backoff): either
            // way the session is still resumable, and this record is newer than any checkpoint.
            let session = (r.session_id.clone(), r.resume_gateway_url.clone());
            save_for_next_owner(self.shared, records, self.slot, &self.owner, session).await;
        }
        if let Some(code) = code {
            self.close(code).await;
        }
        release_lease(records, self.shard, &self.owner).await;
        self.slot.lock().lease_owner = None;
        drop(io);
        self.report_phase();
        end(fatal, !fatal_written)
    }
}
