//! The Redis Identify queue: the bucket gates of `docs/redis-protocol.md` (summary in [`super`]);
//! the budget reads it falls back on are in [`super::budget`].
//!
//! Every script runs atomically on the server and touches only keys of one hash tag, so the
//! protocol works on a single Redis and on Redis Cluster alike. The scripts live beside this file.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::budget::{self, BudgetRead, BudgetReads};
use super::queue::{
    BoxFuture, IdentifyQueue, Permit, PermitHandle, WaitReason, WaitReporter, jitter,
};
use super::wakeups::{GateWakeups, Subscription};
use shardset_contract::Keys;
use shardset_contract::redis_link::{RedisEndpoint, RedisLink};
use shardset_contract::redis_tls::{CaBundle, RedisClientError};
use shardset_contract::rest::DiscordRest;

static TAKE_GATE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("take_gate.lua")));
static CONFIRM_GATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("confirm_gate.lua")));
static RELEASE_GATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("release_gate.lua")));
/// The epoch marker as a Redis that has run for a long while holds it: this server's `run_id`,
/// created at time 0. `KEYS[1]` = `P:epoch`. **For benchmarks and tests only** (a warm Redis):
/// in production it would skip the hold that protects against lost gates.
pub fn settle_epoch_script() -> Script {
    Script::new(
        "redis.call('SET', KEYS[1], (string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or '') .. ':0')",
    )
}

/// The bucket map to use: Discord's `max_concurrency`, or an override that divides it. A divisor
/// is a coarser map (shards of one Discord bucket still share one gate); any other value would
/// give one Discord bucket several gates, so it is refused (the shards must not Identify).
pub fn effective_max_concurrency(discord: u32, override_: Option<u32>) -> Result<u32, String> {
    let discord = discord.max(1);
    match override_ {
        None => Ok(discord),
        Some(0) => Err("MAX_CONCURRENCY=0 is not a bucket count".to_owned()),
        Some(value) if discord.is_multiple_of(value) => Ok(value),
        Some(value) => Err(format!(
            "MAX_CONCURRENCY={value} does not divide Discord's max_concurrency {discord}: \
             one Discord bucket would get several Identify gates (use a divisor of {discord})"
        )),
    }
}

/// The margin at Discord's window: one lost segment of the Identify, resent after Linux's
/// retransmission timeout (at least 200 ms plus the smoothed round trip), on a path whose round
/// trip is up to 100 ms. Measured (`tests/identify_margin.rs`): a first Identify of a bucket that
/// arrives `d` late gives no violation exactly while the margin is at least `d`
/// (docs/redis-protocol.md, "Timing").
pub const LOST_SEGMENT_MARGIN: Duration = Duration::from_millis(300);

/// The margin at the shorter windows, which only run against a fake on the same host or
/// cluster: what counts there is scheduling on a busy host. On this project's shared 2-core
/// machine the in-process fake has recorded an Identify 55 ms after the worker's send.
pub const BUSY_HOST_MARGIN: Duration = Duration::from_millis(100);

/// The margin after the gateway ANSWERED an Identify (READY or op 9). Discord
/// had read the Identify by then (or never will), so the hold from that moment is already a
/// window after its arrival, whatever delayed it on the way; what is left to cover is the gate's
/// own timing. Redis expires keys at millisecond resolution and never early on its own clock, but
/// after a Sentinel failover the new primary expires by ITS clock (`PEXPIRE` reaches replicas as
/// an absolute `PEXPIREAT`), so a replica whose clock runs ahead ends the hold early by the skew:
/// NTP-synced hosts of one cluster or region stay within a few ms (chrony's usual offset is well
/// under 1 ms; 10 ms is a badly served host). 25 ms covers such a skew with room for timer and
/// millisecond rounding (`TIME` in the scripts, `as_millis` here), and never exceeds the send
/// margin (an override of [`GateConfig::with_margin`] below it lowers this too).
pub const ANSWER_MARGIN: Duration = Duration::from_millis(25);

