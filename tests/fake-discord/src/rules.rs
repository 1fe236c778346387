//! Discord's gateway rules as pure decisions: every function takes the time as an argument and
//! does no I/O, so each rule is unit-tested here and the transport only applies the verdicts.
//!
//! Source for every rule: discord-api-docs `developers/events/gateway.mdx` ("Identifying",
//! "Rate Limiting", "Sharding", "Session Start Limit Object") and
//! `developers/topics/opcodes-and-status-codes.mdx` ("Gateway Close Event Codes").

use std::collections::VecDeque;

use crate::control::Rule;
use crate::world;

mod windows;
pub use windows::{ArrivalWindows, IdentifyWindows, InsideWindow, TooFast};

/// Microseconds on the fake's clock (Unix time, but monotonic: see `clock.rs`).
pub type Micros = u64;

/// Microseconds per millisecond.
pub const US_PER_MS: u64 = 1_000;

/// Intents Discord knows (gateway.mdx "List of Intents"): bits 0–16, 20, 21, 24, 25.
pub const KNOWN_INTENTS: u64 = 0x1_FFFF | (1 << 20) | (1 << 21) | (1 << 24) | (1 << 25);
/// GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT: need enabling in the developer portal.
pub const PRIVILEGED_INTENTS: u64 =
    INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT;
/// GUILD_CREATE and the other guild lifecycle events.
pub const INTENT_GUILDS: u64 = 1 << 0;
/// Member events; needed to request a guild's whole member list (op 8 with `query: ""`).
pub const INTENT_GUILD_MEMBERS: u64 = 1 << 1;
/// Presences; op 8's `presences: true` is honoured only with it.
pub const INTENT_GUILD_PRESENCES: u64 = 1 << 8;
/// MESSAGE_CREATE in guilds.
pub const INTENT_GUILD_MESSAGES: u64 = 1 << 9;
/// MESSAGE_CREATE in DMs.
pub const INTENT_DIRECT_MESSAGES: u64 = 1 << 12;
/// Without it, message `content` (and embeds, attachments, components) arrive empty.
pub const INTENT_MESSAGE_CONTENT: u64 = 1 << 15;

/// Gateway close codes the fake sends (opcodes-and-status-codes.mdx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    UnknownError,
    UnknownOpcode,
    DecodeError,
    NotAuthenticated,
    AuthenticationFailed,
    AlreadyAuthenticated,
    InvalidSeq,
    RateLimited,
    SessionTimedOut,
    InvalidShard,
    ShardingRequired,
    InvalidApiVersion,
    InvalidIntents,
    DisallowedIntents,
}

impl CloseCode {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Self::UnknownError => 4000,
            Self::UnknownOpcode => 4001,
            Self::DecodeError => 4002,
            Self::NotAuthenticated => 4003,
            Self::AuthenticationFailed => 4004,
            Self::AlreadyAuthenticated => 4005,
            Self::InvalidSeq => 4007,
            Self::RateLimited => 4008,
            Self::SessionTimedOut => 4009,
            Self::InvalidShard => 4010,
            Self::ShardingRequired => 4011,
            Self::InvalidApiVersion => 4012,
            Self::InvalidIntents => 4013,
            Self::DisallowedIntents => 4014,
        }
    }

    /// Discord's description, sent as the close reason.
    pub fn description(self) -> &'static str {
        match self {
            Self::UnknownError => "Unknown error",
            Self::UnknownOpcode => "Unknown opcode",
            Self::DecodeError => "Decode error",
            Self::NotAuthenticated => "Not authenticated",
            Self::AuthenticationFailed => "Authentication failed",
            Self::AlreadyAuthenticated => "Already authenticated",
            Self::InvalidSeq => "Invalid seq",
            Self::RateLimited => "Rate limited",
            Self::SessionTimedOut => "Session timed out",
            Self::InvalidShard => "Invalid shard",
            Self::ShardingRequired => "Sharding required",
            Self::InvalidApiVersion => "Invalid API version",
            Self::InvalidIntents => "Invalid intent(s)",
            Self::DisallowedIntents => "Disallowed intent(s)",
        }
    }
}

/// Whether a session survives its connection being closed with `code` (by either side).
///
/// 1000/1001 end it ("Initiating a Disconnect"); 4007/4009 say "start a new session"; the codes
/// that forbid reconnecting (4004, 4010–4014) leave nothing to resume. Anything else, and a
/// dropped connection (`None`), keeps it resumable for the resume window.
pub fn session_survives_close(code: Option<u16>) -> bool {
    !matches!(
        code,
        Some(1000 | 1001 | 4004 | 4007 | 4009 | 4010 | 4011 | 4012 | 4013 | 4014)
    )
}

