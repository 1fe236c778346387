//! A shard's task from start to end: take the lease (and the saved session and the Identify
//! streak with it), run a session, and after it ended take the lease again, wait for a fatal
//! marker to go, or stop.

use std::sync::Arc;

use tokio::sync::watch;
use tracing::{info, warn};

use super::config::Shared;
use super::custody::{marker_cleared, recorded_identify_streak, take_lease};
use super::records::Records;
use super::runner::{Runner, SessionEnd};
use crate::gateway::session::{Machine, Resumable};
use crate::handler::Handler;
use crate::worker::board::Slot;
use shardset_contract::ShardState;

/// How a shard's task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Shut down; the session was saved for the next owner.
    Stopped,
    /// Closed for good (the gateway's close code; 0: stopped by the Identify-loop guard) and
    /// not retried while its marker (`Keys::fatal`) stayed.
    Fatal(u16),
}

/// What to resume after taking the lease again: the saved record, or the session this task
/// still holds in memory when that is newer: the record is missing (Redis restarted without its
/// data while the shard stood down) or older (a checkpoint behind what this task handled). A
/// record of another session, or of the same session moved on, is another owner's: it wins.
fn newest(
    saved: Option<(Resumable, u64)>,
    held: Option<(Resumable, u64)>,
) -> Option<(Resumable, u64)> {
    match (saved, held) {
        (None, held) => held,
        (Some(saved), Some(held))
            if saved.0.session_id == held.0.session_id && held.1 >= saved.1 =>
        {
            Some(held)
        }
        (saved, _) => saved,
    }
}

/// Waits for the shard's lease, then reads what comes with it: the saved session and the
/// Identify streak earlier processes left. `None`: shut down while waiting.
async fn take_custody<H: Handler>(
    shared: &Shared<H>,
    slot: &Slot,
    records: &Records,
    owner: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(Option<(Resumable, u64)>, u32)> {
    let saved = Box::pin(take_lease(shared, slot, records, owner, shutdown)).await?;
    let streak = recorded_identify_streak(records, slot.shard, shutdown).await?;
    Some((saved, streak))
}

/// Runs shard `shard` until `shutdown` turns true or the gateway closes it fatally.
pub async fn run<H: Handler>(
    shared: Arc<Shared<H>>,
    shard: u32,
    mut shutdown: watch::Receiver<bool>,
) -> Exit {
    let Some(slot) = shared.board.slot(shard).cloned() else {
        warn!(shard_id = shard, "shard is not on this worker's board");
        return Exit::Stopped;
    };
    // The session this task held when it lost its lease (self-fencing, or another owner).
    let mut held: Option<(Resumable, u64)> = None;
    // The shard's command channel, lent to each session (its queue outlives them).
    let mut inbox = shared.inboxes.take(shard);
    loop {
        let owner = format!("{}/{:08x}", shared.config.pod, rand::random::<u32>());
        let (saved, streak) = match &shared.records {
            Some(records) => {
                // Boxed (as the marker's wait below): Redis round trips' state, inline, would
                // sit in the shard's task for its whole life, beside the running session's.
                let taken =
                    Box::pin(take_custody(&shared, &slot, records, &owner, &mut shutdown)).await;
                let Some((saved, streak)) = taken else {
                    shared.board.set_state(shard, ShardState::Stopped, None);
                    return Exit::Stopped;
                };
                (newest(saved, held.take()), streak)
            }
            None => (None, 0),
        };
        if let Some((_, seq)) = &saved {
            slot.set_handled_seq(*seq);
            info!(shard_id = shard, seq, "resuming the saved session");
        }
        let seed = rand::random::<u64>();
        let machine =
            Machine::new(shared.config.session.clone(), saved, seed).with_identify_streak(streak);
        let mut runner = Runner::new(&shared, &slot, shard, machine, owner, inbox.take());
        let end = runner.run(&mut shutdown).await;
        inbox = runner.inbox.take();
        // No session is live from now until the next one is (READY or RESUMED): the session may
        // have ended while live (a lost lease), and the next runner must not send its commands
        // on a connection before its Resume or Identify. Their wait counts from here.
        if let Some(inbox) = inbox.as_mut() {
            inbox.set_live(false, tokio::time::Instant::now());
        }
        if matches!(end, SessionEnd::LeaseLost) {
            held = runner.machine.resumable().cloned().map(|r| {
                let handled = slot.handled_seq();
                (r, shared.settled_seq(shard, handled))
            });
        }
        drop(runner);
        match end {
            SessionEnd::Stopped => return Exit::Stopped,
            SessionEnd::Fatal {
                code,
                unwritten,
                stood_down,
            } => {
                if Box::pin(marker_cleared(
                    &shared,
                    shard,
                    unwritten,
                    stood_down,
                    &mut shutdown,
                ))
                .await
                {
                    info!(
                        shard_id = shard,
                        "the shard's fatal marker was deleted: trying again"
                    );
                    continue;
                }
                return Exit::Fatal(code);
            }
            SessionEnd::LeaseLost => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::default::DefaultHandler;

    /// The size of the future `f` returns, without calling it.
    fn future_size<F, Fut>(_: &F) -> usize
    where
        F: FnOnce(Arc<Shared<DefaultHandler>>, u32, watch::Receiver<bool>) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every shard's task is this future for its whole life: a rare await inlined into it (a
    /// connect's handshake, a Redis round trip) makes every idle shard carry that await's state
    /// (RSS per connected shard, `make bench`). This bound holds in test builds, whose futures
    /// are larger than release builds'.
    #[test]
    fn a_shard_task_stays_small() {
        let size = future_size(&run::<DefaultHandler>);
        assert!(size <= TASK_BOUND, "a shard's task future is {size} bytes");
    }
    /// 4,640 bytes in a test build with the rare awaits boxed and the close handshake's
    /// connection kept out of `close`'s future (`shard/connection.rs`), 5,352 with it held
    /// there, 13,784 with every rare await inline.
    const TASK_BOUND: usize = 5_000;

    #[test]
    fn the_newest_of_the_record_and_the_held_session_is_resumed() {
        let session = |id: &str, seq: u64| {
            Some((
                Resumable {
                    session_id: id.into(),
                    resume_gateway_url: "ws://r".into(),
                },
                seq,
            ))
        };
        assert_eq!(
            newest(None, session("a", 5)),
            session("a", 5),
            "record lost"
        );
        assert_eq!(newest(session("a", 3), session("a", 5)), session("a", 5));
        assert_eq!(
            newest(session("a", 9), session("a", 5)),
            session("a", 9),
            "moved on by another owner"
        );
        assert_eq!(
            newest(session("b", 1), session("a", 5)),
            session("b", 1),
            "another owner's session"
        );
        assert_eq!(newest(session("a", 3), None), session("a", 3));
        assert_eq!(newest(None, None), None);
    }
}