/// The default margin for `window`: [`LOST_SEGMENT_MARGIN`] at Discord's window (and longer
/// ones), [`BUSY_HOST_MARGIN`] at the shorter ones of a fake.
pub fn default_margin(window: Duration) -> Duration {
    if window >= Duration::from_millis(shardset_contract::DISCORD_IDENTIFY_WINDOW_MS) {
        LOST_SEGMENT_MARGIN
    } else {
        BUSY_HOST_MARGIN
    }
}

/// Timing and limits of the gate.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// Discord's `max_concurrency`: the number of buckets.
    pub max_concurrency: u32,
    /// Discord's Identify window (5 s; shorter only against a time-scaled fake).
    pub window: Duration,
    /// Extra hold after the window for a gate confirmed at the send (the facade, a failed
    /// send), covering what delays an Identify between its send and its arrival (a lost segment
    /// resent, scheduling): [`default_margin`].
    pub margin: Duration,
    /// Extra hold after the window for a gate confirmed at the gateway's answer (a shard):
    /// [`ANSWER_MARGIN`], never above `margin`.
    pub answer_margin: Duration,
    /// The gate's first TTL, from take to send. Kept at least `window + margin` so that losing
    /// Redis right after the send still leaves a full window.
    pub connect_bound: Duration,
    /// Session starts never spent (`IDENTIFY_RESERVE`).
    pub reserve: u32,
    /// Most random delay added to each wait.
    pub jitter: Duration,
}

impl GateConfig {
    /// Sensible timing for a window: the [`default_margin`] (300 ms at Discord's 5 s),
    /// `connect_bound` the hold plus at least 2 s (a stalled process must not outlive its gate
    /// between the validity check and the send), jitter 0.5 % (at least 2 ms).
    pub fn new(max_concurrency: u32, window: Duration, reserve: u32) -> Self {
        let margin = default_margin(window);
        let hold = window + margin;
        Self {
            max_concurrency: max_concurrency.max(1),
            window,
            margin,
            answer_margin: ANSWER_MARGIN.min(margin),
            connect_bound: Self::bound_for(hold),
            reserve,
            jitter: (window / 200).max(Duration::from_millis(2)),
        }
    }

    /// The same timing with another `margin` (`IDENTIFY_MARGIN_MS`): `connect_bound` grows
    /// with the hold if it must, and never shrinks; the answer margin follows it down only.
    pub fn with_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self.answer_margin = ANSWER_MARGIN.min(margin);
        self.connect_bound = self.connect_bound.max(Self::bound_for(self.hold()));
        self
    }

    /// The first TTL for a hold: the hold plus at least 2 s.
    fn bound_for(hold: Duration) -> Duration {
        hold + hold.max(Duration::from_secs(2))
    }

    /// How long a gate confirmed at the send is held: window + margin. The longest hold a used
    /// gate gets.
    pub fn hold(&self) -> Duration {
        self.window + self.margin
    }

    /// How long a gate confirmed at the gateway's answer is held: window + answer margin.
    pub fn answer_hold(&self) -> Duration {
        self.window + self.answer_margin
    }

    fn connect_bound(&self) -> Duration {
        self.connect_bound.max(self.hold())
    }

    /// How long a waiter that found the gate held, `pttl` left, sleeps before it asks again (a
    /// heard hand-off wakes it sooner). A gate whose PTTL is beyond the answer hold is either
    /// still in flight (its first TTL: the Identify sent or about to be, not yet answered) or
    /// confirmed at the send: in flight, it frees no sooner than the answer hold from now (READY
    /// or op 9 could come at once, `confirm_gate.lua`), so ask again then rather than after a
    /// whole send hold; the question finds the exact PTTL once it is confirmed. Only when to
    /// ask: the scripts alone grant.
    fn recheck_after(&self, pttl: Duration) -> Duration {
        pttl.min(self.answer_hold())
    }

    /// A waiter that has not asked for this long has left its bucket's line.
    fn stale(&self) -> Duration {
        self.connect_bound() * 2 + Duration::from_secs(1)
    }
}

