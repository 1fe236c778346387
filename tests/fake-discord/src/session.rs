//! A gateway session: its shard, its own sequence numbers, and the buffer of dispatches that is
//! both the queue to the connection and the replay log for Resume.
//!
//! The world pushes events into every session that should receive them, connected or not; the
//! connection writer drains what follows its cursor. A disconnected but resumable session keeps
//! accumulating, so a Resume with the last `seq` the client saw replays exactly what it missed
//! (gateway.mdx "Resuming"). The buffer keeps the newest `replay_buffer` entries.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::control::SessionEnd;
use crate::rules::Micros;

/// An event the world created once and shares with every session that receives it.
#[derive(Debug)]
pub struct Event {
    /// The dispatch name (`t`); static for the fake's own events, so creating one allocates
    /// nothing but its body.
    pub name: Cow<'static, str>,
    /// The serialized `d`.
    pub d: Bytes,
}

/// What a buffered dispatch carries.
#[derive(Debug, Clone)]
pub enum Payload {
    /// A shared event.
    Event(Arc<Event>),
    /// GUILD_CREATE of guild `index`, rendered when written so that thousands of queued guilds
    /// cost a few bytes each until then.
    GuildCreate(u32),
    /// READY's `d` (never replayed).
    Ready(Bytes),
    /// RESUMED (never replayed).
    Resumed,
}

/// One dispatch queued for a session.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub payload: Payload,
}

impl Entry {
    /// READY and RESUMED belong to the connection they were sent on; a Resume never replays them.
    pub fn replayable(&self) -> bool {
        !matches!(self.payload, Payload::Ready(_) | Payload::Resumed)
    }
}

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// A connection (by number) is attached.
    Attached(u64),
    /// No connection since this time; resumable within the resume window.
    Detached(Micros),
    /// Ended (1000/1001 close, op 9 false, expired, token reset): never resumable again.
    Ended,
}

/// The mutable part of a session.
#[derive(Debug)]
pub struct SessionState {
    /// The last sequence number handed out.
    pub seq: u64,
    pub buffer: VecDeque<Entry>,
    pub link: Link,
    /// The last sequence number written to a connection.
    pub sent_seq: u64,
    /// The highest sequence number ever written to any connection (a Resume moves `sent_seq`
    /// back to the client's seq; this never goes back).
    pub written_seq: u64,
    pub ready_sent: bool,
    pub resumes: u32,
    /// Why it ended, once `link` is `Ended`.
    pub end: Option<SessionEnd>,
}

impl SessionState {
    /// Sequence number of the oldest buffered entry (or the next one, when empty).
    pub fn first_buffered(&self) -> u64 {
        self.buffer.front().map_or(self.seq + 1, |e| e.seq)
    }
}

/// A session. Immutable facts are plain fields; the rest sits behind one short-held lock.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub shard: u32,
    pub num_shards: u32,
    pub bucket: u32,
    pub intents: u64,
    pub large_threshold: u32,
    /// Guilds routed to this session.
    pub guilds: u32,
    pub created_at_ms: u64,
    capacity: usize,
    state: Mutex<SessionState>,
    /// Wakes the attached connection's writer when entries arrive.
    pub wake: Notify,
}

