//! The shard's end of the command channel: the [`Order`]s callers queue, and the [`Inbox`] the
//! shard's task holds across its sessions, which decides which order may go now.
//!
//! One order at a time leaves the channel (the head); the rest wait in it, bounded (a caller
//! waits for room). The head goes when the session is live (READY or RESUMED) and the send
//! limit has room for an ordinary command ([`CommandLimiter::delay`]: heartbeats keep their
//! reserve). While the session is not live, the head waits until `live_wait` has passed since
//! it was queued or since the session stopped being live, whichever is later; then it is refused
//! ([`CommandError::NotLive`]) and never sent, and the next one is looked at the same way.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::error::CommandError;
use crate::gateway::members::Members;
use crate::gateway::ratelimit::CommandLimiter;

/// An op 8's answer, for the runner to deliver once its chunks came.
pub(crate) struct MemberOrder {
    pub nonce: String,
    pub guild_id: u64,
    pub answer: oneshot::Sender<Result<Members, CommandError>>,
    /// Keep each chunk's raw `d` in the answer ([`Members::chunk_data`]).
    pub keep_chunks: bool,
}

/// A command on its way to a shard.
pub(crate) struct Order {
    /// The payload, encoded and checked.
    pub payload: String,
    pub opcode: u8,
    pub queued: Instant,
    /// How long it may wait for a live session.
    pub live_wait: Duration,
    /// Told once the order was sent, or why it was not.
    pub sent: oneshot::Sender<Result<(), CommandError>>,
    /// Queued from the shard's own dispatch: nobody waits for `sent`, so a closed `sent` does
    /// not mean the caller gave up.
    pub detached: bool,
    /// op 8 sent by `request_guild_members`: where its answer goes.
    pub members: Option<MemberOrder>,
}

impl Order {
    /// Whether the caller still waits for it (a caller that timed out wants it not sent).
    fn wanted(&self) -> bool {
        self.detached || !self.sent.is_closed()
    }
}

/// What the inbox's head can do now.
pub(crate) enum Next {
    /// Send it now (the limiter has room; record the send).
    Send(Order),
    /// Look again at this instant (room in the limiter, or the head's `live_wait` ending).
    At(Instant),
    /// Refuse it ([`refuse`]): it waited `live_wait` for a live session.
    Refused(Order, CommandError),
    /// Nothing queued: wait for the channel.
    Idle,
}

/// What the channel carries: an order, boxed. tokio allocates a channel's first block of 32
/// slots when the channel is made, so every shard pays for 32 slots whether or not it is ever
/// sent a command: 32 pointers (256 bytes) instead of 32 orders (3.8 KiB).
pub(crate) type Queued = Box<Order>;

/// The command channel of one shard, as its task holds it across sessions.
pub struct Inbox {
    shard: u32,
    receiver: mpsc::Receiver<Queued>,
    head: Option<Order>,
    /// Every sender is gone: the channel is not polled any more.
    closed: bool,
    /// Since when the shard has had no live session (`None` while it has one).
    not_live_since: Option<Instant>,
}

impl Inbox {
    fn new(shard: u32, receiver: mpsc::Receiver<Queued>) -> Self {
        Self {
            shard,
            receiver,
            head: None,
            closed: false,
            not_live_since: Some(Instant::now()),
        }
    }

    /// Whether the head is taken and the channel should not be polled.
    pub(crate) fn holds_head(&self) -> bool {
        self.head.is_some() || self.closed
    }

    /// The session became live (`true`) or stopped being live, at `now`.
    pub(crate) fn set_live(&mut self, live: bool, now: Instant) {
        match (live, self.not_live_since) {
            (true, _) => self.not_live_since = None,
            (false, None) => self.not_live_since = Some(now),
            (false, Some(_)) => {}
        }
    }

    /// Waits for the next order (only while [`Inbox::holds_head`] is false).
    pub(crate) async fn receive(&mut self) {
        match self.receiver.recv().await {
            Some(order) => self.head = Some(*order),
            None => self.closed = true,
        }
    }

    /// What the head may do at `now`: go, wait, or be refused (its `live_wait` ran out). Orders
    /// whose caller gave up are dropped on the way.
    pub(crate) fn next(&mut self, now: Instant, limiter: &mut CommandLimiter) -> Next {
        loop {
            if self.head.is_none() {
                match self.receiver.try_recv() {
                    Ok(order) => self.head = Some(*order),
                    Err(mpsc::error::TryRecvError::Empty) => return Next::Idle,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        self.closed = true;
                        return Next::Idle;
                    }
                }
            }
            let Some(head) = self.head.take() else {
                return Next::Idle;
            };
            if !head.wanted() {
                continue;
            }
            match self.not_live_since {
                None => {
                    let wait = limiter.delay(now);
                    if wait.is_zero() {
                        return Next::Send(head);
                    }
                    self.head = Some(head);
                    return Next::At(now + wait);
                }
                Some(since) => {
                    let deadline = head.queued.max(since) + head.live_wait;
                    if now < deadline {
                        self.head = Some(head);
                        return Next::At(deadline);
                    }
                    let waited = now.saturating_duration_since(head.queued);
                    let shard = self.shard;
                    return Next::Refused(head, CommandError::NotLive { shard, waited });
                }
            }
        }
    }
}

/// Tells an order's caller (and an op 8's answer) why it was not sent.
pub(crate) fn refuse(order: Order, error: CommandError) {
    if let Some(members) = order.members {
        let _ = members.answer.send(Err(error.clone()));
    }
    let _ = order.sent.send(Err(error));
}

/// Every shard's inbox, until its task takes it.
#[derive(Default)]
pub struct Inboxes {
    inboxes: Mutex<BTreeMap<u32, Inbox>>,
}