/// The rate-limit key of a shard: `shard_id % max_concurrency` (gateway.mdx "Max Concurrency").
pub fn bucket(shard_id: u32, max_concurrency: u32) -> u32 {
    shard_id % max_concurrency.max(1)
}

/// The shard of `num_shards` that receives a guild's events: `(guild_id >> 22) % num_shards`.
pub fn shard_for_guild(guild_id: u64, num_shards: u32) -> u32 {
    ((guild_id >> 22) % u64::from(num_shards.max(1))) as u32
}

/// A bot token matches when equal after removing an optional `Bot ` prefix, as Discord accepts
/// both forms in Identify and Resume. `expected = None` accepts any non-empty token.
pub fn token_matches(expected: Option<&str>, given: &str) -> bool {
    fn bare(t: &str) -> &str {
        let t = t.trim();
        t.strip_prefix("Bot ").unwrap_or(t).trim()
    }
    let given = bare(given);
    !given.is_empty() && expected.is_none_or(|e| bare(e) == given)
}

/// The `Authorization` header REST expects: `Bot <token>` (the prefix is required on REST).
pub fn authorization_matches(expected: Option<&str>, header: Option<&str>) -> bool {
    header
        .and_then(|h| h.strip_prefix("Bot "))
        .is_some_and(|t| token_matches(expected, t))
}

/// A breach of a rule: which rule, what the fake answers, and the details for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    pub rule: Rule,
    /// `None`: the answer is op 9 Invalid Session (`d: false`), not a close.
    pub close: Option<CloseCode>,
    pub details: String,
}

impl Breach {
    fn close(rule: Rule, code: CloseCode, details: impl Into<String>) -> Self {
        Self {
            rule,
            close: Some(code),
            details: details.into(),
        }
    }
}

/// The fields of an Identify the rules look at (gateway-events.mdx "Identify Structure").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentifyFields {
    pub token: String,
    pub has_properties: bool,
    /// `[shard_id, num_shards]`; absent means `[0, 1]`.
    pub shard: Option<[u64; 2]>,
    pub intents: Option<u64>,
    pub large_threshold: Option<u64>,
}

/// What the static checks of an Identify need to know about the bot.
#[derive(Debug, Clone)]
pub struct IdentifyPolicy<'a> {
    pub token: Option<&'a str>,
    /// The token was reset because the daily budget was exhausted: every token now fails.
    pub token_reset: bool,
    pub privileged_allowed: u64,
    pub guilds: u32,
    pub max_guilds_per_shard: u32,
    pub shard_multiple: u32,
}

/// A shard an Identify asked for, after validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidIdentify {
    pub shard_id: u32,
    pub num_shards: u32,
    pub intents: u64,
    pub large_threshold: u32,
}

