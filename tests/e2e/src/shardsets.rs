//! Waits and reads on ShardSets and their pods, shared by the operator scenarios
//! (`tests/operator_*.rs`) and the end-to-end scenarios (`tests/e2e_*.rs`). Every wait watches
//! the API until its predicate holds (deletions included), never sleeps.

use std::process::Command;
use std::time::Duration;

use anyhow::bail;
use futures_util::{FutureExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::watcher;
use shardset_operator::crd::ShardSet;

use crate::{TestNamespace, conditions, tool};

/// Waits until `pred` holds for the ShardSet `name`; returns it. On a timeout the error shows
/// the ShardSet's status as it is then.
pub async fn wait_shardset(
    ns: &TestNamespace,
    name: &str,
    timeout: Duration,
    pred: impl Fn(&ShardSet) -> bool + Send + 'static,
) -> anyhow::Result<ShardSet> {
    let api = ns.api::<ShardSet>();
    let found = ns
        .wait_for(
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
    let selector = format!("shardset.io/shardset={shardset}");
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

/// Runs the harness's kubectl with `KUBE_EDITOR` set: a real `kubectl edit` driven by `sed`.
pub fn kubectl_edit(ns: &str, object: &str, sed_expr: &str) -> anyhow::Result<String> {
    let out = Command::new(tool("kubectl"))
        .args(["-n", ns, "edit", object])
        .env("KUBE_EDITOR", format!("sed -i -e '{sed_expr}'"))
        .output()?;
    if !out.status.success() {
        bail!(
            "kubectl edit {object}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
