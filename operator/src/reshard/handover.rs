//! The reshard part of one reconcile pass, around the pure [`crate::reshard::decide::decide`]: read the
//! roles, the shards' status records, the budget and the time from Redis (one pipeline), decide,
//! check the budget on a fresh answer from Discord before a reshard starts, and write the next
//! roles document by compare-and-set. Events and metrics for every step.
//!
//! When the bot's Redis cannot be used (no application id yet, no password, unreachable), the
//! pass falls back to what needs no roles: a single layout runs as before; with other layouts
//! around, nothing is created or deleted until Redis answers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kube::runtime::events::EventType;
use shardset_contract::token::Token;
use shardset_contract::{LayoutRoles, Role, ShardStatus, layout_name};
use tracing::{info, warn};

use crate::context::Context;
use crate::crd::{HandoverSpec, ShardSet};
use crate::discord::Lookup;
use crate::plan::ObservedPod;
use crate::redis_state::RedisTarget;
use crate::reshard::decide::decide;
use crate::reshard::decision::{Decision, Inputs, Phase};
use crate::reshard::views::{LayoutView, acting, views};
use crate::status::{Problem, ReshardReport, condition};

/// Requeue while a reshard is under way: acknowledgements arrive in Redis, not as watch events.
pub const REQUEUE_HANDOVER: Duration = Duration::from_millis(300);
/// Requeue right after writing a step, to act on it.
pub const REQUEUE_AFTER_WRITE: Duration = Duration::from_millis(100);
/// A reshard starts only on a `/gateway/bot` answer at most this old.
pub const BUDGET_MAX_AGE: Duration = Duration::from_secs(30);

/// What the pass needs from the reconcile.
pub struct Args<'a> {
    pub ss: &'a ShardSet,
    /// `namespace/name`, the Discord cache key.
    pub key: &'a str,
    pub total: u32,
    pub observed: &'a [ObservedPod],
    pub app_id: Option<u64>,
    /// The bot's Redis; `None` when a Secret it needs is missing (Redis cannot be used).
    pub redis: Option<RedisTarget<'a>>,
    pub token: Option<&'a Token>,
    pub token_desc: &'a str,
    pub lookup: &'a Lookup,
    /// Set when `autoShards` holds Discord's recommendation back (appended to the message).
    pub auto_hold: Option<String>,
}

/// The outcome of the pass.
pub struct Pass {
    pub decision: Decision,
    /// `None` when the roles could not be read.
    pub report: Option<ReshardReport>,
    /// Status records read (by layout), for the guild count and failed shards.
    pub statuses: Option<BTreeMap<u32, Vec<Option<ShardStatus>>>>,
    pub requeue: Option<Duration>,
    pub problem: Option<Problem>,
}

/// Runs the reshard part of a pass.
pub async fn pass(ctx: &Context, a: Args<'_>) -> Pass {
    let spec = &a.ss.spec;
    let layouts: BTreeSet<u32> = a
        .observed
        .iter()
        .filter(|p| p.owned && p.range.is_some())
        .filter_map(|p| p.layout.as_deref()?.parse().ok())
        .chain([a.total])
        .collect();
    let others = layouts.iter().any(|l| *l != a.total);
    let (Some(app_id), Some(redis)) = (a.app_id, a.redis) else {
        return fallback(a.total, others, None);
    };
    let totals: Vec<u32> = layouts.iter().copied().collect();
    let state = match ctx.redis.reshard_state(redis, app_id, &totals).await {
        Ok(state) => state,
        Err(error) => {
            return fallback(
                a.total,
                others,
                Some(Problem::RedisUnreachable(error.to_string())),
            );
        }
    };
    let doc = match &state.roles {
        Ok(doc) => doc.clone(),
        Err(malformed) => {
            // Never overwrite what we cannot read: a person may be repairing it.
            return Pass {
                statuses: Some(state.statuses.clone()),
                ..fallback(
                    a.total,
                    true,
                    Some(Problem::RedisUnreachable(malformed.clone())),
                )
            };
        }
    };

    let views = views(a.observed, &state.statuses, a.total);
    let window_ms = HandoverSpec::window_ms(spec.handover.as_ref());
    let remaining = |lookup: &Lookup| {
        let discord = lookup.facts.as_ref().map(|f| f.session_remaining);
        match (discord, state.budget) {
            (Some(d), Some(b)) => Some(d.min(b)),
            (d, b) => d.or(b),
        }
    };
    let inputs = Inputs {
        target: a.total,
        strategy: spec.reshard_strategy,
        doc: doc.as_ref(),
        layouts: &views,
        remaining: remaining(a.lookup),
        reserve: spec.identify_reserve,
        now_ms: state.now_ms,
        window_ms,
    };
    let mut decision = decide(&inputs);
    if decision.starts
        && let Some(token) = a.token
    {
        // The budget decides whether anything starts: ask Discord again unless just asked.
        let fresh = ctx
            .discord
            .lookup_fresh(a.key, spec.api_url(), token, a.token_desc, BUDGET_MAX_AGE)
            .await;
        decision = decide(&Inputs {
            remaining: remaining(&fresh),
            ..inputs.clone()
        });
    }

    let mut requeue = decision.phase.in_progress().then_some(REQUEUE_HANDOVER);
    let mut problem = None;
    if let Some(next) = &decision.write {
        let expected = doc.as_ref().map_or(0, |d| d.revision);
        match ctx.redis.write_roles(redis, app_id, expected, next).await {
            Ok(true) => {
                requeue = Some(REQUEUE_AFTER_WRITE);
                if next.revision != expected {
                    announce_step(ctx, a.ss, doc.as_ref(), next, &decision, state.now_ms).await;
                }
            }
            Ok(false) => {
                info!(expected, "roles changed under us; deciding again");
                requeue = Some(REQUEUE_AFTER_WRITE);
            }
            Err(error) => {
                warn!(%error, "cannot write the layout roles");
                problem = Some(Problem::RedisUnreachable(error.to_string()));
                // Act as if nothing changed: the gates of this decision assumed the write.
                decision.create = false;
                decision.delete.clear();
                requeue = Some(REQUEUE_HANDOVER);
            }
        }
    }
    if decision.phase.refused() && previous_reason(a.ss) != Some(decision.phase.reason()) {
        warn!(reason = decision.phase.reason(), message = %decision.message, "reshard refused");
        ctx.metrics.reshard_step(decision.phase.reason());
        ctx.publish(
            a.ss,
            EventType::Warning,
            decision.phase.reason(),
            "Reshard",
            decision.message.clone(),
        )
        .await;
    }

    let mut message = decision.message.clone();
    if let Some(hold) = &a.auto_hold {
        message.push_str("; ");
        message.push_str(hold);
    }
    let report = ReshardReport {
        phase: decision.phase,
        message,
        handover: decision.handover.clone(),
        revision: doc.as_ref().map(|d| d.revision),
        current: current_layout(doc.as_ref(), &views, a.total),
        acting: acting(doc.as_ref(), &views),
    };
    Pass {
        decision,
        report: Some(report),
        statuses: Some(state.statuses),
        requeue,
        problem,
    }
}