/// The checks of an Identify that need no timing: token, payload, shard, intents, guild count.
/// The order follows what a client would need to fix first.
pub fn validate_identify(
    fields: &IdentifyFields,
    policy: &IdentifyPolicy<'_>,
) -> Result<ValidIdentify, Breach> {
    if policy.token_reset || !token_matches(policy.token, &fields.token) {
        let why = if policy.token_reset {
            "the token was reset after the session start budget was exhausted"
        } else {
            "the token does not match"
        };
        return Err(Breach::close(
            Rule::AuthenticationFailed,
            CloseCode::AuthenticationFailed,
            why,
        ));
    }
    if !fields.has_properties {
        return Err(Breach::close(
            Rule::DecodeError,
            CloseCode::DecodeError,
            "identify lacks `properties`",
        ));
    }
    let Some(intents) = fields.intents else {
        return Err(Breach::close(
            Rule::DecodeError,
            CloseCode::DecodeError,
            "identify lacks `intents` (required since v8)",
        ));
    };
    let large_threshold = fields.large_threshold.unwrap_or(50);
    if !(50..=250).contains(&large_threshold) {
        return Err(Breach::close(
            Rule::InvalidPayload,
            CloseCode::UnknownOpcode,
            format!("large_threshold {large_threshold} is not within 50..=250"),
        ));
    }
    let [shard_id, num_shards] = fields.shard.unwrap_or([0, 1]);
    if num_shards == 0 || shard_id >= num_shards || num_shards > u64::from(u32::MAX) {
        return Err(Breach::close(
            Rule::InvalidShard,
            CloseCode::InvalidShard,
            format!("shard [{shard_id}, {num_shards}] is not a valid [shard_id, num_shards]"),
        ));
    }
    let (shard_id, num_shards) = (shard_id as u32, num_shards as u32);
    if num_shards % policy.shard_multiple.max(1) != 0 {
        return Err(Breach::close(
            Rule::InvalidShard,
            CloseCode::InvalidShard,
            format!(
                "num_shards {num_shards} is not a multiple of {} (large bot sharding)",
                policy.shard_multiple
            ),
        ));
    }
    if intents & !KNOWN_INTENTS != 0 {
        return Err(Breach::close(
            Rule::InvalidIntents,
            CloseCode::InvalidIntents,
            format!("unknown intent bits {:#x}", intents & !KNOWN_INTENTS),
        ));
    }
    let disallowed = intents & PRIVILEGED_INTENTS & !policy.privileged_allowed;
    if disallowed != 0 {
        return Err(Breach::close(
            Rule::DisallowedIntents,
            CloseCode::DisallowedIntents,
            format!("privileged intents {disallowed:#x} are not enabled for this bot"),
        ));
    }
    let guilds = world::guild_count_on_shard(policy.guilds, shard_id, num_shards);
    if guilds > policy.max_guilds_per_shard {
        return Err(Breach::close(
            Rule::ShardingRequired,
            CloseCode::ShardingRequired,
            format!(
                "shard [{shard_id}, {num_shards}] would hold {guilds} guilds (max {})",
                policy.max_guilds_per_shard
            ),
        ));
    }
    Ok(ValidIdentify {
        shard_id,
        num_shards,
        intents,
        large_threshold: large_threshold as u32,
    })
}

/// The daily session start budget (`session_start_limit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub total: u32,
    remaining: u32,
    period: Micros,
    reset_at: Micros,
}

/// The verdict on spending one session start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// Spent; this many are left.
    Granted { remaining: u32 },
    /// Nothing was left: Discord terminates every session and resets the token.
    Exhausted,
}

impl Budget {
    pub fn new(total: u32, remaining: u32, period_ms: u64, now: Micros) -> Self {
        let period = period_ms.max(1) * US_PER_MS;
        Self {
            total,
            remaining: remaining.min(total),
            period,
            reset_at: now + period,
        }
    }

    /// Refills the budget when its period is over.
    fn refresh(&mut self, now: Micros) {
        if now >= self.reset_at {
            let periods = (now - self.reset_at) / self.period + 1;
            self.reset_at += periods * self.period;
            self.remaining = self.total;
        }
    }

    /// Session starts left.
    pub fn remaining(&mut self, now: Micros) -> u32 {
        self.refresh(now);
        self.remaining
    }

    /// Milliseconds until the budget refills (`reset_after`).
    pub fn reset_after_ms(&mut self, now: Micros) -> u64 {
        self.refresh(now);
        (self.reset_at - now).div_ceil(US_PER_MS)
    }

    /// Overrides what is left (control API).
    pub fn set_remaining(&mut self, remaining: u32, now: Micros) {
        self.refresh(now);
        self.remaining = remaining.min(self.total);
    }

    /// Spends one session start.
    pub fn spend(&mut self, now: Micros) -> Spend {
        self.refresh(now);
        if self.remaining == 0 {
            return Spend::Exhausted;
        }
        self.remaining -= 1;
        Spend::Granted {
            remaining: self.remaining,
        }
    }
}

/// 120 commands per 60 s per connection, as a sliding window log: no window of `window` length
/// may hold more than `limit` commands. This is the strictest reading of the rule, and the one
/// twilight-gateway's own limiter guarantees.
#[derive(Debug, Clone)]
pub struct SendLimiter {
    limit: usize,
    window: Micros,
    log: VecDeque<Micros>,
}

impl SendLimiter {
    pub fn new(limit: u32, window_ms: u64) -> Self {
        Self {
            limit: limit as usize,
            window: window_ms * US_PER_MS,
            log: VecDeque::with_capacity(limit as usize + 1),
        }
    }

    /// Counts a command received `at`; `false` when it breaks the limit.
    pub fn admit(&mut self, at: Micros) -> bool {
        while self.log.front().is_some_and(|&t| t + self.window <= at) {
            self.log.pop_front();
        }
        self.log.push_back(at);
        self.log.len() <= self.limit
    }

