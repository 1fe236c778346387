//! What a replica's partitions did, counted: for logs, metrics and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one replica (all partitions).
#[derive(Debug, Default)]
pub struct Stats {
    handled: AtomicU64,
    redelivered: AtomicU64,
    bad: AtomicU64,
    failed: AtomicU64,
    terminated: AtomicU64,
    released: AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Events handled and acknowledged.
    pub handled: u64,
    /// Deliveries that were not the event's first (after a failure, a failover or a release).
    pub redelivered: u64,
    /// Messages that were not events of the protocol (missing headers, non-JSON payload):
    /// terminated without reaching the handler.
    pub bad: u64,
    /// Handler failures (panics included) that asked for a redelivery.
    pub failed: u64,
    /// Events terminated after `max_attempts` failed deliveries.
    pub terminated: u64,
    /// Leases released (handed over) rather than left to expire.
    pub released: u64,
}

impl Stats {
    pub(crate) fn handled(&self) {
        self.handled.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn redelivered(&self) {
        self.redelivered.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn bad(&self) {
        self.bad.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn terminated(&self) {
        self.terminated.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn released(&self) {
        self.released.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            handled: self.handled.load(Ordering::Relaxed),
            redelivered: self.redelivered.load(Ordering::Relaxed),
            bad: self.bad.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            terminated: self.terminated.load(Ordering::Relaxed),
            released: self.released.load(Ordering::Relaxed),
        }
    }
}
