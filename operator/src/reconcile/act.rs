//! The pass acts on its decision: deletes the pods the plan removes, creates the missing ones (up
//! to 32 API calls at a time, see [`crate::apply`]), and force-deletes owned pods stuck on a lost
//! node (see [`crate::node_loss`]), each with its Event, log line and `pod_actions_total` count.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use crate::apply;
use crate::context::Context;
use crate::crd::ShardSet;
use crate::node_loss;
use crate::plan::DeleteReason;
use crate::pod_cache::Expectation;
use crate::reconcile::decide::Decided;
use crate::reconcile::dereference::Pods;
use crate::text::summarize_list;

/// Why a pod action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("cannot delete pods: {0}")]
    DeletePods(#[source] kube::Error),
    #[error("cannot create pods: {0}")]
    CreatePods(#[source] kube::Error),
    #[error("cannot force-delete pods stuck on a lost node: {0}")]
    ForceDeletePods(#[source] kube::Error),
}

impl ActError {
    /// A fixed label for `reconcile_failures_total`: an API call failed.
    pub fn metric_label(&self) -> &'static str {
        "kube"
    }
}

/// Carries out `decided` on `pods`. Returns when to look again at terminating pods that may
/// become stuck on a lost node.
pub async fn act(
    ss: &ShardSet,
    namespace: &str,
    ctx: &Context,
    decided: &Decided,
    pods: &Pods,
) -> Result<Option<Duration>, ActError> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let key = format!("{namespace}/{}", ss.name_any());
    delete(ss, &api, ctx, decided, pods, &key).await?;
    create(ss, &api, ctx, decided, &key).await?;
    // Pods stuck on a lost node: their replacements can only start once they are gone.
    force_delete_lost_pods(ss, &api, pods, ctx, &key).await
}

/// The pass reads `key`'s pods from the store again only once it shows these deletes.
fn expect_deleted(ctx: &Context, key: &str, pods: &Pods, deleted: &[String]) {
    let at = std::time::Instant::now();
    ctx.pod_cache.expect(
        key,
        deleted.iter().map(|name| Expectation::Deleted {
            name: name.clone(),
            uid: pods
                .existing
                .iter()
                .find(|p| p.metadata.name.as_ref() == Some(name))
                .and_then(|p| p.metadata.uid.clone()),
            at,
        }),
    );
}

/// Deletes the pods the plan removes; one Event names them and why.
async fn delete(
    ss: &ShardSet,
    api: &Api<Pod>,
    ctx: &Context,
    decided: &Decided,
    pods: &Pods,
    key: &str,
) -> Result<(), ActError> {
    let plan = &decided.plan;
    if plan.delete.is_empty() {
        return Ok(());
    }
    let targets: Vec<String> = plan.delete.iter().map(|d| d.name.clone()).collect();
    let deleted = apply::delete_pods(api, &pods.existing, &targets)
        .await
        .map_err(ActError::DeletePods)?;
    expect_deleted(ctx, key, pods, &deleted);
    ctx.metrics.pod_action("delete", deleted.len());
    if deleted.is_empty() {
        return Ok(());
    }
    let described: Vec<String> = plan
        .delete
        .iter()
        .filter(|d| deleted.contains(&d.name))
        .map(|d| format!("{} ({})", d.name, d.reason.describe()))
        .collect();
    info!(count = deleted.len(), pods = ?deleted, "deleted pods");
    let reason = if plan
        .delete
        .iter()
        .all(|d| d.reason == DeleteReason::Drifted)
    {
        "PodReplaced"
    } else {
        "PodsDeleted"
    };
    ctx.publish(
        ss,
        EventType::Normal,
        reason,
        "DeletePods",
        format!(
            "deleted {} pods: {}",
            deleted.len(),
            summarize_list(&described, 10)
        ),
    )
    .await;
    Ok(())
}