impl std::fmt::Debug for Inboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inboxes").finish_non_exhaustive()
    }
}

impl Inboxes {
    /// Takes `shard`'s inbox (once: its task holds it for good).
    pub fn take(&self, shard: u32) -> Option<Inbox> {
        self.inboxes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&shard)
    }
}

/// The senders of shards `shards`, and their inboxes; `capacity` orders queue per shard.
pub(crate) fn channels(
    shards: RangeInclusive<u32>,
    capacity: usize,
) -> (BTreeMap<u32, mpsc::Sender<Queued>>, Inboxes) {
    let mut senders = BTreeMap::new();
    let mut inboxes = BTreeMap::new();
    for shard in shards {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        senders.insert(shard, sender);
        inboxes.insert(shard, Inbox::new(shard, receiver));
    }
    (
        senders,
        Inboxes {
            inboxes: Mutex::new(inboxes),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::ratelimit::{COMMANDS_PER_WINDOW, WINDOW};

    const LIVE_WAIT: Duration = Duration::from_secs(10);

    fn order(detached: bool) -> (Order, oneshot::Receiver<Result<(), CommandError>>) {
        let (sent, receiver) = oneshot::channel();
        let order = Order {
            payload: r#"{"op":3,"d":{}}"#.into(),
            opcode: 3,
            queued: Instant::now(),
            live_wait: LIVE_WAIT,
            sent,
            detached,
            members: None,
        };
        (order, receiver)
    }

    fn inbox() -> (mpsc::Sender<Queued>, Inbox) {
        let (mut senders, inboxes) = channels(0..=0, 8);
        let inbox = inboxes.take(0).expect("inbox");
        assert!(inboxes.take(0).is_none(), "taken once");
        (senders.remove(&0).expect("sender"), inbox)
    }

    #[tokio::test(start_paused = true)]
    async fn orders_go_when_live_within_the_send_limit() {
        let (sender, mut inbox) = inbox();
        let mut limiter = CommandLimiter::new(Duration::from_secs(41), WINDOW);
        assert!(matches!(
            inbox.next(Instant::now(), &mut limiter),
            Next::Idle
        ));
        inbox.set_live(true, Instant::now());
        let ordinary = COMMANDS_PER_WINDOW - limiter.reserve();
        let mut waiting = Vec::new();
        for _ in 0..ordinary + 1 {
            let (o, r) = order(false);
            waiting.push(r);
            sender.try_send(Box::new(o)).ok();
            // The channel holds 8: drain as we go, as the runner does.
            if let Next::Send(order) = inbox.next(Instant::now(), &mut limiter) {
                let _ = order.sent.send(Ok(()));
                limiter.record(Instant::now());
            }
        }
        // One more than the ordinary share: it waits for the window, heartbeats keep theirs.
        match inbox.next(Instant::now(), &mut limiter) {
            Next::At(at) => assert_eq!(at - Instant::now(), limiter.held()),
            _ => panic!("the last one waits"),
        }
        assert!(inbox.holds_head());
        assert_eq!(limiter.heartbeat_delay(Instant::now()), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn an_order_waits_for_a_live_session_then_is_refused() {
        let (sender, mut inbox) = inbox();
        let mut limiter = CommandLimiter::new(Duration::from_secs(41), WINDOW);
        let start = Instant::now();
        let (o, mut refused) = order(false);
        sender.try_send(Box::new(o)).ok();
        // Not live yet: it may wait LIVE_WAIT from when it was queued.
        assert!(matches!(inbox.next(start, &mut limiter), Next::At(at) if at == start + LIVE_WAIT));
        // Live before that: it goes.
        tokio::time::advance(Duration::from_secs(4)).await;
        inbox.set_live(true, Instant::now());
        assert!(matches!(
            inbox.next(Instant::now(), &mut limiter),
            Next::Send(_)
        ));
        // Not live again: a new order waits LIVE_WAIT from then, then is refused unsent.
        inbox.set_live(false, Instant::now());
        let lost = Instant::now();
        let (o, mut receiver) = order(false);
        sender.try_send(Box::new(o)).ok();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(
            matches!(inbox.next(Instant::now(), &mut limiter), Next::At(at) if at == lost + LIVE_WAIT)
        );
        tokio::time::advance(LIVE_WAIT).await;
        let Next::Refused(order, error) = inbox.next(Instant::now(), &mut limiter) else {
            panic!("refused");
        };
        assert_eq!(error.metric_label(), "not_live");
        refuse(order, error);
        assert!(matches!(
            inbox.next(Instant::now(), &mut limiter),
            Next::Idle
        ));
        assert!(matches!(
            receiver.try_recv(),
            Ok(Err(CommandError::NotLive { shard: 0, .. }))
        ));
        assert!(
            refused.try_recv().is_err(),
            "the first one was sent, not refused"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_orders_are_not_sent_unless_detached() {
        let (sender, mut inbox) = inbox();
        let mut limiter = CommandLimiter::new(Duration::from_secs(41), WINDOW);
        inbox.set_live(true, Instant::now());
        let (gave_up, receiver) = order(false);
        drop(receiver);
        let (detached, receiver) = order(true);
        drop(receiver);
        sender.try_send(Box::new(gave_up)).ok();
        sender.try_send(Box::new(detached)).ok();
        match inbox.next(Instant::now(), &mut limiter) {
            Next::Send(order) => assert!(order.detached),
            _ => panic!("the detached one goes"),
        }
        drop(sender);
        assert!(matches!(
            inbox.next(Instant::now(), &mut limiter),
            Next::Idle
        ));
        assert!(inbox.holds_head(), "closed: not polled any more");
    }
}
