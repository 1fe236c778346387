//! The timing rules measured between arrivals: at most one accepted request per key per window
//! ([`ArrivalWindows`]), the shape of the Identify buckets ([`IdentifyWindows`], gateway.mdx
//! "Max Concurrency") and of op 8's all-members limit (gateway-events.mdx "Request Guild Members").

use std::collections::{BTreeSet, HashMap};

use super::{Micros, US_PER_MS, bucket};

/// At most one accepted request per key per window, measured between arrivals: the shape of the
/// Identify buckets (key: the bucket) and of op 8's all-members limit (key: the guild). Only
/// accepted requests open a window; refused ones do not move it.
///
/// Requests are judged in the order their connections get to them, which under load is not the
/// order they arrived in (each connection has its own task). So every accepted arrival of the
/// last [`ArrivalWindows::KEPT`] windows is kept, and a new one is checked against both its
/// neighbours in arrival order, wherever it falls.
#[derive(Debug, Clone)]
pub struct ArrivalWindows<K> {
    window: Micros,
    /// Arrivals of the recent accepted requests of each key.
    pub(super) accepted: HashMap<K, BTreeSet<Micros>>,
}

/// A request that arrived inside its key's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsideWindow {
    /// Arrival of the key's accepted request closest to this one.
    pub previous: Micros,
    /// Distance between the two arrivals.
    pub gap: Micros,
    /// How long until the window is over (`window - gap`).
    pub retry_after: Micros,
}

impl<K: std::hash::Hash + Eq> ArrivalWindows<K> {
    /// How many windows of arrivals are kept: a request judged this much later than a
    /// later-arriving one is only checked against what is left (far more than any lag seen).
    pub const KEPT: u64 = 64;

    pub fn new(window_ms: u64) -> Self {
        Self {
            window: window_ms * US_PER_MS,
            accepted: HashMap::new(),
        }
    }

    /// Whether a request of `key` arriving `at` keeps the key's window. The distance is taken
    /// to the closest accepted arrival before and after it, so requests judged out of arrival
    /// order are still caught.
    pub fn check(&self, key: &K, at: Micros) -> Result<(), InsideWindow> {
        let Some(arrivals) = self.accepted.get(key) else {
            return Ok(());
        };
        let before = arrivals.range(..=at).next_back();
        let after = arrivals.range(at..).next();
        match before
            .into_iter()
            .chain(after)
            .map(|&other| (other, other.abs_diff(at)))
            .min_by_key(|&(_, gap)| gap)
        {
            Some((previous, gap)) if gap < self.window => Err(InsideWindow {
                previous,
                gap,
                retry_after: self.window - gap,
            }),
            _ => Ok(()),
        }
    }

    /// Records an accepted request: its arrival opens the key's next window.
    pub fn record(&mut self, key: K, at: Micros) {
        let horizon = self.window.saturating_mul(Self::KEPT);
        let arrivals = self.accepted.entry(key).or_default();
        arrivals.insert(at);
        let latest = arrivals.last().copied().unwrap_or(at);
        let kept = arrivals.split_off(&latest.saturating_sub(horizon));
        *arrivals = kept;
    }
}

/// One Identify per bucket per window, measured between arrivals at the gateway.
#[derive(Debug, Clone)]
pub struct IdentifyWindows {
    windows: ArrivalWindows<u32>,
    max_concurrency: u32,
}

/// An Identify that arrived inside its bucket's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooFast {
    pub bucket: u32,
    /// Arrival of the bucket's previous accepted Identify.
    pub previous: Micros,
    /// Distance between the two arrivals.
    pub gap: Micros,
}

impl IdentifyWindows {
    pub fn new(window_ms: u64, max_concurrency: u32) -> Self {
        Self {
            windows: ArrivalWindows::new(window_ms),
            max_concurrency: max_concurrency.max(1),
        }
    }

    pub fn bucket(&self, shard_id: u32) -> u32 {
        bucket(shard_id, self.max_concurrency)
    }

    /// Whether an Identify of `shard_id` arriving `at` keeps its bucket's window.
    pub fn check(&self, shard_id: u32, at: Micros) -> Result<(), TooFast> {
        let bucket = self.bucket(shard_id);
        self.windows.check(&bucket, at).map_err(|inside| TooFast {
            bucket,
            previous: inside.previous,
            gap: inside.gap,
        })
    }

    /// Records an accepted Identify: its arrival opens the bucket's next window.
    pub fn record(&mut self, shard_id: u32, at: Micros) {
        self.windows.record(self.bucket(shard_id), at);
    }
}
