//! The outgoing command limiter: Discord closes a connection with 4008 when it sends more than 120
//! commands in 60 s (heartbeats included). Source: discord-api-docs
//! `developers/events/gateway.mdx`, "Rate Limiting".
//!
//! A sliding window of send times. Discord counts commands when they arrive, so a send holds its
//! slot a little longer than the window ([`margin`]): two sends a window apart can arrive closer
//! together when the first one was slowed on its way. Ordinary commands may use the window minus a reserve that is
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
/// Discord's window length in ms (`GATEWAY_SEND_WINDOW_MS` scales it for a time-scaled fake).
pub const DISCORD_SEND_WINDOW_MS: u64 = 60_000;
/// Discord's window length.
pub const WINDOW: Duration = Duration::from_millis(DISCORD_SEND_WINDOW_MS);

/// How much longer than `window` a send holds its slot: 2 % of it, between 50 ms and 1 s.
pub fn margin(window: Duration) -> Duration {
    (window / 50).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// Per-connection limiter; a new connection starts with a new one.
#[derive(Debug, Clone)]
pub struct CommandLimiter {
    sent: VecDeque<Instant>,
    reserve: usize,
    /// How long a send holds its slot: the window plus the margin.
    held: Duration,
}

impl CommandLimiter {
    /// A limiter for a connection whose heartbeat interval is `heartbeat_interval`, under a send
    /// limit of [`COMMANDS_PER_WINDOW`] per `window` ([`WINDOW`] on Discord).
    pub fn new(heartbeat_interval: Duration, window: Duration) -> Self {
        let held = window + margin(window);
        let beats = held.as_millis() / heartbeat_interval.as_millis().max(1);
        // One more than the beats that fit for the first, jittered beat, one for a server request.
        let reserve = (beats as usize + 2).min(COMMANDS_PER_WINDOW - 1);
        Self {
            sent: VecDeque::with_capacity(8),
            reserve,
            held,
        }
    }

    /// Commands kept for heartbeats.
    pub fn reserve(&self) -> usize {
        self.reserve
    }

    /// How long a send holds its slot (the window plus the margin).
    pub fn held(&self) -> Duration {
        self.held
    }

    fn expire(&mut self, now: Instant) {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.held)
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
        (self.sent[index] + self.held).saturating_duration_since(now)
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
        let mut limiter = CommandLimiter::new(Duration::from_millis(41_250), WINDOW);
        assert_eq!(limiter.reserve(), 3);
        assert_eq!(limiter.held(), WINDOW + Duration::from_secs(1));
        let start = Instant::now();
        for _ in 0..(COMMANDS_PER_WINDOW - limiter.reserve()) {
            limiter.acquire().await;
        }
        assert_eq!(Instant::now(), start, "the first 117 go at once");
        // The next ordinary command waits for the window, but a heartbeat still goes at once.
        assert_eq!(limiter.delay(Instant::now()), limiter.held());
        assert_eq!(limiter.heartbeat_delay(Instant::now()), Duration::ZERO);
        limiter.acquire().await;
        assert_eq!(Instant::now() - start, limiter.held());
    }

    /// The most sends (sorted times) any `window` of the log holds.
    fn busiest_window(log: &[Instant], window: Duration) -> usize {
        log.iter()
            .enumerate()
            .map(|(i, t)| {
                log[i..]
                    .iter()
                    .take_while(|u| u.duration_since(*t) < window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_120_in_any_window() {
        let mut limiter = CommandLimiter::new(Duration::from_millis(100), WINDOW);
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
        assert!(busiest_window(&log, WINDOW) <= COMMANDS_PER_WINDOW);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_asking_for_heartbeats_cannot_push_past_the_limit() {
        // Discord's interval; the server sends op 1 every 50 ms (1,200 a minute) while the
        // shard also beats on its own and sends a few ordinary commands.
        let interval = Duration::from_millis(41_250);
        let mut limiter = CommandLimiter::new(interval, WINDOW);
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
            busiest_window(&log, WINDOW) <= COMMANDS_PER_WINDOW,
            "{}",
            busiest_window(&log, WINDOW)
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
        let limiter = CommandLimiter::new(Duration::from_millis(1), WINDOW);
        assert_eq!(limiter.reserve(), COMMANDS_PER_WINDOW - 1);
    }

    #[test]
    fn the_margin_is_two_percent_within_bounds() {
        assert_eq!(margin(WINDOW), Duration::from_secs(1));
        assert_eq!(
            margin(Duration::from_millis(5_000)),
            Duration::from_millis(100)
        );
        assert_eq!(
            margin(Duration::from_millis(500)),
            Duration::from_millis(50)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_scaled_window_scales_the_limit_and_sends_arriving_late_stay_under_it() {
        // Sends go out as fast as the limiter allows; each arrives after a delay that varies by
        // up to the margin (a first send slowed, a later one not). Counted at arrival, as Discord
        // does, no window holds more than the limit.
        let window = Duration::from_millis(2_000);
        let mut limiter = CommandLimiter::new(Duration::from_millis(500), window);
        let mut arrivals = Vec::new();
        for i in 0..600u32 {
            if i % 20 == 0 {
                while let Err(wait) = limiter.try_heartbeat(Instant::now(), false) {
                    tokio::time::sleep(wait).await;
                }
            } else {
                limiter.acquire().await;
            }
            let transit = if i % 2 == 0 {
                margin(window)
            } else {
                Duration::ZERO
            };
            arrivals.push(Instant::now() + transit);
        }
        arrivals.sort();
        let busiest = busiest_window(&arrivals, window);
        assert!(busiest <= COMMANDS_PER_WINDOW, "{busiest} in one window");
        assert!(
            busiest >= COMMANDS_PER_WINDOW - 10,
            "the limit is used: {busiest}"
        );
    }
}