    /// Commands inside the current window.
    pub fn in_window(&self) -> usize {
        self.log.len()
    }
}

/// When a connection that last heartbeated at `last` has missed its heartbeat: one interval
/// plus half an interval (at least 1 s) of tolerance for latency and the first beat's jitter.
pub fn heartbeat_deadline(last: Micros, interval_ms: u64) -> Micros {
    let interval = interval_ms * US_PER_MS;
    last + interval + (interval / 2).max(1_000 * US_PER_MS)
}

/// How late a heartbeat arriving `at` is, the previous one (or Hello, for the first) having come
/// at `previous`: `Some(gap - interval)` when the gap is longer than the interval plus
/// `slack_ms`. Discord acts only at its own timeout (`heartbeat_deadline`); a late heartbeat is
/// reported, so that a client whose other sends hold its heartbeats back is seen before that.
pub fn heartbeat_lateness(
    previous: Micros,
    at: Micros,
    interval_ms: u64,
    slack_ms: u64,
) -> Option<Micros> {
    let gap = at.saturating_sub(previous);
    let interval = interval_ms * US_PER_MS;
    (gap > interval + slack_ms * US_PER_MS).then(|| gap - interval)
}

/// What a Resume gets, given the session's sequence numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeVerdict {
    /// Replay every buffered dispatch after `seq`, then RESUMED.
    Replay,
    /// op 9 `false`; `breach` when the client was at fault (not merely late).
    Invalid { breach: Option<Breach> },
}

