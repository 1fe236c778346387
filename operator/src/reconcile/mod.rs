//! The two arms of a reconcile, the Apply arm as steps with one job each (after stackable's
//! operators), run in this order by [`apply`]:
//! 1. [`dereference`]: the token and Redis password Secrets, Discord when a call is due, the pods
//!    (from the controller's pod store, [`crate::pod_cache`]);
//!    then [`bot_owner`]: the bot is claimed for this ShardSet (one ShardSet per bot).
//! 2. [`crate::reshard::total`]: the shard total the spec asks for now.
//! 3. [`crate::reshard::handover`]: the reshard step (layout roles, acknowledgements, budget in
//!    Redis), which says which layout the pods follow and what may be created or deleted.
//! 4. [`fatal_markers`]: a new token or new intents let shards refused for good try again.
//! 5. [`decide`]: the pods wanted and the plan to get there (no client).
//! 6. [`network_policy`]: the pods' NetworkPolicy (egress), before any pod exists to need it;
//!    [`fresh_epoch`]: a fresh bot's epoch settled before its first pods, when provably safe;
//!    then [`act`]: pod deletes and creates, force-deletes on lost nodes, with their Events.
//! 7. [`disruption_budget`]: the pods' PodDisruptionBudget, sized to the pods wanted now.
//! 8. [`update_status`]: the workers' reports from Redis; the status, written only if it changed.
//!
//! Then [`requeue_after`] says when to look again. A pass over an unchanged world writes nothing.
//! The Cleanup arm is [`cleanup`].

pub mod act;
pub mod bot_owner;
pub mod cleanup;
pub mod decide;
pub mod dereference;
pub mod disruption_budget;
pub mod fatal_markers;
pub mod fresh_epoch;
pub mod network_policy;
pub mod owned;
pub mod redis_secrets;
pub mod secrets;
pub mod update_status;

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use shardset_contract::layout_name;

use crate::context::Context;
use crate::crd::ShardSet;
use crate::error::Result;
use crate::names;
use crate::pods;
use crate::reshard::{handover, total};
use crate::status::{Observed, Problem};

/// Requeue while pods are starting, moving or blocked (watch events usually come first).
pub const REQUEUE_BUSY: Duration = Duration::from_secs(10);

