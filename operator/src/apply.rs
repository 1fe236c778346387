//! Writes to the API server, each only when the plan or the status asks for it: creating and
//! deleting worker pods, and applying the ShardSet status (server-side apply, our field manager).
//!
//! Pods are created with a plain `create`, not an apply: an apply of a name that a foreign pod
//! already holds would adopt that pod, while a create fails with `AlreadyExists` and leaves it
//! alone. Pods are never updated in place; drift is a replacement (see `plan`). Deletes carry the
//! pod's uid as a precondition, so a pod recreated under the same name is never hit by a stale
//! delete.

use std::collections::BTreeMap;

use futures_util::{StreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Resource, ResourceExt};

use crate::crd::{ShardSet, ShardSetStatus};
use crate::names;

/// Parallel API calls when creating or deleting many pods (a 100-pod ShardSet starts in about
/// a second instead of a hundred round trips).
const PARALLEL: usize = 32;

/// Pods carrying the ShardSet's label (ours, and foreign ones wearing it).
pub async fn list_pods(api: &Api<Pod>, shardset: &str) -> Result<Vec<Pod>, kube::Error> {
    let params = ListParams::default().labels(&names::shardset_pods_selector(shardset));
    Ok(api.list(&params).await?.items)
}

/// What creating a batch of pods did.
#[derive(Debug, Default)]
pub struct Created {
    pub created: Vec<String>,
    /// The uid the API server gave each created pod (by name), for [`crate::pod_cache`].
    pub uids: BTreeMap<String, String>,
    /// Names another object already holds (`AlreadyExists`).
    pub taken: Vec<String>,
    pub errors: Vec<kube::Error>,
}

/// Creates `pods`, up to [`PARALLEL`] at a time.
pub async fn create_pods(api: &Api<Pod>, pods: Vec<Pod>) -> Created {
    let params = PostParams {
        field_manager: Some(names::FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    let results: Vec<(String, Result<Pod, kube::Error>)> = stream::iter(pods)
        .map(|pod| {
            let params = &params;
            async move {
                let name = pod.name_any();
                (name, api.create(params, &pod).await)
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut out = Created::default();
    for (name, result) in results {
        match result {
            Ok(pod) => {
                if let Some(uid) = pod.metadata.uid {
                    out.uids.insert(name.clone(), uid);
                }
                out.created.push(name);
            }
            Err(kube::Error::Api(status)) if status.code == 409 => out.taken.push(name),
            Err(e) => out.errors.push(e),
        }
    }
    out.created.sort();
    out
}

/// Deletes pods named in `names`, found in `pods` (for their uid), up to [`PARALLEL`] at a time.
/// A pod already gone, or replaced meanwhile, counts as done.
pub async fn delete_pods(
    api: &Api<Pod>,
    pods: &[Pod],
    targets: &[String],
) -> Result<Vec<String>, kube::Error> {
    delete_with_grace(api, pods, targets, None).await
}

/// Force-deletes (grace period 0) pods stuck on a lost node (see `node_loss`): the API object goes
/// at once, without the kubelet's confirmation, so that the plan can create the pod elsewhere.
pub async fn force_delete_pods(
    api: &Api<Pod>,
    pods: &[Pod],
    targets: &[String],
) -> Result<Vec<String>, kube::Error> {
    delete_with_grace(api, pods, targets, Some(0)).await
}

async fn delete_with_grace(
    api: &Api<Pod>,
    pods: &[Pod],
    targets: &[String],
    grace_period_seconds: Option<u32>,
) -> Result<Vec<String>, kube::Error> {
    let uids: Vec<(String, Option<String>)> = targets
        .iter()
        .map(|name| {
            let uid = pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
                .and_then(|p| p.metadata.uid.clone());
            (name.clone(), uid)
        })
        .collect();
    let results: Vec<Result<Option<String>, kube::Error>> = stream::iter(uids)
        .map(|(name, uid)| async move {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid,
                    resource_version: None,
                }),
                grace_period_seconds,
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => Ok(Some(name)),
                // 404: already gone; 409: the uid precondition failed, a new pod holds the name.
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
                Err(e) => Err(e),
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut deleted = Vec::new();
    for result in results {
        if let Some(name) = result? {
            deleted.push(name);
        }
    }
    deleted.sort();
    Ok(deleted)
}

/// Applies the whole status with our field manager (forced: the operator owns the status).
pub async fn apply_status(
    api: &Api<ShardSet>,
    name: &str,
    status: &ShardSetStatus,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({
        "apiVersion": ShardSet::api_version(&()),
        "kind": ShardSet::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(names::FIELD_MANAGER).force();
    api.patch_status(name, &params, &Patch::Apply(&patch))
        .await?;
    Ok(())
}
