//! A fresh install starts as fast as a warm one (issue 16). A worker that finds no epoch marker
//! grants nothing for `connect_bound` (10.6 s at Discord's window): Redis may have lost a gate
//! whose Identify is still in flight. When a ShardSet's first pods are about to be created, the
//! operator may know better: if no worker of the bot can have run within that hold, no such
//! Identify exists, and it writes the marker already held out before creating the pods.
//!
//! It does so only when **all** of these hold (anything unknown keeps the hold;
//! `docs/redis-protocol.md`, "A fresh bot"):
//! 1. the pass is about to create pods and the ShardSet has none (terminating ones count);
//! 2. the ShardSet was created after this operator process began leading, and this process has
//!    seen no pod of it: so no pod of it ever existed (pods are made by the leader only);
//! 3. no worker pod of any ShardSet in the cluster uses the same Redis URL (another ShardSet of
//!    the bot, or one deleted whose pods still run);
//! 4. Redis holds no key of the bot but the claim this ShardSet just made, and the marker is
//!    still missing when it is written (one script: [`crate::redis_state::FreshEpoch`]).
//!
//! What it cannot see: a process outside the cluster running the same bot on the same Redis,
//! when Redis lost the bot's keys (restart without persistence, flush, eviction) within the
//! hold before. Such a process must not share a Redis the operator settles (documented).

use std::collections::HashSet;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use shardset_contract::env;
use tracing::{debug, info, warn};

use super::dereference::Pods;
use crate::context::Context;
use crate::crd::ShardSet;
use crate::names;
use crate::redis_state::{FreshEpoch, RedisTarget};

/// What this operator process remembers for the check: when it began leading, and the
/// ShardSets (uids) whose pods it has seen or whose epoch it settled.
#[derive(Debug)]
pub struct FirstPods {
    leading_since: Mutex<Timestamp>,
    seen: Mutex<HashSet<String>>,
}

impl Default for FirstPods {
    fn default() -> Self {
        Self {
            leading_since: Mutex::new(Timestamp::now()),
            seen: Mutex::new(HashSet::new()),
        }
    }
}

impl FirstPods {
    /// The controller starts (leading from now): ShardSets older than this may have had pods
    /// made by another leader.
    pub fn leading_from_now(&self) {
        if let Ok(mut since) = self.leading_since.lock() {
            *since = Timestamp::now();
        }
    }

    fn saw(&self, uid: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(uid.to_owned());
        }
    }

    /// Conditions 1 and 2 for `ss` with `pods` of it now (seen pods are remembered).
    fn never_had_pods(&self, ss: &ShardSet, pods: usize) -> bool {
        let uid = ss.uid().unwrap_or_default();
        if pods > 0 {
            self.saw(&uid);
            return false;
        }
        let seen = self.seen.lock().map_or(true, |s| s.contains(&uid));
        let since = self.leading_since.lock().map(|s| *s).ok();
        let created = ss.metadata.creation_timestamp.as_ref().map(|t| t.0);
        never_had_pods(created, since, seen)
    }
}

/// Condition 2 as a plain decision: created (second precision) at or after the leadership
/// began, and no pod of it seen. Unknown times are doubt.
pub fn never_had_pods(
    created: Option<Timestamp>,
    leading_since: Option<Timestamp>,
    seen: bool,
) -> bool {
    match (created, leading_since) {
        (Some(created), Some(since)) => !seen && created >= since,
        _ => false,
    }
}

/// Whether `pod` is a worker on the Redis at `url` (its `REDIS_URL`).
fn uses_redis(pod: &Pod, url: &str) -> bool {
    pod.spec.iter().flat_map(|s| &s.containers).any(|c| {
        c.env
            .iter()
            .flatten()
            .any(|e| e.name == env::REDIS_URL && e.value.as_deref() == Some(url))
    })
}

/// Condition 3: no worker pod in the cluster on this Redis (a list that fails is doubt).
/// Listed, not read from the pod store: a pod this process created a moment ago for another
/// ShardSet on the same Redis may not be in the store yet, and missing it would skip a hold
/// that protects a real Identify. It runs once in a ShardSet's life, before its first pods.
async fn no_worker_on(ctx: &Context, url: &str) -> bool {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let params = ListParams::default().labels(&names::managed_pods_selector());
    match api.list(&params).await {
        Ok(list) => !list.items.iter().any(|p| uses_redis(p, url)),
        Err(error) => {
            debug!(%error, "cannot list worker pods: the epoch hold stays");
            false
        }
    }
}

/// Settles the bot's epoch before the ShardSet's first pods when it is provably safe (module
/// documentation); otherwise leaves it alone. `creating`: the pass is about to create pods.
pub async fn settle_before_first_pods(
    ctx: &Context,
    ss: &ShardSet,
    key: &str,
    app_id: Option<u64>,
    redis: Option<RedisTarget<'_>>,
    pods: &Pods,
    creating: bool,
) {
    if !ctx.first_pods.never_had_pods(ss, pods.existing.len()) || !creating {
        return;
    }
    let (Some(app_id), Some(redis)) = (app_id, redis) else {
        return;
    };
    // Settled or not, once is enough: from here on the ShardSet has pods (or the hold stays).
    ctx.first_pods.saw(&ss.uid().unwrap_or_default());
    if !no_worker_on(ctx, redis.url).await {
        debug!("a worker pod uses the same Redis: the epoch hold stays");
        return;
    }
    match ctx.redis.settle_fresh_epoch(redis, app_id, key).await {
        Ok(FreshEpoch::Settled) => {
            info!(
                app_id,
                "fresh bot: epoch settled before the first pods (no first-use hold)"
            );
        }
        Ok(FreshEpoch::KeyFound(found)) => {
            debug!(app_id, key = %found, "the bot has keys in Redis: the epoch hold stays");
        }
        Ok(FreshEpoch::NotSettled) => {
            debug!(
                app_id,
                "the epoch marker exists or the claim is not ours: the hold stays"
            );
        }
        Err(error) => warn!(%error, "cannot check the bot's keys: the epoch hold stays"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Option<Timestamp> {
        Timestamp::from_second(s).ok()
    }

    #[test]
    fn only_a_shardset_created_while_leading_and_never_seen_with_pods() {
        assert!(never_had_pods(at(100), at(100), false));
        assert!(never_had_pods(at(200), at(100), false));
        // Created before this process led: another leader may have made its pods.
        assert!(!never_had_pods(at(99), at(100), false));
        // Its pods were seen (deleted since): they may have identified within the hold.
        assert!(!never_had_pods(at(200), at(100), true));
        // Unknown times are doubt.
        assert!(!never_had_pods(None, at(100), false));
        assert!(!never_had_pods(at(200), None, false));
    }

    #[test]
    fn a_worker_is_on_the_redis_its_env_names() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "worker", "env": [
                {"name": "REDIS_URL", "value": "redis://redis:6379"}
            ]}]}
        }))
        .expect("pod");
        assert!(uses_redis(&pod, "redis://redis:6379"));
        assert!(!uses_redis(&pod, "redis://other:6379"));
        assert!(!uses_redis(&Pod::default(), "redis://redis:6379"));
    }
}
