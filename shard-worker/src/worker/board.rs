//! The worker's shared view of its shards: each shard's state (for `/readyz`, metrics and the
//! Redis status record), its live session (for checkpoints), its lease (owner, when it was last
//! confirmed) and its gateway socket (so the lease's loss can close it from outside the shard's
//! task: [`Board::lose_lease`]) and its pace (whether it keeps up: [`crate::handover::pace`]).
//!
//! Shard loops write here and never wait on Redis; the [`crate::worker::bookkeeper`] copies the board to
//! Redis in the background, so a slow or absent Redis never stalls a gateway connection.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{Notify, watch};

use crate::handover::pace::Pace;
use crate::worker::metrics::{Metrics, ShardReasonLabels};
use shardset_contract::ShardState;

/// The live session of a shard, as checkpoints save it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    pub session_id: String,
    pub resume_gateway_url: String,
}

/// Mutable facts of one shard.
#[derive(Debug, Clone)]
pub struct SlotState {
    pub state: ShardState,
    pub reason: Option<String>,
    pub session: Option<LiveSession>,
    /// The lease owner while this pod holds the shard's lease.
    pub lease_owner: Option<String>,
    /// When the lease was last known to be ours: when the claim that took or renewed it was
    /// sent (a conservative start). The fence ([`crate::worker::fence`]) measures from here.
    pub lease_confirmed: Option<Instant>,
    /// Set once the shard saved its final record: checkpoints must not overwrite it.
    pub finalized: bool,
    /// Whether it keeps up, and its lapses (reported in its status record).
    pub pace: Pace,
    /// Bumped on every state change, so the bookkeeper writes changed statuses at once.
    pub version: u64,
}

/// One shard's slot on the board.
#[derive(Debug)]
pub struct Slot {
    pub shard: u32,
    state: Mutex<SlotState>,
    /// Sequence number of the last dispatch the handler finished.
    pub handled_seq: AtomicU64,
    /// When the dispatch now in the handler arrived, as µs since `epoch` plus one; 0 while the
    /// handler holds none (read from outside the shard's task, which waits on the handler).
    handling_since: AtomicU64,
    epoch: Instant,
    /// The pace's lateness (`Pace::late_ms` is set), readable without the lock: the shard's task
    /// tells the board about a dispatch in time only while this is set.
    late: AtomicBool,
    /// Serialises this shard's Redis writes (checkpoint, final save, lease renew and release),
    /// so that a background write can never land after the shard's last one.
    pub io: tokio::sync::Mutex<()>,
    /// Signalled when the lease was lost ([`Board::lose_lease`]).
    pub lease_lost: Notify,
    /// Set with `lease_lost`, cleared when the shard takes the lease again.
    pub lease_lost_flag: AtomicBool,
    /// A handle on the socket of the shard's open gateway connection (the same socket, another
    /// descriptor), registered by the shard's task for as long as the connection lives.
    socket: Mutex<Option<std::net::TcpStream>>,
}

impl Slot {
    fn new(shard: u32) -> Self {
        Self {
            shard,
            state: Mutex::new(SlotState {
                state: ShardState::Connecting,
                reason: None,
                session: None,
                lease_owner: None,
                lease_confirmed: None,
                finalized: false,
                pace: Pace::new(),
                version: 0,
            }),
            handled_seq: AtomicU64::new(0),
            handling_since: AtomicU64::new(0),
            epoch: Instant::now(),
            late: AtomicBool::new(false),
            io: tokio::sync::Mutex::new(()),
            lease_lost: Notify::new(),
            lease_lost_flag: AtomicBool::new(false),
            socket: Mutex::new(None),
        }
    }

    /// Holds `socket`, a handle on the shard's open gateway connection, until
    /// [`Slot::forget_socket`]: while held, losing the lease shuts the connection down.
    pub fn hold_socket(&self, socket: std::net::TcpStream) {
        *self.socket_lock() = Some(socket);
    }

    /// Lets the handle go (the connection is being dropped with it).
    pub fn forget_socket(&self) {
        self.socket_lock().take();
    }

