//! The seam between a shard and whatever decides when it may Identify: the one-method
//! [`IdentifyQueue`] trait (like twilight-gateway-queue's `Queue`), the [`Permit`] it hands out,
//! and the [`WaitReason`]s a waiting shard reports.

use std::future::Future;
use std::pin::Pin;

use tokio::time::Instant;

/// A boxed future, as the queue trait returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a shard is still waiting for its permit (reported in its status and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// Another shard of the bucket identified less than a window ago.
    Gate,
    /// A lower shard id of the same bucket is waiting and goes first.
    Line,
    /// The daily budget is at the reserve: waiting for Discord's reset.
    Budget,
    /// The budget is not known yet (being read from `GET /gateway/bot`).
    BudgetUnknown,
    /// Redis may have lost data (epoch marker missing, or of another server process): no gate
    /// is granted until a permit granted before can no longer be used (`connect_bound`).
    Epoch,
    /// Redis cannot be reached: no Identify without the gate.
    Redis,
    /// Gates were granted under another `max_concurrency` moments ago (a roll that changes it):
    /// two bucket maps must never be live at once.
    Concurrency,
    /// Discord refused the token (401) when the budget was read: no Identify can succeed, and
    /// nothing is asked again.
    TokenRefused,
}

impl WaitReason {
    /// A fixed snake_case label for metrics (`identify_waits_total{reason}`).
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::Gate => "gate",
            Self::Line => "line",
            Self::Budget => "budget_at_reserve",
            Self::BudgetUnknown => "budget_unknown",
            Self::Epoch => "redis_epoch_hold",
            Self::Redis => "redis_unreachable",
            Self::Concurrency => "other_max_concurrency",
            Self::TokenRefused => "token_refused",
        }
    }

    /// A fixed human-readable reason for the status record and `/readyz`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Gate => "gate",
            Self::Line => "line",
            Self::Budget => "budget at reserve",
            Self::BudgetUnknown => "budget unknown",
            Self::Epoch => "redis epoch hold",
            Self::Redis => "redis unreachable",
            Self::Concurrency => "another max_concurrency is in use",
            Self::TokenRefused => "invalid token (401)",
        }
    }
}

/// Called with each reason the shard keeps waiting for (may repeat).
pub type WaitReporter<'a> = &'a (dyn Fn(WaitReason) + Send + Sync);

/// What a queue does with a permit once the shard has used it or given it up.
pub trait PermitHandle: Send {
    /// The Identify was used and sent moments ago: the window runs from now (a client that
    /// cannot see the gateway's answer, a failed send). The hold must also cover the Identify's
    /// trip, which may still be under way (the send margin).
    fn sent(self: Box<Self>) -> BoxFuture<'static, ()>;
    /// The gateway answered the Identify ([`InFlight`]): it has arrived, so the hold from now
    /// only has to cover the queue's own timing (the answer margin). Default: as [`Self::sent`].
    fn answered(self: Box<Self>) -> BoxFuture<'static, ()> {
        self.sent()
    }
    /// Nothing was sent: give the window back.
    fn release(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// Leave to send one Identify. Use it with [`Permit::sent`] right after sending, or
/// [`Permit::release`] when nothing was sent. Dropped unused, it is released in the background.
pub struct Permit {
    handle: Option<Box<dyn PermitHandle>>,
    valid_until: Instant,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("valid_until", &self.valid_until)
            .finish_non_exhaustive()
    }
}

impl Permit {
    /// A permit whose Identify must leave before `valid_until` (after that the gate may have
    /// expired and the window would no longer be covered).
    pub fn new(handle: Box<dyn PermitHandle>, valid_until: Instant) -> Self {
        Self {
            handle: Some(handle),
            valid_until,
        }
    }

    /// True while an Identify may still be sent with this permit.
    pub fn is_valid(&self) -> bool {
        Instant::now() < self.valid_until
    }

    /// The moment after which this permit's Identify must not leave any more.
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// Confirms the Identify was sent: its window runs from now. For a client that cannot see
    /// the gateway's answer (the twilight-compatible facade); a shard uses [`Permit::in_flight`].
    pub async fn sent(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.sent().await;
        }
    }

    /// The Identify left: the gate keeps its first TTL until the gateway answers
    /// ([`InFlight::answered`]). Never given back from here on.
    pub fn in_flight(mut self) -> InFlight {
        InFlight {
            handle: self.handle.take(),
        }
    }

    /// Gives the permit back unused.
    pub async fn release(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.release().await;
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(handle.release());
        }
    }
}

/// An Identify sent and not answered yet. Discord times the window between the Identifies'
/// *arrivals* (discord-api-docs, "Identifying": one per bucket per 5 s), and an Identify can
/// arrive long after its send (a lost segment is resent after at least 200 ms, a busy host
/// delays both). Its answer (READY, op 9; its Close frame with the send margin) comes
/// after the gateway read it or once it never will, so a window started at the answer covers
/// any such delay, where one started at the send covers only the margin. Until then the gate
/// keeps the TTL it was granted with (`connect_bound`, the hold plus at least 2 s); dropped
/// unanswered (we closed the connection, whose kernel may still be resending it; the task
/// ended), it keeps that TTL too: a lost answer costs time, never a window.
pub struct InFlight {
    handle: Option<Box<dyn PermitHandle>>,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight").finish_non_exhaustive()
    }
}

impl InFlight {
    /// The gateway answered the Identify (or ended the connection it went on, so it was read
    /// before or never will be): the window runs from now.
    pub async fn answered(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.answered().await;
        }
    }

    /// The gateway closed the connection (its Close frame) before READY or op 9: it reads no
    /// more, but its Close may have crossed our Identify on the way, so whether it was read is
    /// not known: the window runs from now with the send margin, as for an Identify just sent.
    pub async fn closed(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.sent().await;
        }
    }
}

/// Decides when a shard may Identify. One method, like twilight-gateway-queue's `Queue`.
pub trait IdentifyQueue: Send + Sync + 'static {
    /// Waits until `shard` may send an Identify (never fails: it waits instead, reporting why).
    /// Dropping the future gives up the place in line.
    fn acquire<'a>(&'a self, shard: u32, waiting: WaitReporter<'a>) -> BoxFuture<'a, Permit>;
}

/// A little randomness for waiters so they do not ask in lock step.
pub(crate) fn jitter(max: std::time::Duration) -> std::time::Duration {
    use rand::RngExt;
    if max.is_zero() {
        return max;
    }
    max.mul_f64(rand::rng().random_range(0.0..1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_labels_are_snake_case_and_distinct() {
        let all = [
            WaitReason::Gate,
            WaitReason::Line,
            WaitReason::Budget,
            WaitReason::BudgetUnknown,
            WaitReason::Epoch,
            WaitReason::Redis,
            WaitReason::Concurrency,
            WaitReason::TokenRefused,
        ];
        let labels: std::collections::BTreeSet<&str> =
            all.iter().map(|r| r.metric_label()).collect();
        assert_eq!(labels.len(), all.len());
        for label in labels {
            assert!(
                label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{label}"
            );
        }
    }
}