/// The outcome of one `take_gate.lua` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Granted; this many session starts remain.
    Granted { remaining: i64 },
    /// Not now: why, and how long until asking again makes sense.
    Wait { reason: WaitReason, after: Duration },
}

impl Take {
    fn from_reply(code: i64, n: i64) -> Self {
        let after = Duration::from_millis(n.max(0) as u64);
        let wait = |reason| Self::Wait { reason, after };
        match code {
            0 => Self::Granted { remaining: n },
            1 => wait(WaitReason::Gate),
            2 => wait(WaitReason::Epoch),
            3 => wait(WaitReason::Budget),
            4 => wait(WaitReason::BudgetUnknown),
            5 => wait(WaitReason::Line),
            6 => wait(WaitReason::Concurrency),
            _ => wait(WaitReason::Gate),
        }
    }
}

/// Identify permits from Redis, shared by every pod of the bot.
#[derive(Clone)]
pub struct RedisQueue {
    conn: RedisLink,
    keys: Keys,
    config: GateConfig,
    /// Identifies this process in gate owners (`<pod>/<nonce>`).
    owner: String,
    /// Reads the budget from Discord when Redis has none (shared by every clone).
    reads: Arc<BudgetReads>,
    /// Hand-offs heard on `P:gate-events` (one subscription per process); `None`: waiters
    /// only sleep for the PTTL they saw.
    wakeups: Option<Arc<GateWakeups>>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("keys", &self.keys)
            .field("config", &self.config)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl RedisQueue {
    /// A queue on `conn` for the bot's `keys`. `owner` names this process (e.g. the pod name);
    /// `rest` reads the budget from `GET /gateway/bot` when Redis has none.
    pub fn new(
        conn: RedisLink,
        keys: Keys,
        config: GateConfig,
        owner: &str,
        rest: Option<DiscordRest>,
    ) -> Self {
        Self {
            conn,
            keys,
            config,
            owner: format!("{owner}/{:016x}", rand::random::<u64>()),
            reads: Arc::new(BudgetReads::new(rest)),
            wakeups: None,
        }
    }

    /// Waiters of this queue (and its clones) ask again as soon as a bucket's gate is heard to
    /// be released on `P:gate-events`: one subscription on `endpoint`'s primary, kept until the last
    /// clone goes. Needs a Tokio runtime.
    pub fn with_wakeups(mut self, endpoint: RedisEndpoint) -> Self {
        self.wakeups = Some(Arc::new(GateWakeups::listen(
            endpoint,
            self.keys.gate_events(),
            self.config.max_concurrency,
        )));
        self
    }

    /// Stores the budget read from `GET /gateway/bot` (never raising a lower count within a
    /// period, never above Discord's word).
    pub async fn sync_budget(
        &self,
        remaining: u32,
        reset_after_ms: u64,
    ) -> redis::RedisResult<i64> {
        budget::store(&self.conn, &self.keys, remaining, reset_after_ms).await
    }

    pub fn config(&self) -> &GateConfig {
        &self.config
    }

    /// One attempt to take the gate of `shard`'s bucket, with a fresh owner token.
    pub async fn try_take(&self, shard: u32, owner: &str) -> redis::RedisResult<Take> {
        let bucket = shardset_contract::bucket(shard, self.config.max_concurrency);
        let (code, n): (i64, i64) = TAKE_GATE
            .key(self.keys.epoch())
            .key(self.keys.gate(bucket))
            .key(self.keys.budget())
            .key(self.keys.queue(bucket))
            .key(self.keys.seen(bucket))
            .key(self.keys.max_concurrency())
            .key(self.keys.budget_period())
            .arg(owner)
            .arg(self.config.connect_bound().as_millis() as u64)
            .arg(self.config.hold().as_millis() as u64)
            .arg(self.config.reserve)
            .arg(shard)
            .arg(self.config.stale().as_millis() as u64)
            .arg(self.config.max_concurrency)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(Take::from_reply(code, n))
    }
}

/// Takes a shard out of its bucket's waiting line when its wait is abandoned (the acquire future
/// dropped: shutdown, lost connection), so it does not hold up higher shard ids until it is stale.
struct LineGuard {
    conn: RedisLink,
    queue: String,
    seen: String,
    shard: u32,
    armed: bool,
}

impl Drop for LineGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut conn = self.conn.clone();
        let (queue, seen, shard) = (self.queue.clone(), self.seen.clone(), self.shard);
        runtime.spawn(async move {
            let result: redis::RedisResult<()> = redis::pipe()
                .zrem(&queue, shard)
                .ignore()
                .hdel(&seen, shard)
                .ignore()
                .query_async(&mut conn)
                .await;
            if let Err(e) = result {
                debug!(shard_id = shard, error = %e, "cannot leave the waiting line; it goes stale on its own");
            }
        });
    }
}

