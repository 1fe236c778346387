//! What happened during a run, recorded by watches while the test drives: what a condition of a
//! ShardSet's status went through (the `Resharding` steps, `Available`), the name of every pod
//! that ever existed, how many of a ShardSet's pods were unavailable at once, and every line every
//! container logged (deleted pods included). Each stops when dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures_util::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::TestNamespace;
use crate::background::Recorder;
use crate::conditions::is_pod_ready;
use crate::shardsets::{ShardSet, pods_of};

/// Calls `seen` with every object the watch reports (as listed or as changed) until the watch
/// ends or fails.
async fn each_object<K>(api: Api<K>, config: watcher::Config, mut seen: impl FnMut(K))
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut events = std::pin::pin!(watcher(api, config));
    while let Ok(Some(event)) = events.try_next().await {
        if let watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) = event {
            seen(obj);
        }
    }
}

/// Records every distinct `status=reason` one condition of a ShardSet goes through, in order, from
/// a watch (the steps of a reshard last from milliseconds to `W`; a watch sees each status write).
pub struct ConditionLog(Recorder<Vec<String>>);

impl ConditionLog {
    /// Starts watching condition `type_` of the ShardSet `name`.
    pub fn start(ns: &TestNamespace, name: &str, type_: &'static str) -> Self {
        let api = ns.api::<ShardSet>();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        Self(Recorder::<Vec<String>>::start(|seen| {
            each_object(api, config, move |ss: ShardSet| {
                let Some(status) = ss.status.as_ref() else {
                    return;
                };
                let Some(cond) = status.conditions.iter().find(|c| c.type_ == type_) else {
                    return;
                };
                let entry = format!("{}={}", cond.status, cond.reason);
                if let Ok(mut seen) = seen.lock()
                    && seen.last() != Some(&entry)
                {
                    seen.push(entry);
                }
            })
        }))
    }

    /// The `status=reason` entries seen so far, in order.
    pub fn seen(&self) -> Vec<String> {
        self.0.seen()
    }
}

/// The `Resharding` steps of a ShardSet ([`ConditionLog`] of that condition).
pub struct StepLog(ConditionLog);

impl StepLog {
    /// Starts watching the ShardSet `name`.
    pub fn start(ns: &TestNamespace, name: &str) -> Self {
        Self(ConditionLog::start(ns, name, "Resharding"))
    }

    /// The `status=reason` entries seen so far, in order.
    pub fn seen(&self) -> Vec<String> {
        self.0.seen()
    }
}

/// Records the name of every pod that ever exists while it runs.
pub struct PodLog(Recorder<BTreeSet<String>>);

impl PodLog {
    /// Every pod of the namespace.
    pub fn start(ns: &TestNamespace) -> Self {
        Self::watching(ns, watcher::Config::default())
    }

    /// The pods of the ShardSet `shardset` only.
    pub fn of_shardset(ns: &TestNamespace, shardset: &str) -> Self {
        Self::watching(ns, watcher::Config::default().labels(&pods_of(shardset)))
    }

    fn watching(ns: &TestNamespace, config: watcher::Config) -> Self {
        let api = ns.api::<Pod>();
        Self(Recorder::<BTreeSet<String>>::start(|names| {
            each_object(api, config, move |pod: Pod| {
                if let Ok(mut names) = names.lock() {
                    names.insert(pod.name_any());
                }
            })
        }))
    }

    /// Every pod name seen so far.
    pub fn seen(&self) -> BTreeSet<String> {
        self.0.seen()
    }
}

/// The most pods of a ShardSet that were unavailable at the same time (not Ready, terminating, or
/// absent from the expected names), from a watch of its pods: each change is one observation.
pub struct MostUnavailable(Recorder<usize>);