/// The pass without Redis: one layout runs as before; several wait.
fn fallback(total: u32, others: bool, problem: Option<Problem>) -> Pass {
    let decision = Decision {
        layout: total,
        create: !others,
        delete: Vec::new(),
        write: None,
        phase: Phase::Idle,
        message: String::new(),
        handover: None,
        starts: false,
    };
    Pass {
        decision,
        report: None,
        statuses: None,
        requeue: others.then_some(Duration::from_secs(5)),
        problem,
    }
}

/// The layout acting on events now.
fn current_layout(doc: Option<&LayoutRoles>, views: &[LayoutView], target: u32) -> Option<String> {
    let running = |name: &str| {
        views
            .iter()
            .any(|v| layout_name(v.total) == name && v.pods > 0)
    };
    match doc {
        None => running(&layout_name(target)).then(|| layout_name(target)),
        Some(doc) => {
            if let Some(from) = doc.from.as_deref()
                && LayoutRoles::role_of(Some(doc), from).may_act()
            {
                return Some(from.to_owned());
            }
            doc.roles
                .iter()
                .filter(|(name, role)| **role == Role::Active && running(name))
                .map(|(name, _)| name.clone())
                .next()
        }
    }
}

/// The `Resharding` reason in the ShardSet's last status.
fn previous_reason(ss: &ShardSet) -> Option<&str> {
    ss.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == condition::RESHARDING)
        .map(|c| c.reason.as_str())
}

/// A Normal Event, a log line and the metrics for a step written.
async fn announce_step(
    ctx: &Context,
    ss: &ShardSet,
    before: Option<&LayoutRoles>,
    after: &LayoutRoles,
    decision: &Decision,
    now_ms: u64,
) {
    let roles: Vec<String> = after
        .roles
        .iter()
        .map(|(layout, role)| format!("{layout}: {}", role.label()))
        .collect();
    let finished = before.is_some_and(|b| b.to.is_some()) && after.to.is_none();
    let (reason, note) = if finished && decision.phase != Phase::Abandoning {
        if let Some(started) = before.and_then(|b| b.started_at_ms) {
            ctx.metrics
                .reshard_finished(Duration::from_millis(now_ms.saturating_sub(started)));
        }
        (
            "HandedOver",
            format!(
                "layout {} acts on every event now; the old layout's pods go next (roles revision {}: {})",
                after
                    .roles
                    .iter()
                    .find(|(_, r)| **r == Role::Active)
                    .map_or("?", |(l, _)| l.as_str()),
                after.revision,
                roles.join(", ")
            ),
        )
    } else {
        (
            decision.phase.reason(),
            format!(
                "{} (roles revision {}: {})",
                decision.message,
                after.revision,
                roles.join(", ")
            ),
        )
    };
    info!(revision = after.revision, roles = %roles.join(", "), reason, "layout roles written");
    ctx.metrics.reshard_step(reason);
    ctx.publish(ss, EventType::Normal, reason, "Reshard", note)
        .await;
}
