//! The shard total a pass works toward, without a client: `spec.shards` when set; with
//! `spec.autoShards`, Discord's recommendation turned into a total ([`auto_total`]) and held back
//! to one change per `minReshardIntervalSeconds` ([`auto_target`]); the last known total while
//! Discord has not answered; and the `ShardCountUnknown` problem when there is none at all.

use k8s_openapi::jiff::Timestamp;

use crate::crd::{ShardSetSpec, ShardSetStatus};
use crate::status::{GatewayFacts, Problem};

/// The shard total of one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardTotal {
    /// `None` with `autoShards` before Discord ever gave a recommendation.
    pub total: Option<u32>,
    /// Why `autoShards` holds Discord's recommendation back, when it does (appended to the
    /// reshard message in the status).
    pub held: Option<String>,
}

/// The total the spec asks for now. `status` is the ShardSet's last status (the current total
/// and when it changed), `facts` the last `/gateway/bot` answer, `now_s` the time in seconds.
pub fn shard_total(
    spec: &ShardSetSpec,
    status: Option<&ShardSetStatus>,
    facts: Option<&GatewayFacts>,
    now_s: i64,
) -> ShardTotal {
    let current = status.and_then(|s| s.shards);
    match (spec.shards, &spec.auto_shards) {
        (Some(total), _) => ShardTotal {
            total: Some(total),
            held: None,
        },
        (None, Some(auto)) => {
            let Some(facts) = facts else {
                return ShardTotal {
                    total: current,
                    held: None,
                };
            };
            let recommended = auto_total(
                facts.recommended_shards,
                spec.max_concurrency.unwrap_or(facts.max_concurrency),
                auto.guilds_per_shard,
            );
            let since = status
                .and_then(|s| s.layout.as_ref())
                .and_then(|l| l.target_since.as_ref())
                .map(|t| t.0.as_second());
            let (total, held_until) = auto_target(
                recommended,
                current,
                since,
                now_s,
                auto.min_reshard_interval_seconds,
            );
            ShardTotal {
                total: Some(total),
                held: held_until.map(|until| {
                    format!(
                        "autoShards: Discord's recommendation gives {recommended} shards; the next automatic reshard may start at {} (spec.autoShards.minReshardIntervalSeconds)",
                        Timestamp::from_second(until)
                            .map_or_else(|_| until.to_string(), |t| t.to_string())
                    )
                }),
            }
        }
        (None, None) => ShardTotal::default(),
    }
}

/// `ShardCountUnknown` when there is no total and nothing else already explains why no pod runs
/// (`problems`: those found so far in the pass).
pub fn unknown_total(
    total: &ShardTotal,
    spec: &ShardSetSpec,
    problems: &[Problem],
) -> Option<Problem> {
    (total.total.is_none() && !problems.iter().any(Problem::blocks_pods)).then(|| {
        Problem::ShardCountUnknown(format!(
            "spec.autoShards needs Discord's recommended shard count from {}/v10/gateway/bot, which the operator could not read yet",
            spec.api_url()
        ))
    })
}

/// The shard total for `autoShards`: enough shards that each holds about `guilds_per_shard`
/// guilds, given that Discord recommends one shard per 1,000 guilds, never fewer than Discord
/// recommends, and a multiple of `max_concurrency` for large bots (Discord requires it; a wrong
/// count closes with 4010).
pub fn auto_total(recommended: u32, max_concurrency: u32, guilds_per_shard: u32) -> u32 {
    let guilds = u64::from(recommended.max(1)) * 1000;
    let by_target = guilds.div_ceil(u64::from(guilds_per_shard.max(1)));
    let total = u32::try_from(by_target)
        .unwrap_or(u32::MAX)
        .max(recommended)
        .max(1);
    if max_concurrency > 1 {
        total
            .div_ceil(max_concurrency)
            .saturating_mul(max_concurrency)
    } else {
        total
    }
}

