//! What the operator asks Discord, per ShardSet: the bot's id (`GET /users/@me`, once per token)
//! and `GET /gateway/bot` (recommended shards, `max_concurrency`, session start budget).
//!
//! Calls are made on a schedule, never on every reconcile: after a success the answer is reused
//! for [`REFRESH`] (Discord: "do not cache it for long", and the budget moves as workers
//! Identify); after an error we back off exponentially up to [`MAX_BACKOFF`]; a 429 waits the
//! `retry_after` Discord gives; a 401 waits [`UNAUTHORIZED_RETRY`] unless the token changes
//! (every 401 counts toward Discord's invalid-request limit). A change of token or REST base
//! starts afresh. The token itself is never stored here, only a fingerprint to notice a change.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use shardset_contract::rest::{DiscordRest, GatewayBot, RestError};
use shardset_contract::token::Token;

use crate::metrics::Metrics;
use crate::status::{GatewayFacts, Problem};

/// How long a good `/gateway/bot` answer is used before asking again.
pub const REFRESH: Duration = Duration::from_secs(300);
/// First retry after an error; doubles per consecutive failure.
pub const MIN_BACKOFF: Duration = Duration::from_secs(5);
/// Longest wait between retries after errors.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Retry period after a 401 while the token stays the same.
pub const UNAUTHORIZED_RETRY: Duration = Duration::from_secs(600);

/// What is known of one ShardSet's bot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    /// The last good `/gateway/bot` answer (kept through later errors other than a 401).
    pub facts: Option<GatewayFacts>,
    /// The bot's user id, which keys its Redis state.
    pub app_id: Option<u64>,
    /// The last call's failure, if it failed.
    pub problem: Option<Problem>,
    /// When the next call is due.
    pub next_call_in: Duration,
}

#[derive(Debug, Clone)]
struct Entry {
    token_fingerprint: u64,
    base: String,
    app_id: Option<u64>,
    facts: Option<GatewayFacts>,
    problem: Option<Problem>,
    next_call: Instant,
    failures: u32,
    /// When `facts` were read.
    fetched_at: Option<Instant>,
}

/// Per-ShardSet Discord state, shared by all reconciles.
pub struct Discord {
    entries: Mutex<HashMap<String, Entry>>,
    metrics: Arc<Metrics>,
}

impl Discord {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Returns what is known for `key` (`namespace/name`), calling Discord first when a call is
    /// due. `secret` names where the token came from, for messages.
    pub async fn lookup(&self, key: &str, base: &str, token: &Token, secret: &str) -> Lookup {
        self.lookup_within(key, base, token, secret, None).await
    }

    /// Like [`Discord::lookup`], but also calls when the last good answer is older than
    /// `max_age` (a reshard checks the session start budget on a fresh answer). Error backoffs
    /// and `retry_after` are still honoured.
    pub async fn lookup_fresh(
        &self,
        key: &str,
        base: &str,
        token: &Token,
        secret: &str,
        max_age: Duration,
    ) -> Lookup {
        self.lookup_within(key, base, token, secret, Some(max_age))
            .await
    }

    async fn lookup_within(
        &self,
        key: &str,
        base: &str,
        token: &Token,
        secret: &str,
        max_age: Option<Duration>,
    ) -> Lookup {
        let now = Instant::now();
        let fingerprint = fingerprint(token);
        let entry = {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            let fresh = Entry {
                token_fingerprint: fingerprint,
                base: base.to_owned(),
                app_id: None,
                facts: None,
                problem: None,
                next_call: now,
                failures: 0,
                fetched_at: None,
            };
            let entry = entries
                .entry(key.to_owned())
                .or_insert_with(|| fresh.clone());
            if entry.token_fingerprint != fingerprint || entry.base != base {
                *entry = fresh;
            }
            entry.clone()
        };
        let stale = max_age.is_some_and(|max| {
            entry.failures == 0
                && entry
                    .fetched_at
                    .is_none_or(|at| now.duration_since(at) > max)
        });
        if now < entry.next_call && !stale {
            return lookup_of(&entry, now);
        }

        let entry = self.call(entry, base, token, secret).await;
        let lookup = lookup_of(&entry, Instant::now());
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert(key.to_owned(), entry);
        lookup
    }

    /// What is known for `key` without calling Discord (for cleanup after the Secret is gone).
    pub fn cached_app_id(&self, key: &str) -> Option<u64> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).and_then(|e| e.app_id)
    }

    /// Drops the state of a deleted ShardSet.
    pub fn forget(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(key);
    }

    async fn call(&self, mut entry: Entry, base: &str, token: &Token, secret: &str) -> Entry {
        let result = async {
            let rest = DiscordRest::new(base, token.clone())?;
            if entry.app_id.is_none() {
                let user = rest.current_user().await;
                self.metrics
                    .discord_request("users/@me", result_label(&user));
                entry.app_id = Some(user?.id);
            }
            let gateway = rest.gateway_bot().await;
            self.metrics
                .discord_request("gateway/bot", result_label(&gateway));
            gateway
        }
        .await;
        let now = Instant::now();
        match result {
            Ok(gateway) => {
                entry.facts = Some(facts(&gateway, Timestamp::now()));
                entry.problem = None;
                entry.failures = 0;
                entry.next_call = now + REFRESH;
                entry.fetched_at = Some(now);
            }
            Err(error) => {
                entry.failures = entry.failures.saturating_add(1);
                entry.next_call = now + retry_after(&error, entry.failures);
                if matches!(error, RestError::Unauthorized) {
                    entry.facts = None;
                }
                entry.problem = Some(problem(&error, base, secret, entry.next_call - now));
            }
        }
        entry
    }
}