/// The Apply arm: one pass of the steps above.
pub async fn apply(ss: &ShardSet, namespace: &str, ctx: &Context) -> Result<Action> {
    let name = ss.name_any();
    let key = format!("{namespace}/{name}");
    let spec = &ss.spec;

    let deref = dereference::dereference(ss, namespace, &key, ctx).await?;
    let mut problems = deref.problems.clone();
    if let (Some(app_id), Some(redis)) = (deref.app_id, deref.redis_target(ss)) {
        problems.extend(bot_owner::claim(ctx, &key, app_id, redis).await);
    }
    let image = pods::worker_image(ss, ctx.settings.worker_image.as_deref());
    if image.is_none() {
        problems.push(Problem::WorkerImageUnknown(
            "spec.image is not set and the operator has no default worker image: set spec.image, or the operator chart's workerImage (the operator's --worker-image)".into(),
        ));
    }

    let shard_total = total::shard_total(
        spec,
        ss.status.as_ref(),
        deref.lookup.facts.as_ref(),
        Timestamp::now().as_second(),
    );
    problems.extend(total::unknown_total(&shard_total, spec, &problems));
    let total = shard_total.total;

    let pods = dereference::list_pods(ss, namespace, &key, ctx).await?;
    let blocked = total.is_none() || problems.iter().any(Problem::blocks_pods);

    // The reshard (docs/resharding.md): which layout the pods follow, what may be created or
    // deleted, and the next roles document in Redis.
    let reshard = match (total, blocked) {
        (Some(total), false) => Some(
            handover::pass(
                ctx,
                handover::Args {
                    ss,
                    key: &key,
                    total,
                    observed: &pods.observed,
                    app_id: deref.app_id,
                    redis: deref.redis_target(ss),
                    token: deref.token.as_ref(),
                    token_desc: &deref.token_desc,
                    lookup: &deref.lookup,
                    auto_hold: shard_total.held.clone(),
                },
            )
            .await,
        ),
        _ => None,
    };
    problems.extend(reshard.as_ref().and_then(|r| r.problem.clone()));

    if let (Some(app_id), Some(token), Some(redis)) =
        (deref.app_id, deref.token.as_ref(), deref.redis_target(ss))
    {
        fatal_markers::clear_on_new_basis(ctx, ss, app_id, token, redis).await;
    }

    let decided = decide::decide(
        ss,
        image,
        deref.token.as_ref(),
        total,
        reshard.as_ref(),
        &pods,
        blocked,
    )?;
    problems.extend(decided.pods_failing.clone());

    if !decided.desired.is_empty() && ctx.settings.worker_network_policy {
        problems.extend(network_policy::keep(ctx, ss, namespace).await);
    }
    fresh_epoch::settle_before_first_pods(
        ctx,
        ss,
        &key,
        deref.app_id,
        deref.redis_target(ss),
        &pods,
        !decided.desired.is_empty(),
    )
    .await;
    let recheck_stuck = act::act(ss, namespace, ctx, &decided, &pods).await?;
    if !decided.desired.is_empty() {
        problems.extend(disruption_budget::keep(ctx, ss, namespace, &decided.plan.progress).await);
    }

    let reports =
        update_status::shard_reports(ctx, ss, &deref, decided.plan_total, reshard.as_ref()).await;
    problems.extend(reports.problem);
    let observed = Observed {
        generation: ss.metadata.generation,
        total,
        target_layout: total.map(layout_name),
        progress: decided.plan.progress.clone(),
        problems: &problems,
        gateway: deref.lookup.facts.as_ref(),
        max_concurrency_override: spec.max_concurrency,
        application_id: deref.app_id,
        guilds: reports.guilds,
        healing_shards: reports.healing,
        selector: names::shardset_pods_selector(&name),
        shards_per_pod: spec.shards_per_pod,
        reshard: reshard.as_ref().and_then(|r| r.report.clone()),
        bus: reports.bus,
    };
    update_status::update_status(ctx, ss, namespace, &observed).await?;

    let busy = blocked || !decided.plan.is_noop() || !decided.plan.progress.settled();
    Ok(Action::requeue(requeue_after(Requeue {
        busy,
        resync: ctx.settings.resync,
        discord_due: deref.token.is_some().then_some(deref.lookup.next_call_in),
        stuck_recheck: recheck_stuck,
        reshard: reshard.as_ref().and_then(|r| r.requeue),
    })))
}

/// What decides when a pass looks again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requeue {
    /// Pods are starting, moving or blocked.
    pub busy: bool,
    /// The period of a settled ShardSet.
    pub resync: Duration,
    /// When the next Discord call is due (with a token).
    pub discord_due: Option<Duration>,
    /// When a terminating pod may turn out stuck on a lost node.
    pub stuck_recheck: Option<Duration>,
    /// What the reshard step asks (acknowledgements arrive in Redis, not as watch events).
    pub reshard: Option<Duration>,
}

/// The soonest of what `r` asks; a Discord call due now still waits a second.
pub fn requeue_after(r: Requeue) -> Duration {
    let base = if r.busy { REQUEUE_BUSY } else { r.resync };
    [
        r.discord_due.map(|d| d.max(Duration::from_secs(1))),
        r.stuck_recheck,
        r.reshard,
    ]
    .into_iter()
    .flatten()
    .fold(base, Duration::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLED: Requeue = Requeue {
        busy: false,
        resync: Duration::from_secs(60),
        discord_due: None,
        stuck_recheck: None,
        reshard: None,
    };

    #[test]
    fn a_settled_shardset_waits_the_resync_and_a_busy_one_less() {
        assert_eq!(requeue_after(SETTLED), Duration::from_secs(60));
        let busy = Requeue {
            busy: true,
            ..SETTLED
        };
        assert_eq!(requeue_after(busy), REQUEUE_BUSY);
    }

    #[test]
    fn the_soonest_reason_wins_and_discord_never_spins() {
        let r = Requeue {
            discord_due: Some(Duration::from_secs(30)),
            stuck_recheck: Some(Duration::from_secs(20)),
            ..SETTLED
        };
        assert_eq!(requeue_after(r), Duration::from_secs(20));
        let r = Requeue {
            reshard: Some(Duration::from_millis(300)),
            ..r
        };
        assert_eq!(requeue_after(r), Duration::from_millis(300));
        let due_now = Requeue {
            discord_due: Some(Duration::ZERO),
            ..SETTLED
        };
        assert_eq!(requeue_after(due_now), Duration::from_secs(1));
    }
}
