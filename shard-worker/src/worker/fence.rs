//! Self-fencing's hard deadline (`docs/redis-protocol.md`, "Self-fencing"). A shard whose lease
//! was last confirmed longer ago than the lease TTL minus the fence margin (12 s of 15 s) must
//! close its gateway connection before the lease can expire and another pod take the shard:
//! whatever its task is doing. Its task may be anywhere: in a handler blocked on backpressure,
//! in a Redis call against a black-holed Redis, in the final save on SIGTERM. So the fence does
//! not wait for it: a watchdog on a thread of its own (it runs even if the runtime's threads are
//! all busy) looks at every shard every [`TICK`], and shuts an overdue shard's socket down from
//! outside ([`Board::lose_lease`]); the task, told by the lease-lost flag, ends the session when
//! it gets there and waits for the lease again (the session stays resumable).
//!
//! The bound: a socket is shut down at most TTL − margin + one tick after its lease was last
//! confirmed (12.1 s by default), before the 15 s lease expires.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::{error, warn};

use crate::worker::board::{Board, SlotState};

/// How often every shard is looked at.
pub const TICK: Duration = Duration::from_millis(100);

/// Whether a shard in `state` must give its session up at `now`: it holds a lease last confirmed
/// `fence_after` (lease TTL − fence margin) ago or longer.
pub fn overdue(state: &SlotState, fence_after: Duration, now: Instant) -> bool {
    state.lease_owner.is_some()
        && state
            .lease_confirmed
            .is_some_and(|confirmed| now.saturating_duration_since(confirmed) >= fence_after)
}

/// Fences every overdue shard of `board` now.
fn check(board: &Board, fence_after: Duration) {
    let now = Instant::now();
    for slot in board.slots() {
        if board.lose_lease(slot, "fenced", |s| overdue(s, fence_after, now)) {
            warn!(
                shard_id = slot.shard,
                "the lease could not be renewed in time (Redis unreachable?): closing its connection before another pod may take the shard"
            );
        }
    }
}

/// The running watchdog; dropping it stops it (within a tick).
#[derive(Debug)]
pub struct Fence {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::Thread>,
}

impl Drop for Fence {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = &self.thread {
            thread.unpark();
        }
    }
}

/// Starts fencing the shards of `board` whose lease is `fence_after` old. On a thread of its own;
/// if none can be started, on a task of the runtime (call it inside one).
pub fn spawn(board: Arc<Board>, fence_after: Duration) -> Fence {
    let stop = Arc::new(AtomicBool::new(false));
    let (thread_board, thread_stop) = (Arc::clone(&board), Arc::clone(&stop));
    let thread = std::thread::Builder::new()
        .name("shard-fence".into())
        .spawn(move || {
            while !thread_stop.load(Ordering::Acquire) {
                check(&thread_board, fence_after);
                std::thread::park_timeout(TICK);
            }
        });
    match thread {
        Ok(handle) => Fence {
            stop,
            thread: Some(handle.thread().clone()),
        },
        Err(e) => {
            error!(error = %e, "cannot start the fence thread; fencing on the runtime instead");
            let task_stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(TICK);
                while !task_stop.load(Ordering::Acquire) {
                    ticker.tick().await;
                    check(&board, fence_after);
                }
            });
            Fence { stop, thread: None }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardset_contract::ShardState;

    fn state(owner: bool, confirmed: Option<Instant>) -> SlotState {
        SlotState {
            state: ShardState::Ready,
            reason: None,
            session: None,
            lease_owner: owner.then(|| "pod/1".to_owned()),
            lease_confirmed: confirmed,
            finalized: false,
            pace: crate::handover::pace::Pace::new(),
            version: 0,
        }
    }

    #[test]
    fn a_lease_confirmed_too_long_ago_is_overdue() {
        let after = Duration::from_secs(12);
        let t0 = Instant::now();
        let held = state(true, Some(t0));
        assert!(!overdue(&held, after, t0 + Duration::from_millis(11_999)));
        assert!(overdue(&held, after, t0 + after));
        assert!(overdue(&held, after, t0 + Duration::from_secs(60)));
        // A clock read before the confirmation (another thread confirmed meanwhile): not due.
        assert!(!overdue(&state(true, Some(t0 + after)), after, t0));
        // No lease held (or none taken yet): nothing to fence.
        assert!(!overdue(&state(false, Some(t0)), after, t0 + after));
        assert!(!overdue(&state(true, None), after, t0 + after));
    }

    #[tokio::test]
    async fn an_overdue_shard_is_fenced_from_outside_its_task() {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Arc::new(crate::worker::metrics::Metrics::new(&mut registry));
        let board = Arc::new(Board::new(0, 1, metrics));
        let long_ago = Instant::now() - Duration::from_secs(13);
        for shard in 0..2 {
            let mut s = board.slot(shard).expect("slot").lock();
            s.lease_owner = Some(format!("pod/{shard}"));
            s.lease_confirmed = Some(if shard == 0 { long_ago } else { Instant::now() });
        }
        // Shard 0 holds a socket: a connected pair stands for its gateway connection.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut gateway, _) = listener.accept().expect("accept");
        board.slot(0).expect("slot").hold_socket(client);
        let fence = spawn(Arc::clone(&board), Duration::from_secs(12));
        let slot = Arc::clone(board.slot(0).expect("slot"));
        tokio::time::timeout(Duration::from_secs(5), slot.lease_lost.notified())
            .await
            .expect("shard 0 told within a few ticks");
        assert!(slot.lease_lost_flag.load(Ordering::Acquire));
        assert_eq!(slot.lock().lease_owner, None);
        // The gateway's side sees the connection end.
        let mut buf = [0u8; 1];
        let read = std::io::Read::read(&mut gateway, &mut buf).expect("read");
        assert_eq!(read, 0, "closed");
        // Shard 1's lease is fresh: kept.
        let other = board.slot(1).expect("slot");
        assert!(other.lock().lease_owner.is_some());
        assert!(!other.lease_lost_flag.load(Ordering::Acquire));
        drop(fence);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(r#"shardset_worker_lease_lost_total{shard="0",reason="fenced"} 1"#),
            "{text}"
        );
    }
}
