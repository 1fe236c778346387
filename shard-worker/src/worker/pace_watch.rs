//! Looks at every shard's handler from outside, a few times a second, for what the shard's own
//! task cannot see while it waits on its handler ([`crate::handover::pace`]): a dispatch that
//! has waited in the handler for the lag bound makes the shard late (before it returns), and a
//! shard that handled nothing and held nothing in its handler for a whole [`TICK`] is in time
//! again (nothing is waiting: a shard reads its next frame as soon as the handler returns).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::worker::board::{Board, Slot};

/// How often every shard is looked at.
pub const TICK: Duration = Duration::from_millis(250);

/// What the last looks saw of one shard: its handled seq and since when nothing moved.
struct Quiet {
    seq: u64,
    since: Instant,
}

/// Runs until `stop` turns true; `bound_ms` is the lag bound (`W / 2`).
pub async fn run(board: Arc<Board>, bound_ms: u64, mut stop: watch::Receiver<bool>) {
    let mut quiet: HashMap<u32, Quiet> = HashMap::new();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = Instant::now();
        for slot in board.slots() {
            let idle = idle(slot, quiet.entry(slot.shard), now);
            board.check_pace(slot, bound_ms, idle, now);
        }
    }
}

/// Whether `slot` neither handled anything nor held a dispatch in its handler for a [`TICK`].
fn idle(
    slot: &Slot,
    entry: std::collections::hash_map::Entry<'_, u32, Quiet>,
    now: Instant,
) -> bool {
    let seq = slot.handled_seq();
    let moved = |q: &Quiet| q.seq != seq || slot.handler_busy(now).is_some();
    let q = entry.or_insert(Quiet { seq, since: now });
    if moved(q) {
        *q = Quiet { seq, since: now };
    }
    now.saturating_duration_since(q.since) >= TICK
}