struct RedisPermit {
    conn: RedisLink,
    gate: String,
    budget: String,
    budget_period: String,
    owner: String,
    /// Window + margin: the hold of a gate confirmed at the send.
    send_hold: Duration,
    /// Window + answer margin: the hold of a gate confirmed at the gateway's answer.
    answer_hold: Duration,
    /// `P:gate-events` and the bucket, for the hand-off message of a release.
    events: String,
    bucket: u32,
}

impl RedisPermit {
    /// Makes the gate last `hold` from now (`confirm_gate.lua`, owner-checked).
    fn confirm(self: Box<Self>, hold: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let result: redis::RedisResult<i64> = CONFIRM_GATE
                .key(&self.gate)
                .arg(&self.owner)
                .arg(hold.as_millis() as u64)
                .invoke_async(&mut self.conn.clone())
                .await;
            match result {
                Ok(1) => {}
                // Gone: it lived connect_bound from the grant (the hold plus at least 2 s), so
                // only an Identify that took longer than that to reach Discord could share its
                // window with the next (the residual docs/redis-protocol.md names).
                Ok(_) => {
                    warn!(gate = %self.gate, "the Identify gate was gone when its Identify was confirmed")
                }
                Err(e) => {
                    warn!(gate = %self.gate, error = %e, "cannot shrink the Identify gate; it expires on its own")
                }
            }
        })
    }
}

impl PermitHandle for RedisPermit {
    fn sent(self: Box<Self>) -> BoxFuture<'static, ()> {
        let hold = self.send_hold;
        self.confirm(hold)
    }

    fn answered(self: Box<Self>) -> BoxFuture<'static, ()> {
        let hold = self.answer_hold;
        self.confirm(hold)
    }

    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let result: redis::RedisResult<i64> = RELEASE_GATE
                .key(&self.gate)
                .key(&self.budget)
                .key(&self.budget_period)
                .arg(&self.owner)
                .arg(&self.events)
                .arg(self.bucket)
                .invoke_async(&mut self.conn.clone())
                .await;
            if let Err(e) = result {
                debug!(gate = %self.gate, error = %e, "cannot release the unused gate; it expires on its own");
            }
        })
    }
}

