//! The Cleanup arm, when a ShardSet is deleted: its pods first (so workers save their sessions
//! and stop), waited for within a bound, then every Redis key of the bot, epoch marker first,
//! unless the bot belongs to another ShardSet (`DuplicateBot`: then the keys are that one's). An unreachable Redis is
//! retried until `Settings::cleanup_give_up`, then left with a Warning Event rather than blocking
//! the deletion forever (the keys expire on their own).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use crate::apply;
use crate::context::Context;
use crate::crd::ShardSet;
use crate::pods;
use crate::reconcile::dereference::DereferenceError;
use crate::reconcile::redis_secrets;
use crate::redis_state::{Cleaned, RedisTarget};

/// How long cleanup waits for the ShardSet's pods to terminate before cleaning Redis anyway.
const CLEANUP_POD_WAIT: Duration = Duration::from_secs(30);

/// Why cleanup must be tried again.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("cannot delete the ShardSet's pods: {0}")]
    Pods(#[source] kube::Error),
    #[error("cannot read the Redis Secrets: {0}")]
    ReadSecret(#[from] DereferenceError),
    #[error("cleanup of the bot's Redis keys failed (will retry): {0}")]
    Redis(String),
}

impl CleanupError {
    /// A fixed label for `reconcile_failures_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Pods(_) | Self::ReadSecret(_) => "kube",
            Self::Redis(_) => "cleanup",
        }
    }
}

/// The Cleanup arm: pods first, then Redis.
pub async fn cleanup(
    ss: &ShardSet,
    namespace: &str,
    ctx: &Context,
) -> Result<Action, CleanupError> {
    let name = ss.name_any();
    // The ShardSet goes: its gauges go first (they would otherwise show its last status).
    ctx.metrics.shardsets().forget(namespace, &name);
    let key = format!("{namespace}/{name}");
    ctx.pod_cache.forget(&key);
    let uid = ss.uid().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);

    let owned = |pods: &[Pod]| -> Vec<Pod> {
        pods.iter()
            .filter(|p| pods::observe(p, &uid).owned)
            .cloned()
            .collect()
    };
    // Listed, not read from the pod store: cleanup runs once per ShardSet, and before the bot's
    // Redis keys go every pod must be known gone, including one created a moment ago that the
    // store may not show yet.
    let existing = owned(
        &apply::list_pods(&pods_api, &name)
            .await
            .map_err(CleanupError::Pods)?,
    );
    let targets: Vec<String> = existing
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.name_any())
        .collect();
    if !targets.is_empty() {
        let deleted = apply::delete_pods(&pods_api, &existing, &targets)
            .await
            .map_err(CleanupError::Pods)?;
        ctx.metrics.pod_action("delete", deleted.len());
    }
    let waited = tokio::time::timeout(CLEANUP_POD_WAIT, async {
        loop {
            match apply::list_pods(&pods_api, &name).await {
                Ok(pods) if owned(&pods).is_empty() => return,
                _ => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    })
    .await;
    if waited.is_err() {
        warn!("pods still terminating; cleaning Redis anyway");
    }

    let in_deletion_for = ss
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| Timestamp::now().duration_since(t.0))
        .unwrap_or_default();
    let give_up =
        SignedDuration::try_from(ctx.settings.cleanup_give_up).unwrap_or(SignedDuration::MAX);
    let app_id = ctx.discord.cached_app_id(&key).or_else(|| {
        ss.status
            .as_ref()
            .and_then(|s| s.application_id.as_deref())
            .and_then(|id| id.parse().ok())
    });
    match app_id {
        None => {
            ctx.publish(
                ss,
                EventType::Warning,
                "CleanupSkipped",
                "Cleanup",
                "the bot's application id was never learned (no valid token), so no Redis keys were deleted".into(),
            )
            .await;
        }
        Some(app_id) => {
            // A Secret already gone (a deleted namespace takes it with the ShardSet) is replaced
            // by the last one read; with none kept the attempt fails, and is retried until the
            // give-up bound like an unreachable Redis.
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
            let read =
                redis_secrets::read(&secrets, namespace, &ss.spec.redis, &mut Vec::new()).await?;
            let redis = ctx.redis_secrets.or_last(&key, read);
            let target = RedisTarget {
                url: &ss.spec.redis.url,
                password: redis.password.as_deref(),
                ca: redis.ca.as_ref(),
            };
            match ctx.redis.cleanup(target, app_id, &key).await {
                Ok(Cleaned::OwnedBy(owner)) => {
                    ctx.publish(
                        ss,
                        EventType::Normal,
                        "CleanupSkipped",
                        "Cleanup",
                        format!("application {app_id} is run by ShardSet {owner}: its Redis keys are left to it"),
                    )
                    .await;
                }
                Ok(Cleaned::Deleted(count)) => {
                    info!(count, app_id, "deleted Redis keys");
                    ctx.publish(
                        ss,
                        EventType::Normal,
                        "RedisKeysDeleted",
                        "Cleanup",
                        format!(
                            "deleted {count} session, lease and status keys of application {app_id}"
                        ),
                    )
                    .await;
                }
                Err(error) if in_deletion_for < give_up => {
                    return Err(CleanupError::Redis(error.to_string()));
                }
                Err(error) => {
                    ctx.publish(
                        ss,
                        EventType::Warning,
                        "CleanupSkipped",
                        "Cleanup",
                        format!("gave up deleting Redis keys after {}s: {error}; they expire on their own", in_deletion_for.as_secs()),
                    )
                    .await;
                }
            }
        }
    }
    ctx.discord.forget(&key);
    ctx.redis_secrets.forget(&key);
    Ok(Action::await_change())
}
