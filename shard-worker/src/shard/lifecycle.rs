//! A shard's task from start to end: take the lease (and the saved session with it), run a
//! session, and after it ended take the lease again, wait for a fatal marker to go, or stop.

use std::sync::Arc;

use tokio::sync::watch;
use tracing::{info, warn};

use super::config::Shared;
use super::custody::{marker_cleared, take_lease};
use super::runner::{Runner, SessionEnd};
use crate::gateway::session::{Machine, Resumable};
use crate::handler::Handler;
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
        let saved = match &shared.records {
            Some(records) => {
                match Box::pin(take_lease(&shared, &slot, records, &owner, &mut shutdown)).await {
                    Some(saved) => newest(saved, held.take()),
                    None => {
                        shared.board.set_state(shard, ShardState::Stopped, None);
                        return Exit::Stopped;
                    }
                }
            }
            None => None,
        };
        if let Some((_, seq)) = &saved {
            slot.set_handled_seq(*seq);
            info!(shard_id = shard, seq, "resuming the saved session");
        }
        let seed = rand::random::<u64>();
        let machine = Machine::new(shared.config.session.clone(), saved, seed);
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
                if marker_cleared(&shared, shard, unwritten, stood_down, &mut shutdown).await {
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