impl MostUnavailable {
    /// Starts watching the pods of `shardset`, expecting `expected` (its layout's pod names).
    pub fn start(ns: &TestNamespace, shardset: &str, expected: &[String]) -> Self {
        let api = ns.api::<Pod>();
        let config = watcher::Config::default().labels(&pods_of(shardset));
        let expected: BTreeSet<String> = expected.iter().cloned().collect();
        Self(Recorder::<usize>::start(|most| async move {
            let is_available =
                |pod: &Pod| pod.metadata.deletion_timestamp.is_none() && is_pod_ready(pod);
            // A (re)list is counted only once whole: its pods arrive one by one.
            let mut available: BTreeSet<String> = BTreeSet::new();
            let mut listing: BTreeSet<String> = BTreeSet::new();
            let mut events = std::pin::pin!(watcher(api, config));
            while let Ok(Some(event)) = events.try_next().await {
                match event {
                    watcher::Event::Init => {
                        listing.clear();
                        continue;
                    }
                    watcher::Event::InitApply(pod) => {
                        if is_available(&pod) {
                            listing.insert(pod.name_any());
                        }
                        continue;
                    }
                    watcher::Event::InitDone => available = std::mem::take(&mut listing),
                    watcher::Event::Apply(pod) => {
                        if is_available(&pod) {
                            available.insert(pod.name_any());
                        } else {
                            available.remove(&pod.name_any());
                        }
                    }
                    watcher::Event::Delete(pod) => {
                        available.remove(&pod.name_any());
                    }
                }
                let unavailable = expected.difference(&available).count();
                if let Ok(mut most) = most.lock() {
                    *most = (*most).max(unavailable);
                }
            }
        }))
    }

    /// The most seen so far.
    pub fn seen(&self) -> usize {
        self.0.seen()
    }
}

/// Follows the logs of every container of every pod in a namespace, from the moment it runs
/// until the pod goes (deleted pods included), keyed `<pod>@<uid prefix>/<container>#<restart>`.
pub struct LogCollector(Recorder<BTreeMap<String, String>>);

impl LogCollector {
    /// Starts following the namespace's pods.
    pub fn start(ns: &TestNamespace) -> Self {
        Self::following(ns, watcher::Config::default())
    }

    /// Starts following the namespace's pods that match the label selector `labels`.
    pub fn start_matching(ns: &TestNamespace, labels: &str) -> Self {
        Self::following(ns, watcher::Config::default().labels(labels))
    }

    fn following(ns: &TestNamespace, config: watcher::Config) -> Self {
        let api = ns.api::<Pod>();
        Self(Recorder::<BTreeMap<String, String>>::start(
            |logs| async move {
                let mut following: BTreeSet<String> = BTreeSet::new();
                each_object(api.clone(), config, |pod: Pod| {
                    let uid = pod.uid().unwrap_or_default();
                    for (container, restarts) in started_containers(&pod) {
                        // A pod replaced under the same name is another pod: the uid tells them apart.
                        let key = format!(
                            "{}@{}/{container}#{restarts}",
                            pod.name_any(),
                            uid.get(..8).unwrap_or_default()
                        );
                        if !following.insert(key.clone()) {
                            continue;
                        }
                        let (api, sink, name) = (api.clone(), Arc::clone(&logs), pod.name_any());
                        tokio::spawn(async move {
                            let params = LogParams {
                                follow: true,
                                container: Some(container),
                                ..LogParams::default()
                            };
                            let Ok(reader) = api.log_stream(&name, &params).await else {
                                return;
                            };
                            let mut lines = std::pin::pin!(reader.lines());
                            while let Some(Ok(line)) = lines.next().await {
                                if let Ok(mut logs) = sink.lock() {
                                    let text = logs.entry(key.clone()).or_default();
                                    text.push_str(&line);
                                    text.push('\n');
                                }
                            }
                        });
                    }
                })
                .await;
            },
        ))
    }

    /// Everything collected so far.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        self.0.seen()
    }

    /// Stops following new pods (the logs of those already followed keep coming in).
    pub fn stop(&self) {
        self.0.stop();
    }
}

/// Containers of `pod` that have started (running or terminated), with their restart count.
fn started_containers(pod: &Pod) -> Vec<(String, i32)> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| {
            cs.iter()
                .filter(|c| {
                    c.state
                        .as_ref()
                        .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
                })
                .map(|c| (c.name.clone(), c.restart_count))
                .collect()
        })
        .unwrap_or_default()
}
