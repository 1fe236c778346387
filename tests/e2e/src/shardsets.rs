//! Waits and reads on ShardSets and their pods, shared by every scenario that runs the operator
//! (`tests/operator_*.rs` with the operator on the host, `tests/e2e_*.rs` and `tests/reshard_*.rs`
//! with the charts): conditions, settled layouts, the pod names a layout has, and the clean-up of
//! ShardSets an operator can no longer finalize. Every wait watches the API until its predicate
//! holds (deletions included), never sleeps.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::runtime::watcher;
/// The ShardSet type (the operator's CRD), for scenarios.
pub use shardset_operator::crd::ShardSet;

use crate::{TestNamespace, conditions, kubectl, wait_for};

/// The label the operator puts on every worker pod: the name of its ShardSet.
pub use shardset_operator::names::labels::SHARDSET as SHARDSET_LABEL;

/// The label selector of the pods of ShardSet `shardset`.
pub fn pods_of(shardset: &str) -> String {
    format!("{SHARDSET_LABEL}={shardset}")
}

/// The pod names of layout `total` at `per_pod` shards per pod (`<name>-<total>-<first>-<last>`).
pub fn layout_pods(name: &str, total: u32, per_pod: u32) -> Vec<String> {
    (0..total)
        .step_by(per_pod as usize)
        .map(|first| {
            format!(
                "{name}-{total}-{first}-{}",
                (first + per_pod - 1).min(total - 1)
            )
        })
        .collect()
}

/// `(total, first, last)` of a pod named `<shardset>-<total>-<first>-<last>`: the layout it
/// belongs to and the shards it runs.
pub fn pod_range(name: &str) -> Option<(u32, u32, u32)> {
    let parts: Vec<u32> = name
        .rsplitn(4, '-')
        .take(3)
        .filter_map(|p| p.parse().ok())
        .collect();
    let [last, first, total] = parts[..] else {
        return None;
    };
    Some((total, first, last))
}

/// Pods by name → uid (a pod replaced under its name has another uid).
pub fn uids(pods: &[Pod]) -> BTreeMap<String, String> {
    pods.iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect()
}

/// Waits until `pred` holds for the ShardSet `name`; returns it. On a timeout the error shows
/// the ShardSet's status as it is then.
pub async fn wait_shardset(
    ns: &TestNamespace,
    name: &str,
    timeout: Duration,
    pred: impl Fn(&ShardSet) -> bool + Send + 'static,
) -> anyhow::Result<ShardSet> {
    let api = ns.api::<ShardSet>();
    let found = wait_for(
        &api,
        name,
        move |s: Option<&ShardSet>| s.is_some_and(&pred),
        timeout,
    )
    .await;
    match found {
        Ok(Some(ss)) => Ok(ss),
        Ok(None) => bail!("ShardSet {name} vanished"),
        Err(e) => {
            let now = api.get_opt(name).await.ok().flatten();
            bail!("{e:#}; it is now: {:#?}", now.and_then(|s| s.status))
        }
    }
}

/// The condition `type_` of a ShardSet.
pub fn condition<'a>(ss: &'a ShardSet, type_: &str) -> Option<&'a Condition> {
    ss.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// True when the condition `type_` has `status` and `reason`.
pub fn has_condition(ss: &ShardSet, type_: &str, status: &str, reason: &str) -> bool {
    condition(ss, type_).is_some_and(|c| c.status == status && c.reason == reason)
}

/// True when the status describes the current generation with `shards` shards, all of them in
/// Ready pods, no pod of another layout left, and `Ready=True`.
pub fn settled_at(ss: &ShardSet, shards: u32) -> bool {
    let Some(st) = ss.status.as_ref() else {
        return false;
    };
    st.observed_generation == ss.metadata.generation
        && st.shards == Some(shards)
        && st.ready_shards == shards
        && st.pods == st.ready_pods
        && has_condition(ss, "Ready", "True", "AllShardsReady")
        && has_condition(ss, "Progressing", "False", "Stable")
}