fn lookup_of(entry: &Entry, now: Instant) -> Lookup {
    Lookup {
        facts: entry.facts.clone(),
        app_id: entry.app_id,
        problem: entry.problem.clone(),
        next_call_in: entry.next_call.saturating_duration_since(now),
    }
}

fn result_label<T>(result: &Result<T, RestError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.metric_label(),
    }
}

/// A fingerprint of the token, to notice that it changed without keeping it.
fn fingerprint(token: &Token) -> u64 {
    let mut hasher = DefaultHasher::new();
    token.expose().hash(&mut hasher);
    hasher.finish()
}

/// `/gateway/bot` as status facts; `reset_after` (ms) is turned into an instant.
pub fn facts(gateway: &GatewayBot, fetched_at: Timestamp) -> GatewayFacts {
    let limit = gateway.session_start_limit;
    let reset_after =
        SignedDuration::from_millis(i64::try_from(limit.reset_after).unwrap_or(i64::MAX));
    GatewayFacts {
        recommended_shards: gateway.shards,
        max_concurrency: limit.max_concurrency,
        session_total: limit.total,
        session_remaining: limit.remaining,
        reset_at: fetched_at.checked_add(reset_after).unwrap_or(fetched_at),
    }
}

/// How long to wait before the next call after `error`, the `failures`-th in a row.
pub fn retry_after(error: &RestError, failures: u32) -> Duration {
    match error {
        RestError::RateLimited { retry_after } => (*retry_after).max(Duration::from_secs(1)),
        RestError::Unauthorized => UNAUTHORIZED_RETRY,
        _ => {
            let exp = failures.saturating_sub(1).min(16);
            MIN_BACKOFF.saturating_mul(1 << exp).min(MAX_BACKOFF)
        }
    }
}

/// The status problem for a failed call. Messages name the Secret, never its content.
fn problem(error: &RestError, base: &str, secret: &str, retry: Duration) -> Problem {
    let retry = retry.as_secs();
    match error {
        RestError::Unauthorized => Problem::InvalidToken(format!(
            "Discord at {base} refused the bot token in {secret} (401 Unauthorized): put the bot's current token there; no pods are created until it is accepted"
        )),
        RestError::RateLimited { .. } => Problem::DiscordRateLimited(format!(
            "Discord at {base} rate limited the operator; next request in {retry}s"
        )),
        // No countdown in the message: it would change the status at every retry.
        other => Problem::GatewayUnreachable(format!(
            "{other}; the operator retries with backoff, at most {} s apart",
            MAX_BACKOFF.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardset_contract::rest::SessionStartLimit;

    #[test]
    fn backoff_grows_and_is_capped() {
        let unreachable = RestError::Unreachable {
            base: "http://x".into(),
            reason: "refused".into(),
        };
        assert_eq!(retry_after(&unreachable, 1), Duration::from_secs(5));
        assert_eq!(retry_after(&unreachable, 2), Duration::from_secs(10));
        assert_eq!(retry_after(&unreachable, 4), Duration::from_secs(40));
        assert_eq!(retry_after(&unreachable, 30), MAX_BACKOFF);
    }

    #[test]
    fn rate_limits_wait_as_told_and_401_waits_long() {
        let limited = RestError::RateLimited {
            retry_after: Duration::from_secs(42),
        };
        assert_eq!(retry_after(&limited, 1), Duration::from_secs(42));
        let tiny = RestError::RateLimited {
            retry_after: Duration::from_millis(1),
        };
        assert_eq!(
            retry_after(&tiny, 1),
            Duration::from_secs(1),
            "never a hot loop"
        );
        assert_eq!(retry_after(&RestError::Unauthorized, 1), UNAUTHORIZED_RETRY);
    }

    #[test]
    fn problems_name_the_secret_but_hold_no_token() {
        let p = problem(
            &RestError::Unauthorized,
            "http://fake/api",
            "Secret \"bot-token\" key \"token\"",
            UNAUTHORIZED_RETRY,
        );
        assert_eq!(p.reason(), "InvalidToken");
        assert!(p.message().contains("bot-token"));
        assert!(p.blocks_pods());
        let p = problem(
            &RestError::RateLimited {
                retry_after: Duration::from_secs(3),
            },
            "http://fake/api",
            "s",
            Duration::from_secs(3),
        );
        assert_eq!(p.reason(), "DiscordRateLimited");
        assert!(!p.blocks_pods());
    }

    #[test]
    fn facts_turn_reset_after_into_an_instant() {
        let gateway = GatewayBot {
            url: "wss://gateway.discord.gg".into(),
            shards: 9,
            session_start_limit: SessionStartLimit {
                total: 1000,
                remaining: 990,
                reset_after: 60_000,
                max_concurrency: 1,
            },
        };
        let at = Timestamp::from_second(1_800_000_000).expect("time");
        let f = facts(&gateway, at);
        assert_eq!(
            f.reset_at,
            Timestamp::from_second(1_800_000_060).expect("time")
        );
        assert_eq!((f.recommended_shards, f.session_remaining), (9, 990));
    }

    #[test]
    fn token_fingerprint_notices_a_change() {
        assert_eq!(
            fingerprint(&Token::new("a")),
            fingerprint(&Token::new("Bot a"))
        );
        assert_ne!(fingerprint(&Token::new("a")), fingerprint(&Token::new("b")));
    }
}