impl IdentifyQueue for RedisQueue {
    fn acquire<'a>(&'a self, shard: u32, waiting: WaitReporter<'a>) -> BoxFuture<'a, Permit> {
        Box::pin(async move {
            let bucket = shardset_contract::bucket(shard, self.config.max_concurrency);
            let mut line = LineGuard {
                conn: self.conn.clone(),
                queue: self.keys.queue(bucket),
                seen: self.keys.seen(bucket),
                shard,
                armed: true,
            };
            let mut redis_failures = 0u32;
            let mut attempt = 0u64;
            loop {
                attempt += 1;
                let owner = format!("{}/{shard}/{attempt}", self.owner);
                // Taken before asking: a hand-off heard between the answer and the sleep counts.
                let mut handoffs = self.subscribe(bucket);
                // The permit's deadline counts from before the request: conservative.
                let asked_at = Instant::now();
                let outcome = self.try_take(shard, &owner).await;
                // How long after a heard hand-off to ask: a Gate or Line wait only.
                let mut after_handoff = None;
                let pause = match outcome {
                    Ok(Take::Granted { remaining }) => {
                        // The script already took the shard out of the line.
                        line.armed = false;
                        debug!(shard_id = shard, bucket, remaining, "Identify gate taken");
                        let handle = RedisPermit {
                            conn: self.conn.clone(),
                            gate: self.keys.gate(bucket),
                            budget: self.keys.budget(),
                            budget_period: self.keys.budget_period(),
                            owner,
                            send_hold: self.config.hold(),
                            answer_hold: self.config.answer_hold(),
                            events: self.keys.gate_events(),
                            bucket,
                        };
                        // Half of the slack the gate leaves: a process stalled between this
                        // check and the send still sends while the gate is held.
                        let slack = self.config.connect_bound() - self.config.hold();
                        let valid_until = asked_at + slack / 2;
                        return Permit::new(Box::new(handle), valid_until);
                    }
                    Ok(Take::Wait { reason, after }) => {
                        redis_failures = 0;
                        waiting(reason);
                        match reason {
                            WaitReason::BudgetUnknown => {
                                match self.reads.refresh(&self.conn, &self.keys).await {
                                    BudgetRead::Stored => Duration::ZERO,
                                    BudgetRead::Later(wait) => wait,
                                    BudgetRead::Refused => {
                                        waiting(WaitReason::TokenRefused);
                                        Duration::from_secs(60)
                                    }
                                }
                            }
                            // A gate between its grant and the answer still has its first TTL
                            // (connect_bound), but an answer leaves it the answer hold from
                            // then: ask again after that at most (`recheck_after`).
                            WaitReason::Gate => {
                                after_handoff = Some(Duration::ZERO);
                                self.config.recheck_after(after)
                            }
                            // Let the lower shard id (asking at the same moment) go first.
                            WaitReason::Line => {
                                after_handoff = Some(self.config.jitter * 2);
                                self.config.recheck_after(after) + self.config.jitter * 2
                            }
                            // A budget at the reserve: ask again now and then, not only at reset.
                            WaitReason::Budget => after.min(Duration::from_secs(30)),
                            _ => after,
                        }
                    }
                    Err(e) => {
                        waiting(WaitReason::Redis);
                        redis_failures += 1;
                        if redis_failures == 1 {
                            warn!(shard_id = shard, error = %e, "Redis unreachable: no Identify until it is back");
                        }
                        Duration::from_millis(250 * u64::from(redis_failures.min(20)))
                    }
                };
                let spread = jitter(self.config.jitter);
                let deadline = Instant::now() + pause + spread;
                match after_handoff {
                    // Woken when the gate frees (heard), else at the deadline.
                    Some(after) => handoffs.sleep(deadline, after + spread).await,
                    None => tokio::time::sleep_until(deadline).await,
                }
            }
        })
    }
}

impl RedisQueue {
    /// The hand-offs of `bucket`, if this queue listens for them.
    fn subscribe(&self, bucket: u32) -> Subscription {
        self.wakeups
            .as_ref()
            .map_or_else(Subscription::none, |w| w.subscribe(bucket))
    }
}

/// Where the Redis of `url` is (`rediss://` trusting `ca` when given; `redis+sentinel://`, see
/// [`shardset_contract::redis_link`]): for [`connect`], and for the gate hand-off subscription
/// ([`RedisQueue::with_wakeups`]).
pub fn client(url: &str, ca: Option<&CaBundle>) -> Result<RedisEndpoint, RedisClientError> {
    RedisEndpoint::open(url, None, ca)
}

