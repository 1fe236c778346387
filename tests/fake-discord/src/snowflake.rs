//! Snowflakes for things the fake creates at run time (messages, replies): real Discord
//! snowflakes, `(ms since 2015-01-01) << 22 | increment`, unique and increasing across threads.
//!
//! Source: discord-api-docs `developers/reference.mdx` ("Snowflakes").

use std::sync::atomic::{AtomicU64, Ordering};

/// The Discord epoch, 2015-01-01T00:00:00Z, in Unix ms.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// The Unix ms a snowflake was created at.
pub fn timestamp_ms(id: u64) -> u64 {
    (id >> 22) + DISCORD_EPOCH_MS
}

/// The smallest snowflake of a Unix ms (for range queries by time).
pub fn first_of_ms(unix_ms: u64) -> u64 {
    unix_ms.saturating_sub(DISCORD_EPOCH_MS) << 22
}

/// Hands out unique, increasing snowflakes stamped with the current time.
#[derive(Debug, Default)]
pub struct Snowflakes {
    last: AtomicU64,
}

impl Snowflakes {
    /// A new snowflake for an object created at `unix_ms`. Within one ms the low 22 bits count
    /// up; past 4 M ids in one ms the id borrows from the next ms rather than repeat.
    pub fn next(&self, unix_ms: u64) -> u64 {
        let floor = first_of_ms(unix_ms);
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let next = floor.max(prev + 1);
            match self
                .last
                .compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(actual) => prev = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snowflakes_are_unique_increasing_and_carry_their_time() {
        let ids = Snowflakes::default();
        let now = 1_764_000_000_000;
        let a = ids.next(now);
        let b = ids.next(now);
        let c = ids.next(now - 5);
        assert!(a < b && b < c);
        assert_eq!(timestamp_ms(a), now);
        assert_eq!(timestamp_ms(c), now);
        assert_eq!(ids.next(now + 1), first_of_ms(now + 1));
    }
}
