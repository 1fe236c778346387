//! The fake's clock: Unix time in microseconds that never goes backwards, read once at startup
//! from the system clock and advanced by a monotonic `Instant`, so that rule windows are immune
//! to clock steps while the times in reports still read as Unix time.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::rules::{Micros, US_PER_MS};

/// A monotonic Unix clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    origin_unix_us: Micros,
}

impl Clock {
    pub fn new() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as Micros)
            .unwrap_or_default();
        Self {
            origin: Instant::now(),
            origin_unix_us: unix,
        }
    }

    /// Now, in Unix µs.
    pub fn now_us(&self) -> Micros {
        self.at_us(Instant::now())
    }

    /// An instant, in Unix µs.
    pub fn at_us(&self, instant: Instant) -> Micros {
        self.origin_unix_us + instant.saturating_duration_since(self.origin).as_micros() as Micros
    }

    /// Now, in Unix ms.
    pub fn now_ms(&self) -> u64 {
        self.now_us() / US_PER_MS
    }

    /// The instant of a Unix µs time (for timers).
    pub fn instant_of(&self, at: Micros) -> Instant {
        self.origin + std::time::Duration::from_micros(at.saturating_sub(self.origin_unix_us))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