/// Opens the shared Redis connection (`rediss://` trusting `ca` when given, see
/// [`shardset_contract::redis_tls`]): reconnects with backoff on its own, and answers errors
/// quickly (rather than hanging) while Redis is away, so callers can fail closed.
pub fn connect(url: &str, ca: Option<&CaBundle>) -> Result<RedisLink, RedisClientError> {
    manage(&client(url, ca)?)
}

/// [`connect`] on an endpoint already made.
pub fn manage(endpoint: &RedisEndpoint) -> Result<RedisLink, RedisClientError> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(2));
    endpoint.link(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_margin_covers_a_lost_segment_at_discords_window() {
        let discord = GateConfig::new(16, Duration::from_secs(5), 0);
        assert_eq!(discord.margin, LOST_SEGMENT_MARGIN);
        assert_eq!(discord.hold(), Duration::from_millis(5_300));
        assert_eq!(discord.connect_bound, Duration::from_millis(10_600));
        // The fake's scaled windows on one host or cluster.
        assert_eq!(default_margin(Duration::from_millis(300)), BUSY_HOST_MARGIN);
        assert_eq!(
            default_margin(Duration::from_millis(4_999)),
            BUSY_HOST_MARGIN
        );
        // An override (IDENTIFY_MARGIN_MS) grows connect_bound with the hold.
        let wide = discord.clone().with_margin(Duration::from_secs(1));
        assert_eq!(wide.connect_bound, Duration::from_millis(12_000));
        assert_eq!(wide.answer_margin, ANSWER_MARGIN);
    }

    #[test]
    fn an_answered_gate_holds_the_answer_margin_never_above_the_send_margin() {
        let discord = GateConfig::new(16, Duration::from_secs(5), 0);
        assert_eq!(discord.answer_hold(), Duration::from_millis(5_025));
        let scaled = GateConfig::new(16, Duration::from_millis(250), 0);
        assert_eq!(scaled.answer_hold(), Duration::from_millis(275));
        assert_eq!(scaled.hold(), Duration::from_millis(350));
        // An IDENTIFY_MARGIN_MS below the answer margin lowers both holds.
        let tight = scaled.with_margin(Duration::from_millis(10));
        assert_eq!(tight.answer_hold(), Duration::from_millis(260));
        assert_eq!(tight.hold(), Duration::from_millis(260));
    }

    #[test]
    fn a_waiter_asks_again_when_an_unanswered_gate_can_first_free() {
        let discord = GateConfig::new(16, Duration::from_secs(5), 0);
        // In flight (its first TTL, beyond every hold): READY may come at once, and the gate
        // then frees the answer hold later; a whole send hold would oversleep by the margins.
        let in_flight = discord.connect_bound - Duration::from_millis(40);
        assert_eq!(
            discord.recheck_after(in_flight),
            Duration::from_millis(5_025)
        );
        // Confirmed at the send (window + send margin): asked once early, never late.
        assert_eq!(discord.recheck_after(discord.hold()), discord.answer_hold());
        // Confirmed at the answer: its PTTL is exact.
        let left = Duration::from_millis(1_234);
        assert_eq!(discord.recheck_after(left), left);
    }

    #[test]
    fn an_override_must_divide_discords_max_concurrency() {
        assert_eq!(effective_max_concurrency(16, None), Ok(16));
        assert_eq!(effective_max_concurrency(16, Some(4)), Ok(4));
        assert_eq!(effective_max_concurrency(16, Some(16)), Ok(16));
        assert_eq!(effective_max_concurrency(16, Some(1)), Ok(1));
        for bad in [0, 3, 32, 17] {
            let error = effective_max_concurrency(16, Some(bad)).expect_err("refused");
            assert!(error.contains(&format!("MAX_CONCURRENCY={bad}")), "{error}");
        }
        assert_eq!(effective_max_concurrency(0, None), Ok(1));
    }
}