/// Waits until `pred` holds for the pods of ShardSet `shardset` (woken by every change,
/// deletions included); returns them.
pub async fn wait_pods(
    ns: &TestNamespace,
    shardset: &str,
    timeout: Duration,
    mut pred: impl FnMut(&[Pod]) -> bool,
) -> anyhow::Result<Vec<Pod>> {
    let api = ns.api::<Pod>();
    let selector = pods_of(shardset);
    let (reader, writer) = kube::runtime::reflector::store::<Pod>();
    // Every watch event (deletions and the end of the initial list included) wakes the check.
    let stream = kube::runtime::reflector(
        writer,
        watcher(api, watcher::Config::default().labels(&selector)),
    );
    let mut stream = std::pin::pin!(stream);
    let waiting = async {
        loop {
            if reader.wait_until_ready().now_or_never().is_some() {
                let pods: Vec<Pod> = reader.state().iter().map(|p| (**p).clone()).collect();
                if pred(&pods) {
                    return Ok(pods);
                }
            }
            match stream.try_next().await {
                Ok(Some(_)) => {}
                Ok(None) => bail!("watch ended"),
                Err(e) => bail!("watch failed: {e}"),
            }
        }
    };
    match tokio::time::timeout(timeout, waiting).await {
        Ok(result) => result,
        Err(_) => {
            let names: Vec<String> = reader
                .state()
                .iter()
                .map(|p| {
                    format!(
                        "{}{}{}",
                        p.metadata.name.clone().unwrap_or_default(),
                        if conditions::is_pod_ready(p) {
                            " (ready)"
                        } else {
                            ""
                        },
                        if p.metadata.deletion_timestamp.is_some() {
                            " (terminating)"
                        } else {
                            ""
                        },
                    )
                })
                .collect();
            bail!(
                "timed out after {timeout:?} waiting on the pods of {shardset}; they are {names:?}"
            )
        }
    }
}

/// Names of `pods` that are Ready and not terminating, sorted.
pub fn ready_names(pods: &[Pod]) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| conditions::is_pod_ready(p))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    names
}

/// Names of all `pods`, sorted.
pub fn names(pods: &[Pod]) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    names
}

/// The pods are exactly `expected`, every one Ready and none terminating.
pub fn exactly_ready(pods: &[Pod], expected: &[&str]) -> bool {
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    names(pods) == want && ready_names(pods) == want
}

/// The bot id the operator found for the ShardSet `name` (`status.applicationId`): the `{id}` of
/// its Redis keys.
pub async fn application_id(ns: &TestNamespace, name: &str) -> anyhow::Result<String> {
    ns.api::<ShardSet>()
        .get(name)
        .await?
        .status
        .and_then(|s| s.application_id)
        .context("status.applicationId")
}

/// A settled layout: the ShardSet's status, and its pods, exactly those of the layout and Ready.
#[derive(Debug, Clone)]
pub struct SettledLayout {
    pub shardset: ShardSet,
    pub pods: Vec<Pod>,
}

/// Waits until the ShardSet `name` has settled at `total` shards ([`settled_at`]) and its pods are
/// exactly those of layout `total` at `per_pod` per pod, all Ready (each wait up to `timeout`).
pub async fn wait_settled_layout(
    ns: &TestNamespace,
    name: &str,
    total: u32,
    per_pod: u32,
    timeout: Duration,
) -> anyhow::Result<SettledLayout> {
    let shardset = wait_shardset(ns, name, timeout, move |s| settled_at(s, total)).await?;
    let expected = layout_pods(name, total, per_pod);
    let want: Vec<&str> = expected.iter().map(String::as_str).collect();
    let pods = wait_pods(ns, name, timeout, |p| exactly_ready(p, &want)).await?;
    Ok(SettledLayout { shardset, pods })
}

/// Watches the pods of ShardSet `shardset` while `stop` runs: returns the most pods that were
/// terminating at the same time, and what `stop` returned.
pub async fn max_terminating_while<F: Future>(
    ns: &TestNamespace,
    shardset: &str,
    stop: F,
) -> anyhow::Result<(usize, F::Output)> {
    let api = ns.api::<Pod>();
    let (reader, writer) = kube::runtime::reflector::store::<Pod>();
    let mut stream = std::pin::pin!(kube::runtime::reflector(
        writer,
        watcher(api, watcher::Config::default().labels(&pods_of(shardset)))
    ));
    let mut stop = std::pin::pin!(stop);
    let mut most = 0;
    loop {
        tokio::select! {
            out = &mut stop => return Ok((most, out)),
            item = stream.next() => {
                match item {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => bail!("watch failed: {e}"),
                    None => bail!("watch ended"),
                }
                let terminating = reader
                    .state()
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_some())
                    .count();
                most = most.max(terminating);
            }
        }
    }
}

/// Removes the finalizer of every ShardSet left in namespace `ns`: without an operator running it
/// would keep them (and the namespace) forever.
pub fn release_finalizers(ns: &str) {
    if let Ok(names) = kubectl(&["-n", ns, "get", "shardsets", "-o", "name"]) {
        for name in names.lines().filter(|l| !l.is_empty()) {
            let _ = kubectl(&[
                "-n",
                ns,
                "patch",
                name,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_pods_cover_every_shard_once() {
        assert_eq!(
            layout_pods("bot", 10, 3),
            ["bot-10-0-2", "bot-10-3-5", "bot-10-6-8", "bot-10-9-9"]
        );
        assert_eq!(layout_pods("bot", 4, 4), ["bot-4-0-3"]);
    }

    #[test]
    fn pod_names_give_their_range() {
        assert_eq!(pod_range("bot-10-3-5"), Some((10, 3, 5)));
        assert_eq!(pod_range("my-bot-4-0-3"), Some((4, 0, 3)));
        assert_eq!(pod_range("bot-foreign"), None);
    }
}