    /// Shuts the shard's connection down (both ways: the gateway sees it end at once), if one is
    /// registered. The shard's task finds it closed whenever it next reads or writes.
    fn shut_socket(&self) {
        if let Some(socket) = self.socket_lock().take() {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }

    fn socket_lock(&self) -> MutexGuard<'_, Option<std::net::TcpStream>> {
        self.socket
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records that the lease of `owner` was confirmed by a claim sent at `sent`, if `owner`
    /// still holds it here.
    pub fn confirm_lease(&self, owner: &str, sent: Instant) {
        let mut s = self.lock();
        if s.lease_owner.as_deref() == Some(owner) {
            s.lease_confirmed = Some(sent);
        }
    }

    /// The slot's facts (a short critical section; never held across an await).
    pub fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn state(&self) -> ShardState {
        self.lock().state
    }

    pub fn handled_seq(&self) -> u64 {
        self.handled_seq.load(Ordering::Acquire)
    }

    pub fn set_handled_seq(&self, seq: u64) {
        self.handled_seq.store(seq, Ordering::Release);
    }

    /// A dispatch that arrived at `arrived` goes to the handler (until [`Slot::handler_done`]).
    pub fn handler_took(&self, arrived: Instant) {
        let since = arrived.saturating_duration_since(self.epoch).as_micros() as u64;
        self.handling_since.store(since + 1, Ordering::Release);
    }

    /// Whether the shard counts as handling late now.
    pub fn late(&self) -> bool {
        self.late.load(Ordering::Acquire)
    }

    /// The handler returned.
    pub fn handler_done(&self) {
        self.handling_since.store(0, Ordering::Release);
    }

    /// How long the dispatch now in the handler has been waiting since it arrived, if any.
    pub fn handler_busy(&self, now: Instant) -> Option<std::time::Duration> {
        let since = self.handling_since.load(Ordering::Acquire);
        (since > 0).then(|| {
            now.saturating_duration_since(self.epoch)
                .saturating_sub(std::time::Duration::from_micros(since - 1))
        })
    }
}

/// Every shard of the worker.
#[derive(Debug)]
pub struct Board {
    slots: BTreeMap<u32, Arc<Slot>>,
    metrics: Arc<Metrics>,
    /// The `LayoutRoles` revision the worker has applied (every shard's acknowledgement).
    layout_revision: AtomicU64,
    /// Wakes the bookkeeper for a write now rather than at its next tick.
    pub changed: Notify,
    /// Bumped when a shard's state or the layout's role changes: what answers commands back
    /// over the bus follows it ([`Board::watch_states`]).
    states: watch::Sender<u64>,
}

impl Board {
    /// A board for shards `first..=last`, all `Connecting`.
    pub fn new(first: u32, last: u32, metrics: Arc<Metrics>) -> Self {
        let slots = (first..=last)
            .map(|shard| {
                metrics.set_state(shard, None, ShardState::Connecting);
                (shard, Arc::new(Slot::new(shard)))
            })
            .collect();
        Self {
            slots,
            metrics,
            layout_revision: AtomicU64::new(0),
            changed: Notify::new(),
            states: watch::Sender::new(0),
        }
    }

    /// Changes whenever a shard's state or the layout's role may have changed (a shard became
    /// live or stopped being live, a new role was applied).
    pub fn watch_states(&self) -> watch::Receiver<u64> {
        self.states.subscribe()
    }

    fn states_changed(&self) {
        self.states
            .send_modify(|version| *version = version.wrapping_add(1));
    }

    /// The roles revision every shard acknowledges in its status record.
    pub fn layout_revision(&self) -> u64 {
        self.layout_revision.load(Ordering::Acquire)
    }

    /// Records that the worker applied roles `revision`, and has every shard's status record
    /// rewritten at once (that write is the acknowledgement the operator waits for).
    pub fn acknowledge_layout(&self, revision: u64) {
        self.layout_revision.store(revision, Ordering::Release);
        for slot in self.slots.values() {
            slot.lock().version += 1;
        }
        self.changed.notify_one();
        self.states_changed();
    }

