//! The outgoing command limiter: Discord closes a connection with 4008 when it sends more than 120
//! commands in 60 s (heartbeats included). Source: discord-api-docs
//! `developers/events/gateway.mdx`, "Rate Limiting".
//!
//! A sliding window of send times. Ordinary commands may use the window minus a reserve that is
//! kept for heartbeats (enough for every beat a window can hold, plus one answer to a server
//! heartbeat request), so a chatty bot can never starve its own heartbeats into a zombie close.
//! Every heartbeat goes through [`CommandLimiter::try_heartbeat`]: a regular beat may use the
//! reserve, an answer to the server's op 1 only what ordinary commands may use, and is skipped
//! when there is no room (the next regular beat carries the same information). So a server that
//! asks over and over can neither push the connection past the limit nor eat the regular beats'
//! reserve.

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

    /// A heartbeat, if it may go now: recorded and `Ok`. A regular beat (`requested` false) may
    /// use the reserve; an answer to a server's request only the ordinary part. `Err(wait)`:
    /// not now (a regular beat waits that long and tries again; an answer is skipped).
    pub fn try_heartbeat(&mut self, now: Instant, requested: bool) -> Result<(), Duration> {
        let wait = if requested {
            self.delay(now)
        } else {
            self.heartbeat_delay(now)
        };
        if wait.is_zero() {
            self.record(now);
            Ok(())
        } else {
            Err(wait)
        }
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

    /// The most sends any window of the log holds.
    fn busiest_window(log: &[Instant]) -> usize {
        log.iter()
            .enumerate()
            .map(|(i, t)| {
                log[i..]
                    .iter()
                    .take_while(|u| u.duration_since(*t) < WINDOW)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_120_in_any_window() {
        let mut limiter = CommandLimiter::new(Duration::from_millis(100));
        let mut log = Vec::new();
        for i in 0..400 {
            if i % 3 == 0 {
                // The shard's regular beat, as `shard/actions.rs` sends it.
                while let Err(wait) = limiter.try_heartbeat(Instant::now(), false) {
                    tokio::time::sleep(wait).await;
                }
            } else {
                limiter.acquire().await;
            }
            log.push(Instant::now());
        }
        assert!(busiest_window(&log) <= COMMANDS_PER_WINDOW);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_asking_for_heartbeats_cannot_push_past_the_limit() {
        // Discord's interval; the server sends op 1 every 50 ms (1,200 a minute) while the
        // shard also beats on its own and sends a few ordinary commands.
        let interval = Duration::from_millis(41_250);
        let mut limiter = CommandLimiter::new(interval);
        let start = Instant::now();
        let mut log = Vec::new();
        let mut regular = Vec::new();
        let mut next_beat = start + interval / 2;
        let mut answered = 0;
        while start.elapsed() < Duration::from_secs(300) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = Instant::now();
            if limiter.try_heartbeat(now, true).is_ok() {
                answered += 1;
                log.push(now);
            }
            if now >= next_beat {
                while let Err(wait) = limiter.try_heartbeat(Instant::now(), false) {
                    tokio::time::sleep(wait).await;
                }
                log.push(Instant::now());
                regular.push(Instant::now() - now);
                next_beat = now + interval;
            }
        }
        assert!(
            busiest_window(&log) <= COMMANDS_PER_WINDOW,
            "{}",
            busiest_window(&log)
        );
        assert!(
            answered > 100,
            "requests are still answered while there is room"
        );
        assert!(
            regular.iter().all(|late| late.is_zero()),
            "regular beats are never delayed: {regular:?}"
        );
    }

    #[test]
    fn a_tiny_interval_keeps_one_ordinary_slot() {
        let limiter = CommandLimiter::new(Duration::from_millis(1));
        assert_eq!(limiter.reserve(), COMMANDS_PER_WINDOW - 1);
    }
}