/// The writer fell further behind than the buffer holds: dispatches were lost for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overrun {
    pub wanted: u64,
    pub oldest: u64,
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        shard: [u32; 2],
        bucket: u32,
        intents: u64,
        large_threshold: u32,
        guilds: u32,
        created_at_ms: u64,
        capacity: usize,
        connection: u64,
    ) -> Self {
        Self {
            id,
            shard: shard[0],
            num_shards: shard[1],
            bucket,
            intents,
            large_threshold,
            guilds,
            created_at_ms,
            capacity: capacity.max(1),
            state: Mutex::new(SessionState {
                seq: 0,
                buffer: VecDeque::new(),
                link: Link::Attached(connection),
                sent_seq: 0,
                written_seq: 0,
                ready_sent: false,
                resumes: 0,
                end: None,
            }),
            wake: Notify::new(),
        }
    }

    /// The session's state. The lock is never held across an await.
    pub fn state(&self) -> MutexGuard<'_, SessionState> {
        // A poisoned lock means a panic while holding it; the state is still consistent
        // (every mutation is a single push or field write), so keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a dispatch unless the session has ended; returns its sequence number.
    pub fn push(&self, payload: Payload) -> Option<u64> {
        let seq = {
            let mut state = self.state();
            if state.link == Link::Ended {
                return None;
            }
            Self::push_locked(&mut state, payload, self.capacity)
        };
        self.wake.notify_one();
        Some(seq)
    }

    /// Queues several dispatches in order under one lock.
    pub fn push_all(&self, payloads: impl IntoIterator<Item = Payload>) {
        {
            let mut state = self.state();
            if state.link == Link::Ended {
                return;
            }
            for payload in payloads {
                Self::push_locked(&mut state, payload, self.capacity);
            }
        }
        self.wake.notify_one();
    }

    /// Queues a dispatch with the lock already held (to order it against other changes).
    pub fn push_locked(state: &mut SessionState, payload: Payload, capacity: usize) -> u64 {
        state.seq += 1;
        let seq = state.seq;
        state.buffer.push_back(Entry { seq, payload });
        while state.buffer.len() > capacity {
            state.buffer.pop_front();
        }
        seq
    }

    /// The buffer capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Copies up to `max` entries after `cursor` into `out`, skipping READY/RESUMED entries
    /// older than `fresh_from` (they belonged to an earlier connection).
    pub fn take_after(
        &self,
        cursor: u64,
        fresh_from: u64,
        max: usize,
        out: &mut Vec<Entry>,
    ) -> Result<(), Overrun> {
        let state = self.state();
        let oldest = state.first_buffered();
        if cursor + 1 < oldest {
            return Err(Overrun {
                wanted: cursor + 1,
                oldest,
            });
        }
        let skip = (cursor + 1 - oldest) as usize;
        out.extend(
            state
                .buffer
                .iter()
                .skip(skip)
                .filter(|e| e.seq >= fresh_from || e.replayable())
                .take(max)
                .cloned(),
        );
        Ok(())
    }

    /// Records what the connection has written (for reports).
    pub fn mark_sent(&self, seq: u64, ready: bool) {
        let mut state = self.state();
        state.sent_seq = state.sent_seq.max(seq);
        state.written_seq = state.written_seq.max(seq);
        state.ready_sent |= ready;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(capacity: usize) -> Session {
        Session::new("s".into(), [0, 1], 0, 0, 50, 0, 0, capacity, 1)
    }

    fn event() -> Payload {
        Payload::Event(Arc::new(Event {
            name: Cow::Borrowed("MESSAGE_CREATE"),
            d: Bytes::from_static(b"{}"),
        }))
    }

    fn seqs(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn sequence_numbers_count_from_one_and_drain_after_the_cursor() {
        let s = session(10);
        s.push(Payload::Ready(Bytes::from_static(b"{}")));
        s.push(event());
        s.push(event());
        let mut out = Vec::new();
        s.take_after(0, 0, 100, &mut out).expect("buffered");
        assert_eq!(seqs(&out), vec![1, 2, 3]);
        out.clear();
        s.take_after(2, 0, 100, &mut out).expect("buffered");
        assert_eq!(seqs(&out), vec![3]);
    }

    #[test]
    fn replays_skip_an_old_ready_and_resumed() {
        let s = session(10);
        s.push(Payload::Ready(Bytes::from_static(b"{}")));
        s.push(event());
        s.push(Payload::Resumed);
        s.push(event());
        let mut out = Vec::new();
        // A Resume from seq 0 at a point after seq 4: READY (1) and RESUMED (3) are not replayed.
        s.take_after(0, 5, 100, &mut out).expect("buffered");
        assert_eq!(seqs(&out), vec![2, 4]);
    }

    #[test]
    fn the_buffer_keeps_the_newest_entries_and_reports_an_overrun() {
        let s = session(3);
        for _ in 0..5 {
            s.push(event());
        }
        let mut out = Vec::new();
        assert_eq!(
            s.take_after(1, 0, 100, &mut out),
            Err(Overrun {
                wanted: 2,
                oldest: 3
            })
        );
        s.take_after(2, 0, 100, &mut out).expect("buffered");
        assert_eq!(seqs(&out), vec![3, 4, 5]);
    }

    #[test]
    fn an_ended_session_takes_nothing_more() {
        let s = session(3);
        s.state().link = Link::Ended;
        assert_eq!(s.push(event()), None);
        assert_eq!(s.state().seq, 0);
    }
}