/// The shard total `autoShards` asks for now: Discord's recommendation (`recommended_total`,
/// already turned into a total), unless the current total changed less than `interval_s` ago.
/// Returns the total and, when the recommendation is held back, when it may apply.
pub fn auto_target(
    recommended_total: u32,
    current: Option<u32>,
    current_since_s: Option<i64>,
    now_s: i64,
    interval_s: u32,
) -> (u32, Option<i64>) {
    match (current, current_since_s) {
        (Some(current), Some(since)) if current != recommended_total => {
            let allowed_at = since.saturating_add(i64::from(interval_s));
            if now_s < allowed_at {
                (current, Some(allowed_at))
            } else {
                (recommended_total, None)
            }
        }
        (Some(current), None) if current != recommended_total => {
            // No record of when it changed (a status from an older operator): wait one period.
            (current, Some(now_s.saturating_add(i64::from(interval_s))))
        }
        _ => (recommended_total, None),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::crd::LayoutStatus;

    const DAY: i64 = 86_400;

    fn spec(json: serde_json::Value) -> ShardSetSpec {
        let mut base = serde_json::json!({
            "image": "worker:dev",
            "tokenSecretRef": {"name": "bot-token"},
            "redis": {"url": "redis://redis:6379"},
        });
        if let (Some(base), Some(more)) = (base.as_object_mut(), json.as_object()) {
            base.extend(more.clone());
        }
        serde_json::from_value(base).expect("spec")
    }

    fn auto() -> ShardSetSpec {
        spec(serde_json::json!({"autoShards": {"guildsPerShard": 1000}}))
    }

    fn facts(recommended: u32) -> GatewayFacts {
        GatewayFacts {
            recommended_shards: recommended,
            max_concurrency: 1,
            session_total: 1000,
            session_remaining: 1000,
            reset_at: Timestamp::UNIX_EPOCH,
        }
    }

    fn status(shards: u32, since_s: i64) -> ShardSetStatus {
        ShardSetStatus {
            shards: Some(shards),
            layout: Some(LayoutStatus {
                target: shards.to_string(),
                target_since: Some(Time(Timestamp::from_second(since_s).expect("time"))),
                ..LayoutStatus::default()
            }),
            ..ShardSetStatus::default()
        }
    }

    #[test]
    fn a_fixed_total_is_the_total() {
        let fixed = spec(serde_json::json!({"shards": 12}));
        let t = shard_total(&fixed, Some(&status(16, 0)), Some(&facts(3)), 10);
        assert_eq!(
            t,
            ShardTotal {
                total: Some(12),
                held: None
            }
        );
        assert_eq!(unknown_total(&t, &fixed, &[]), None);
    }

    #[test]
    fn auto_shards_take_discords_recommendation_once_known() {
        let t = shard_total(&auto(), None, Some(&facts(9)), 10);
        assert_eq!(
            t,
            ShardTotal {
                total: Some(9),
                held: None
            }
        );
        // Not known yet: the last total, or none (a problem unless something else blocks).
        let t = shard_total(&auto(), Some(&status(16, 0)), None, 10);
        assert_eq!(t.total, Some(16));
        let t = shard_total(&auto(), None, None, 10);
        assert_eq!(t, ShardTotal::default());
        let problem = unknown_total(&t, &auto(), &[]).expect("a problem");
        assert_eq!(problem.reason(), "ShardCountUnknown");
        assert!(
            problem
                .message()
                .contains("https://discord.com/api/v10/gateway/bot"),
            "{}",
            problem.message()
        );
        let blocked = [Problem::InvalidToken("401".into())];
        assert_eq!(
            unknown_total(&t, &auto(), &blocked),
            None,
            "the 401 says why"
        );
    }

    #[test]
    fn auto_shards_hold_a_new_recommendation_back_and_say_until_when() {
        let t = shard_total(
            &auto(),
            Some(&status(16, 1_000)),
            Some(&facts(32)),
            1_000 + 3_600,
        );
        assert_eq!(t.total, Some(16));
        let held = t.held.expect("held back");
        assert!(held.contains("gives 32 shards"), "{held}");
        let until = Timestamp::from_second(1_000 + DAY)
            .expect("time")
            .to_string();
        assert!(held.contains(&until), "{held}");
        let t = shard_total(
            &auto(),
            Some(&status(16, 1_000)),
            Some(&facts(32)),
            1_000 + DAY,
        );
        assert_eq!(
            t,
            ShardTotal {
                total: Some(32),
                held: None
            }
        );
    }

    #[test]
    fn auto_total_follows_the_target() {
        assert_eq!(auto_total(9, 1, 1000), 9);
        assert_eq!(auto_total(9, 1, 500), 18);
        assert_eq!(
            auto_total(9, 1, 2500),
            9,
            "never below Discord's recommendation"
        );
        assert_eq!(auto_total(1, 1, 1000), 1);
        assert_eq!(auto_total(0, 1, 1000), 1);
        assert_eq!(
            auto_total(150, 16, 1000),
            160,
            "a multiple of max_concurrency"
        );
    }

    #[test]
    fn auto_shards_follow_discord_at_most_once_per_interval() {
        let day = 86_400;
        // Same total: nothing to hold back.
        assert_eq!(auto_target(16, Some(16), Some(0), 10, day), (16, None));
        // First start: Discord's number at once.
        assert_eq!(auto_target(16, None, None, 10, day), (16, None));
        // Changed 1 h ago: held until a day has passed since.
        assert_eq!(
            auto_target(32, Some(16), Some(1_000), 1_000 + 3_600, day),
            (16, Some(1_000 + day as i64))
        );
        // A day later: the new total.
        assert_eq!(
            auto_target(32, Some(16), Some(1_000), 1_000 + day as i64, day),
            (32, None)
        );
    }
}