    pub fn slot(&self, shard: u32) -> Option<&Arc<Slot>> {
        self.slots.get(&shard)
    }

    pub fn slots(&self) -> impl Iterator<Item = &Arc<Slot>> {
        self.slots.values()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Moves `shard` to `state` with an optional reason (metrics follow).
    pub fn set_state(&self, shard: u32, state: ShardState, reason: Option<String>) {
        let Some(slot) = self.slots.get(&shard) else {
            return;
        };
        let old = {
            let mut s = slot.lock();
            if s.state == state && s.reason == reason {
                return;
            }
            let old = s.state;
            s.pace.set_live(state == ShardState::Ready);
            s.state = state;
            s.reason = reason;
            s.version += 1;
            old
        };
        if old != state {
            self.metrics.set_state(shard, Some(old), state);
            self.states_changed();
        }
        self.changed.notify_one();
    }

    /// A dispatch of `slot` returned from the handler `lag_ms` after it arrived (or was
    /// created); the status record is rewritten at once when the shard fell behind or caught up.
    pub fn dispatch_handled(&self, slot: &Slot, lag_ms: u64, bound_ms: u64) {
        self.update_pace(slot, |pace| pace.handled(lag_ms, bound_ms));
    }

    /// Looks at `slot`'s handler from outside (the bookkeeper's tick): late once a dispatch has
    /// waited in it for the bound; in time again when `idle` (nothing handled or in the handler
    /// since the last look: nothing is waiting).
    pub fn check_pace(&self, slot: &Slot, bound_ms: u64, idle: bool, now: Instant) {
        if let Some(busy) = slot.handler_busy(now) {
            let busy_ms = busy.as_millis() as u64;
            self.update_pace(slot, |pace| pace.busy(busy_ms, bound_ms));
        } else if idle {
            self.update_pace(slot, Pace::idle);
        }
    }

    fn update_pace(&self, slot: &Slot, change: impl FnOnce(&mut Pace) -> bool) {
        let changed = {
            let mut s = slot.lock();
            let changed = change(&mut s.pace);
            if changed {
                s.version += 1;
            }
            slot.late
                .store(s.pace.late_ms().is_some(), Ordering::Release);
            changed
        };
        if changed {
            self.changed.notify_one();
        }
    }

    /// The shard of `slot` no longer holds its lease, if `lost` says so of its facts (checked and
    /// changed under one lock): it must give its session up at once. Its socket is shut down
    /// here, whatever its task is doing (a handler blocked on backpressure, a Redis call), and
    /// the task is told (`lease_lost`). `reason` (`fenced`, `taken`) is counted. True when the
    /// lease was given up now.
    pub fn lose_lease(
        &self,
        slot: &Slot,
        reason: &'static str,
        lost: impl FnOnce(&SlotState) -> bool,
    ) -> bool {
        {
            let mut s = slot.lock();
            if s.lease_owner.is_none() || !lost(&s) {
                return false;
            }
            s.lease_owner = None;
            s.lease_confirmed = None;
        }
        // The flag first: a task that finds its socket dead then knows why, and does not
        // reconnect without the lease.
        slot.lease_lost_flag.store(true, Ordering::Release);
        slot.shut_socket();
        self.metrics
            .lease_lost
            .get_or_create(&ShardReasonLabels {
                shard: slot.shard,
                reason,
            })
            .inc();
        slot.lease_lost.notify_one();
        true
    }

    /// True when every shard is READY or RESUMED (`/readyz`).
    pub fn all_ready(&self) -> bool {
        !self.slots.is_empty() && self.slots.values().all(|s| s.state() == ShardState::Ready)
    }

    /// `(shard, state, reason)` of every shard, for `/readyz` bodies and logs.
    pub fn summary(&self) -> Vec<(u32, ShardState, Option<String>)> {
        self.slots
            .values()
            .map(|slot| {
                let s = slot.lock();
                (slot.shard, s.state, s.reason.clone())
            })
            .collect()
    }
}
