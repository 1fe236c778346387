//! The last step of a pass: what the workers report in Redis (guilds, shards closed for good,
//! shards healing a silent connection),
//! then the status built from everything the pass saw, applied only when it differs from the
//! stored one (an unchanged world writes nothing), with an Event when the `Degraded` reason
//! changes; the per-ShardSet gauges follow the status built, written or not.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use crate::apply;
use crate::context::Context;
use crate::crd::{ShardSet, ShardSetStatus};
use crate::reconcile::dereference::Dereferenced;
use crate::redis_state;
use crate::reshard::handover::Pass;
use crate::shardset_gauges;
use crate::status::{self, BusReport, Observed, Problem};
use crate::text::summarize_list;

/// Why the status could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot apply the ShardSet status: {0}")]
    Apply(#[source] kube::Error),
}

impl StatusError {
    /// A fixed label for `reconcile_failures_total`: an API call failed.
    pub fn metric_label(&self) -> &'static str {
        "kube"
    }
}

/// What the workers report for the layout of `total`.
#[derive(Debug, Default)]
pub struct ShardReports {
    /// The guilds its shards hold.
    pub guilds: Option<u64>,
    /// Shards closed for good, or Redis that cannot be read.
    pub problem: Option<Problem>,
    /// Shards resuming after a silent connection, as `shard 3 on <pod>`.
    pub healing: Vec<String>,
    /// With `spec.bus`: whether its pods can publish.
    pub bus: Option<BusReport>,
}

/// What the workers report for the layout of `total` ([`ShardReports`]). Uses the records the
/// reshard step already read when it has them.
pub async fn shard_reports(
    ctx: &Context,
    ss: &ShardSet,
    deref: &Dereferenced,
    total: Option<u32>,
    reshard: Option<&Pass>,
) -> ShardReports {
    let (Some(app_id), Some(total), Some(redis)) = (deref.app_id, total, deref.redis_target(ss))
    else {
        return ShardReports::default();
    };
    let read = reshard
        .and_then(|r| r.statuses.as_ref())
        .and_then(|statuses| statuses.get(&total).cloned());
    let records = match read {
        Some(records) => Ok(records),
        None => ctx.redis.shard_statuses(redis, app_id, total).await,
    };
    match records {
        Ok(records) => {
            let summary = redis_state::summarize(&records);
            let failed = (!summary.failed.is_empty()).then(|| {
                let failed: Vec<String> = summary
                    .failed
                    .iter()
                    .map(|(shard, pod, reason)| format!("shard {shard} on {pod}: {reason}"))
                    .collect();
                Problem::ShardFailed(format!(
                    "{} shards closed for good: {}",
                    failed.len(),
                    summarize_list(&failed, 3)
                ))
            });
            ShardReports {
                guilds: summary.guilds,
                problem: failed,
                healing: summary
                    .healing
                    .iter()
                    .map(|(shard, pod)| format!("shard {shard} on {pod}"))
                    .collect(),
                bus: ss.spec.bus.is_some().then_some(summary.bus),
            }
        }
        Err(error) => ShardReports {
            problem: Some(Problem::RedisUnreachable(error.to_string())),
            ..ShardReports::default()
        },
    }
}

/// Builds the status from `observed` and applies it if it changed.
pub async fn update_status(
    ctx: &Context,
    ss: &ShardSet,
    namespace: &str,
    observed: &Observed<'_>,
) -> Result<(), StatusError> {
    let new_status = status::build(observed, ss.status.as_ref(), Timestamp::now());
    ctx.metrics.shardsets().set(
        namespace,
        &ss.name_any(),
        &shardset_gauges::values(&new_status, ss.spec.identify_reserve),
    );
    if ss.status.as_ref() == Some(&new_status) {
        return Ok(());
    }
    let api: Api<ShardSet> = Api::namespaced(ctx.client.clone(), namespace);
    apply::apply_status(&api, &ss.name_any(), &new_status)
        .await
        .map_err(StatusError::Apply)?;
    announce_problems(ss, &new_status, ctx).await;
    announce_bus(ss, &new_status, ctx).await;
    Ok(())
}

/// A Warning Event when the pods cannot publish to the bus any more, a Normal one when they can
/// again (`status::bus`).
async fn announce_bus(ss: &ShardSet, new: &ShardSetStatus, ctx: &Context) {
    let change = status::bus::transition(
        status::bus_available(ss.status.as_ref()),
        status::bus_available(Some(new)),
    );
    if let Some((warning, reason, note)) = change {
        let type_ = if warning {
            warn!(reason, note, "the bus is unreachable");
            EventType::Warning
        } else {
            info!(reason, note, "the bus is reachable again");
            EventType::Normal
        };
        ctx.publish(ss, type_, reason, "Reconcile", note).await;
    }
}

/// A Warning Event when the Degraded reason changes to a problem, a Normal one when it clears.
async fn announce_problems(ss: &ShardSet, new: &ShardSetStatus, ctx: &Context) {
    let before = status::degraded(ss.status.as_ref()).map(|(reason, _)| reason.to_owned());
    match (before, status::degraded(Some(new))) {
        (before, Some((reason, message))) if before.as_deref() != Some(reason) => {
            warn!(reason, message, "ShardSet degraded");
            ctx.publish(
                ss,
                EventType::Warning,
                reason,
                "Reconcile",
                message.to_owned(),
            )
            .await;
        }
        (Some(before), None) => {
            info!(previous = %before, "ShardSet recovered");
            ctx.publish(
                ss,
                EventType::Normal,
                "Recovered",
                "Reconcile",
                format!("{before} is resolved"),
            )
            .await;
        }
        _ => {}
    }
}