/// Checks a Resume's `seq` against the session: it cannot claim dispatches never sent
/// (`seq > last_seq`), and what it missed must still be buffered (`seq + 1 >= first_buffered`).
pub fn check_resume_seq(seq: u64, last_seq: u64, first_buffered: u64) -> ResumeVerdict {
    if seq > last_seq {
        return ResumeVerdict::Invalid {
            breach: Some(Breach {
                rule: Rule::InvalidResumeSeq,
                close: None,
                details: format!("resume seq {seq} is past the session's last seq {last_seq}"),
            }),
        };
    }
    if seq + 1 < first_buffered {
        return ResumeVerdict::Invalid { breach: None };
    }
    ResumeVerdict::Replay
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const S: Micros = 1_000_000;

    fn policy() -> IdentifyPolicy<'static> {
        IdentifyPolicy {
            token: Some("secret"),
            token_reset: false,
            privileged_allowed: PRIVILEGED_INTENTS,
            guilds: 10_000,
            max_guilds_per_shard: 2_500,
            shard_multiple: 1,
        }
    }

    fn identify(shard: [u64; 2]) -> IdentifyFields {
        IdentifyFields {
            token: "secret".into(),
            has_properties: true,
            shard: Some(shard),
            intents: Some(INTENT_GUILDS | INTENT_GUILD_MESSAGES),
            large_threshold: None,
        }
    }

    fn rule_of(result: Result<ValidIdentify, Breach>) -> (Rule, Option<u16>) {
        let breach = result.expect_err("rejected");
        (breach.rule, breach.close.map(CloseCode::code))
    }

    #[test]
    fn identify_window_is_per_bucket_and_measured_between_arrivals() {
        let mut windows = IdentifyWindows::new(5_000, 2);
        assert_eq!(windows.check(0, 10 * S), Ok(()));
        windows.record(0, 10 * S);
        // Shard 1 is another bucket: free at once.
        assert_eq!(windows.check(1, 10 * S), Ok(()));
        // Shard 2 shares bucket 0: 1 µs short of the window is too fast.
        let too_fast = windows.check(2, 15 * S - 1).expect_err("too fast");
        assert_eq!(too_fast.bucket, 0);
        assert_eq!(too_fast.gap, 5 * S - 1);
        assert_eq!(windows.check(2, 15 * S), Ok(()));
        // Out of arrival order is caught too.
        assert!(windows.check(2, 10 * S - 1).is_err());
    }

    #[test]
    fn rejected_identifies_do_not_move_the_window() {
        let mut windows = IdentifyWindows::new(5_000, 1);
        windows.record(0, 0);
        assert!(windows.check(0, 4 * S).is_err());
        assert!(windows.check(0, 5 * S).is_ok());
    }

    #[test]
    fn arrival_windows_are_per_key_and_say_when_to_retry() {
        let mut windows = ArrivalWindows::new(30_000);
        assert_eq!(windows.check(&7u64, 0), Ok(()));
        windows.record(7, 0);
        // Another key (another guild) is free at once.
        assert_eq!(windows.check(&8, S), Ok(()));
        let inside = windows.check(&7, 10 * S).expect_err("inside the window");
        assert_eq!(
            (inside.previous, inside.gap, inside.retry_after),
            (0, 10 * S, 20 * S)
        );
        // A refused request does not move the window.
        assert_eq!(windows.check(&7, 30 * S), Ok(()));
    }

    #[test]
    fn a_request_judged_late_is_checked_against_both_neighbours() {
        // Arrivals at 0 s, 10 s and 20 s are accepted (judged in that order); one that arrived
        // at 12 s but is judged only now is 2 s from its earlier neighbour, although the
        // latest arrival (20 s) is 8 s away.
        let mut windows = ArrivalWindows::new(5_000);
        for at in [0, 10 * S, 20 * S] {
            assert_eq!(windows.check(&0u32, at), Ok(()));
            windows.record(0, at);
        }
        let inside = windows.check(&0, 12 * S).expect_err("2 s after 10 s");
        assert_eq!((inside.previous, inside.gap), (10 * S, 2 * S));
        let inside = windows.check(&0, 17 * S).expect_err("3 s before 20 s");
        assert_eq!((inside.previous, inside.gap), (20 * S, 3 * S));
        assert_eq!(windows.check(&0, 15 * S), Ok(()));
        // Recorded out of order, it still sits between its neighbours.
        windows.record(0, 15 * S);
        assert!(windows.check(&0, 14 * S).is_err());
        assert!(windows.check(&0, 16 * S).is_err());
    }

    #[test]
    fn only_recent_windows_of_arrivals_are_kept() {
        let mut windows = ArrivalWindows::new(1);
        for i in 0..1_000 {
            windows.record(0u32, i * US_PER_MS);
        }
        let kept = windows.accepted.get(&0).map_or(0, BTreeSet::len) as u64;
        assert_eq!(kept, ArrivalWindows::<u32>::KEPT + 1);
    }

    #[test]
    fn heartbeats_later_than_interval_plus_slack_are_late() {
        assert_eq!(heartbeat_lateness(0, 1_250 * US_PER_MS, 1_000, 250), None);
        assert_eq!(
            heartbeat_lateness(0, 1_251 * US_PER_MS, 1_000, 250),
            Some(251 * US_PER_MS)
        );
        // Early heartbeats (an answer to op 1) are never late.
        assert_eq!(heartbeat_lateness(5 * S, 5 * S + 1, 1_000, 0), None);
    }

    #[test]
    fn budget_spends_refuses_when_empty_and_refills_after_the_period() {
        let mut budget = Budget::new(2, 2, 1_000, 0);
        assert_eq!(budget.spend(0), Spend::Granted { remaining: 1 });
        assert_eq!(budget.spend(1), Spend::Granted { remaining: 0 });
        assert_eq!(budget.spend(2), Spend::Exhausted);
        assert_eq!(budget.reset_after_ms(500 * US_PER_MS), 500);
        assert_eq!(budget.remaining(S), 2);
        assert_eq!(budget.reset_after_ms(S), 1_000);
        // Several periods later it is still aligned to the period.
        assert_eq!(budget.reset_after_ms(3_250 * US_PER_MS), 750);
    }

    #[test]
    fn send_limit_is_a_sliding_window() {
        let mut limiter = SendLimiter::new(120, 60_000);
        for i in 0..120 {
            assert!(limiter.admit(i * 1_000), "command {i}");
        }
        // The 121st inside the same 60 s breaks the rule...
        assert!(!limiter.clone().admit(59 * S));
        // ...but once the first has aged out of the window there is room for one.
        assert!(limiter.admit(60 * S));
        assert!(!limiter.admit(60 * S + 500));
    }

    #[test]
    fn tokens_match_with_or_without_the_bot_prefix() {
        assert!(token_matches(Some("abc"), "abc"));
        assert!(token_matches(Some("abc"), "Bot abc"));
        assert!(token_matches(Some("Bot abc"), "abc"));
        assert!(!token_matches(Some("abc"), "abd"));
        assert!(!token_matches(None, ""));
        assert!(token_matches(None, "anything"));
        assert!(authorization_matches(Some("abc"), Some("Bot abc")));
        assert!(!authorization_matches(Some("abc"), Some("abc")));
        assert!(!authorization_matches(Some("abc"), None));
    }

    #[test]
    fn identify_validation_maps_each_fault_to_its_close_code() {
        assert!(validate_identify(&identify([3, 8]), &policy()).is_ok());

        let mut bad_token = identify([0, 8]);
        bad_token.token = "nope".into();
        assert_eq!(
            rule_of(validate_identify(&bad_token, &policy())),
            (Rule::AuthenticationFailed, Some(4004))
        );
        let reset = IdentifyPolicy {
            token_reset: true,
            ..policy()
        };
        assert_eq!(
            rule_of(validate_identify(&identify([0, 8]), &reset)),
            (Rule::AuthenticationFailed, Some(4004))
        );
        assert_eq!(
            rule_of(validate_identify(&identify([8, 8]), &policy())),
            (Rule::InvalidShard, Some(4010))
        );
        assert_eq!(
            rule_of(validate_identify(&identify([0, 0]), &policy())),
            (Rule::InvalidShard, Some(4010))
        );
        let large = IdentifyPolicy {
            shard_multiple: 16,
            ..policy()
        };
        assert_eq!(
            rule_of(validate_identify(&identify([0, 8]), &large)),
            (Rule::InvalidShard, Some(4010))
        );
        // 10,000 guilds on 2 shards is 5,000 each.
        assert_eq!(
            rule_of(validate_identify(&identify([0, 2]), &policy())),
            (Rule::ShardingRequired, Some(4011))
        );
        assert!(validate_identify(&identify([0, 4]), &policy()).is_ok());

        let mut unknown = identify([0, 8]);
        unknown.intents = Some(1 << 30);
        assert_eq!(
            rule_of(validate_identify(&unknown, &policy())),
            (Rule::InvalidIntents, Some(4013))
        );
        let mut privileged = identify([0, 8]);
        privileged.intents = Some(INTENT_MESSAGE_CONTENT);
        let strict = IdentifyPolicy {
            privileged_allowed: 0,
            ..policy()
        };
        assert_eq!(
            rule_of(validate_identify(&privileged, &strict)),
            (Rule::DisallowedIntents, Some(4014))
        );
        assert!(validate_identify(&privileged, &policy()).is_ok());

        let mut threshold = identify([0, 8]);
        threshold.large_threshold = Some(251);
        assert_eq!(
            rule_of(validate_identify(&threshold, &policy())),
            (Rule::InvalidPayload, Some(4001))
        );
        let mut no_intents = identify([0, 8]);
        no_intents.intents = None;
        assert_eq!(
            rule_of(validate_identify(&no_intents, &policy())),
            (Rule::DecodeError, Some(4002))
        );
    }

    #[test]
    fn sessions_survive_resumable_closes_only() {
        assert!(session_survives_close(None));
        assert!(session_survives_close(Some(4000)));
        assert!(session_survives_close(Some(1006)));
        assert!(session_survives_close(Some(4008)));
        assert!(!session_survives_close(Some(1000)));
        assert!(!session_survives_close(Some(1001)));
        assert!(!session_survives_close(Some(4009)));
        assert!(!session_survives_close(Some(4004)));
    }

    #[test]
    fn resume_seq_must_be_sent_and_still_buffered() {
        assert_eq!(check_resume_seq(10, 10, 5), ResumeVerdict::Replay);
        assert_eq!(check_resume_seq(4, 10, 5), ResumeVerdict::Replay);
        assert_eq!(
            check_resume_seq(3, 10, 5),
            ResumeVerdict::Invalid { breach: None }
        );
        let ResumeVerdict::Invalid { breach: Some(b) } = check_resume_seq(11, 10, 5) else {
            panic!("a seq from the future is a breach");
        };
        assert_eq!(b.rule, Rule::InvalidResumeSeq);
    }

    #[test]
    fn routing_follows_the_sharding_formula() {
        let guild: u64 = 197_038_439_483_310_086;
        assert_eq!(shard_for_guild(guild, 1), 0);
        assert_eq!(shard_for_guild(guild, 16), ((guild >> 22) % 16) as u32);
        assert_eq!(bucket(17, 16), 1);
        assert_eq!(bucket(5, 0), 0);
    }

    #[test]
    fn heartbeat_deadline_allows_half_an_interval_of_slack() {
        assert_eq!(heartbeat_deadline(0, 41_250), 61_875 * US_PER_MS);
        assert_eq!(heartbeat_deadline(0, 500), 1_500 * US_PER_MS);
    }
}