/// Creates the pods the plan adds; Events name them, and the names foreign objects hold.
async fn create(
    ss: &ShardSet,
    api: &Api<Pod>,
    ctx: &Context,
    decided: &Decided,
    key: &str,
) -> Result<(), ActError> {
    let plan = &decided.plan;
    if plan.create.is_empty() {
        return Ok(());
    }
    let layout = decided.pod_layout.as_deref().unwrap_or_default();
    let batch: Vec<Pod> = decided
        .desired
        .iter()
        .filter(|(d, _)| plan.create.contains(&d.name))
        .map(|(_, pod)| pod.clone())
        .collect();
    let created = apply::create_pods(api, batch).await;
    let at = std::time::Instant::now();
    ctx.pod_cache.expect(
        key,
        created.created.iter().map(|name| Expectation::Created {
            name: name.clone(),
            uid: created.uids.get(name).cloned(),
            at,
        }),
    );
    ctx.metrics.pod_action("create", created.created.len());
    if !created.created.is_empty() {
        info!(count = created.created.len(), layout, "created pods");
        ctx.publish(
            ss,
            EventType::Normal,
            "PodsCreated",
            "CreatePods",
            format!(
                "created {} pods for layout {layout}: {}",
                created.created.len(),
                summarize_list(&created.created, 10)
            ),
        )
        .await;
    }
    if !created.taken.is_empty() {
        ctx.publish(
            ss,
            EventType::Warning,
            "PodNameTaken",
            "CreatePods",
            format!(
                "pod names held by objects the ShardSet does not own: {}; delete or rename them",
                summarize_list(&created.taken, 10)
            ),
        )
        .await;
    }
    match created.errors.into_iter().next() {
        Some(error) => Err(ActError::CreatePods(error)),
        None => Ok(()),
    }
}

/// Force-deletes the owned pods that `node_loss::assess` finds stuck on a lost node, with a
/// Warning Event naming them. Returns when to look again at pods that may become stuck.
async fn force_delete_lost_pods(
    ss: &ShardSet,
    api: &Api<Pod>,
    pods: &Pods,
    ctx: &Context,
    key: &str,
) -> Result<Option<Duration>, ActError> {
    let now = Timestamp::now();
    let mut recheck: Option<Duration> = None;
    let mut stuck: Vec<(String, String)> = Vec::new();
    for (pod, _) in pods
        .existing
        .iter()
        .zip(&pods.observed)
        .filter(|(_, o)| o.owned && o.terminating)
    {
        match node_loss::assess(pod, now) {
            node_loss::Verdict::ForceDelete(why) => stuck.push((pod.name_any(), why)),
            node_loss::Verdict::Wait(Some(later)) => {
                recheck = Some(recheck.map_or(later, |r| r.min(later)));
            }
            node_loss::Verdict::Wait(None) => {}
        }
    }
    if stuck.is_empty() {
        return Ok(recheck);
    }
    let targets: Vec<String> = stuck.iter().map(|(name, _)| name.clone()).collect();
    let deleted = apply::force_delete_pods(api, &pods.existing, &targets)
        .await
        .map_err(ActError::ForceDeletePods)?;
    expect_deleted(ctx, key, pods, &deleted);
    ctx.metrics.pod_action("force_delete", deleted.len());
    if !deleted.is_empty() {
        let described: Vec<String> = stuck
            .iter()
            .filter(|(name, _)| deleted.contains(name))
            .map(|(name, why)| format!("{name} ({why})"))
            .collect();
        warn!(count = deleted.len(), pods = ?described, "force-deleted pods stuck on a lost node");
        ctx.publish(
            ss,
            EventType::Warning,
            "PodForceDeleted",
            "DeletePods",
            format!(
                "force-deleted {} pods stuck on a lost node, to recreate them elsewhere (their shards wait for the old Redis leases): {}",
                deleted.len(),
                summarize_list(&described, 10)
            ),
        )
        .await;
    }
    Ok(recheck)
}
