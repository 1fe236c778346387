//! The outgoing command limiter: Discord closes a connection with 4008 when it sends more than 120
//! commands in 60 s (heartbeats included). Source: discord-api-docs
//! `developers/events/gateway.mdx`, "Rate Limiting".
//!
//! A sliding window of send times. Ordinary commands may use the window minus a reserve that is
//! kept for heartbeats (enough for every beat a window can hold, plus one answer to a server
//! heartbeat request), so a chatty bot can never starve its own heartbeats into a zombie close.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Commands per window (Discord: 120 per 60 s).
pub const COMMANDS_PER_WINDOW: usize = 120;
/// The window length (Discord: 60 s).
pub const WINDOW: Duration = Duration::from_secs(60);

/// Per-connection limiter; a new connection starts with a new one.
#[derive(Debug, Clone)]
pub struct CommandLimiter {
    sent: VecDeque<Instant>,
    reserve: usize,
}

impl CommandLimiter {
    /// A limiter for a connection whose heartbeat interval is `heartbeat_interval`.
    pub fn new(heartbeat_interval: Duration) -> Self {
        let beats = WINDOW.as_millis() / heartbeat_interval.as_millis().max(1);
        // One more than the beats that fit for the first, jittered beat, one for a server request.
        let reserve = (beats as usize + 2).min(COMMANDS_PER_WINDOW - 1);
        Self {
            sent: VecDeque::with_capacity(8),
            reserve,
        }
    }

    /// Commands kept for heartbeats.
    pub fn reserve(&self) -> usize {
        self.reserve
    }

    fn expire(&mut self, now: Instant) {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.sent.pop_front();
        }
    }

    /// How long an ordinary command must wait before it may be sent (zero: now).
    pub fn delay(&mut self, now: Instant) -> Duration {
        self.delay_for(now, COMMANDS_PER_WINDOW - self.reserve)
    }

    /// How long a heartbeat must wait (it may use the reserve; zero unless the window is full).
    pub fn heartbeat_delay(&mut self, now: Instant) -> Duration {
        self.delay_for(now, COMMANDS_PER_WINDOW)
    }

    fn delay_for(&mut self, now: Instant, allowed: usize) -> Duration {
        self.expire(now);
        if self.sent.len() < allowed {
            return Duration::ZERO;
        }
        // The oldest send that must leave the window before one more fits.
        let index = self.sent.len() - allowed;
        (self.sent[index] + WINDOW).saturating_duration_since(now)
    }

    /// Records a send (call it for every command, heartbeats included).
    pub fn record(&mut self, now: Instant) {
        self.expire(now);
        self.sent.push_back(now);
    }

    /// Waits until an ordinary command may be sent, then records it.
    pub async fn acquire(&mut self) {
        loop {
            let wait = self.delay(Instant::now());
            if wait.is_zero() {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        self.record(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ordinary_commands_leave_room_for_heartbeats() {
        let mut limiter = CommandLimiter::new(Duration::from_millis(41_250));
        assert_eq!(limiter.reserve(), 3);
        let start = Instant::now();
        for _ in 0..(COMMANDS_PER_WINDOW - limiter.reserve()) {
            limiter.acquire().await;
        }
        assert_eq!(Instant::now(), start, "the first 117 go at once");
        // The next ordinary command waits for the window, but a heartbeat still goes at once.
        assert_eq!(limiter.delay(Instant::now()), WINDOW);
        assert_eq!(limiter.heartbeat_delay(Instant::now()), Duration::ZERO);
        limiter.acquire().await;
        assert_eq!(Instant::now() - start, WINDOW);
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_120_in_any_window() {
        let mut limiter = CommandLimiter::new(Duration::from_millis(100));
        let mut log = Vec::new();
        for i in 0..400 {
            if i % 3 == 0 {
                let wait = limiter.heartbeat_delay(Instant::now());
                tokio::time::sleep(wait).await;
                limiter.record(Instant::now());
            } else {
                limiter.acquire().await;
            }
            log.push(Instant::now());
        }
        for (i, t) in log.iter().enumerate() {
            let in_window = log[i..]
                .iter()
                .take_while(|u| u.duration_since(*t) < WINDOW)
                .count();
            assert!(
                in_window <= COMMANDS_PER_WINDOW,
                "{in_window} sends in one window"
            );
        }
    }

    #[test]
    fn a_tiny_interval_keeps_one_ordinary_slot() {
        let limiter = CommandLimiter::new(Duration::from_millis(1));
        assert_eq!(limiter.reserve(), COMMANDS_PER_WINDOW - 1);
    }
}
