//! The worker pods as the controller's watch last saw them (a kube-runtime reflector store, fed by
//! the same watch that triggers the reconciles), and the pod writes of this process that the store
//! may not show yet (expectations, as Kubernetes' own ReplicaSet controller keeps them).
//!
//! A pass reads the ShardSet's pods from the store, so a settled ShardSet costs no LIST (issue 16:
//! 20 ShardSets at a 60 s resync were 20 LISTs a minute at rest, each a quorum read of the API
//! server). A cached read can be stale in two ways:
//! - **after our own writes**: pods just created missing, pods just deleted still shown as
//!   running. The planners would then create twice (`AlreadyExists`, reported as a foreign pod
//!   holding the name) or count a deleted pod as serving (pacing more replacements than allowed).
//!   So every create and delete is remembered until the store shows it (the pod with the uid the
//!   create returned; the deleted uid gone or terminating); while one is outstanding the pass LISTs
//!   as before. An expectation the store never shows (the pod was deleted by someone else before
//!   the watch told us of it) lapses after [`EXPECTATION_TTL`].
//! - **after others' writes**: a pod changed by the kubelet, a user or the garbage collector
//!   whose event has not arrived yet. The pass then acts on the world as it was a moment ago,
//!   exactly as a LIST made a moment earlier would have, and the event, when it arrives,
//!   triggers the next pass (the watch is the controller's own trigger).
//!
//! Before the store's first LIST has completed (a new leadership) the pass LISTs too.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::{self, Store, store::Writer};

use crate::names::labels;

/// How long a write may stay unseen before the store is trusted again (a watch that works
/// delivers its event within a second or two).
pub const EXPECTATION_TTL: Duration = Duration::from_secs(30);

/// A pod write of this process the store must show before it is read again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// The pod `name` was created with `uid` (unknown: any pod of that name will do).
    Created {
        name: String,
        uid: Option<String>,
        at: Instant,
    },
    /// The pod `name` with `uid` was deleted.
    Deleted {
        name: String,
        uid: Option<String>,
        at: Instant,
    },
}

impl Expectation {
    fn at(&self) -> Instant {
        match self {
            Self::Created { at, .. } | Self::Deleted { at, .. } => *at,
        }
    }

    /// Whether `cached` (the ShardSet's pods in the store) shows this write.
    pub fn shown_in(&self, cached: &[Pod]) -> bool {
        let same = |pod: &Pod, name: &str, uid: &Option<String>| {
            pod.metadata.name.as_deref() == Some(name)
                && (uid.is_none() || pod.metadata.uid == *uid)
        };
        match self {
            Self::Created { name, uid, .. } => cached.iter().any(|p| same(p, name, uid)),
            Self::Deleted { name, uid, .. } => !cached
                .iter()
                .any(|p| same(p, name, uid) && p.metadata.deletion_timestamp.is_none()),
        }
    }
}

/// The expectations still outstanding at `now`: neither shown in `cached` nor lapsed.
pub fn outstanding(
    expectations: Vec<Expectation>,
    cached: &[Pod],
    now: Instant,
) -> Vec<Expectation> {
    expectations
        .into_iter()
        .filter(|e| now.saturating_duration_since(e.at()) < EXPECTATION_TTL && !e.shown_in(cached))
        .collect()
}

/// The pod store of the running controller and the expectations of each ShardSet
/// (`namespace/name`).
#[derive(Default)]
pub struct PodCache {
    store: RwLock<Option<Store<Pod>>>,
    expectations: Mutex<HashMap<String, Vec<Expectation>>>,
}

impl PodCache {
    /// A new, empty store for a controller about to start (a new leadership: nothing of the
    /// last one is trusted); the writer that fills it. Earlier expectations are dropped: the new
    /// store's first LIST comes after every write they stand for.
    pub fn renew(&self) -> Writer<Pod> {
        let (store, writer) = reflector::store();
        if let Ok(mut current) = self.store.write() {
            *current = Some(store);
        }
        if let Ok(mut expectations) = self.expectations.lock() {
            expectations.clear();
        }
        writer
    }

    /// The pods of ShardSet `shardset` in `namespace` carrying its label (ours, and foreign
    /// ones wearing it), sorted by name; `None` when the store cannot be trusted for it (not
    /// filled yet, or a write of this process for `key` it does not show yet): then LIST.
    pub fn shardset_pods(&self, key: &str, namespace: &str, shardset: &str) -> Option<Vec<Pod>> {
        let store = self.store.read().ok()?.clone()?;
        store.wait_until_ready().now_or_never()?.ok()?;
        let mut pods: Vec<Pod> = store
            .state_filter(|p| {
                p.namespace().as_deref() == Some(namespace)
                    && p.labels().get(labels::SHARDSET).map(String::as_str) == Some(shardset)
            })
            .iter()
            .map(|p| Pod::clone(p))
            .collect();
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut expectations = self.expectations.lock().ok()?;
        let pending = expectations.remove(key).unwrap_or_default();
        let pending = outstanding(pending, &pods, Instant::now());
        if pending.is_empty() {
            Some(pods)
        } else {
            expectations.insert(key.to_owned(), pending);
            None
        }
    }

    /// Remembers writes of this process on the pods of `key` until the store shows them.
    pub fn expect(&self, key: &str, writes: impl IntoIterator<Item = Expectation>) {
        if let Ok(mut expectations) = self.expectations.lock() {
            expectations
                .entry(key.to_owned())
                .or_default()
                .extend(writes);
        }
    }

    /// Forgets the expectations of a ShardSet that is gone.
    pub fn forget(&self, key: &str) {
        if let Ok(mut expectations) = self.expectations.lock() {
            expectations.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::watcher;
    use serde_json::json;

    use super::*;

    fn pod(name: &str, uid: &str, terminating: bool) -> Pod {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": uid,
                         "labels": {labels::SHARDSET: "bot"}},
        }))
        .expect("pod");
        if terminating {
            pod.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ));
        }
        pod
    }

    fn created(name: &str, uid: Option<&str>, at: Instant) -> Expectation {
        Expectation::Created {
            name: name.into(),
            uid: uid.map(Into::into),
            at,
        }
    }

    fn deleted(name: &str, uid: &str, at: Instant) -> Expectation {
        Expectation::Deleted {
            name: name.into(),
            uid: Some(uid.into()),
            at,
        }
    }

    #[test]
    fn a_create_is_shown_by_the_pod_with_its_uid() {
        let now = Instant::now();
        let e = created("bot-0", Some("u1"), now);
        assert!(!e.shown_in(&[]));
        // The name held by an older pod (the one deleted before) is not our create.
        assert!(!e.shown_in(&[pod("bot-0", "u0", true)]));
        assert!(e.shown_in(&[pod("bot-0", "u1", false)]));
        // Without a uid, any pod of the name.
        assert!(created("bot-0", None, now).shown_in(&[pod("bot-0", "u0", false)]));
    }

    #[test]
    fn a_delete_is_shown_by_the_pod_gone_terminating_or_replaced() {
        let now = Instant::now();
        let e = deleted("bot-0", "u1", now);
        assert!(!e.shown_in(&[pod("bot-0", "u1", false)]), "still running");
        assert!(e.shown_in(&[pod("bot-0", "u1", true)]), "terminating");
        assert!(e.shown_in(&[]), "gone");
        assert!(e.shown_in(&[pod("bot-0", "u2", false)]), "a new pod");
    }

    #[test]
    fn unseen_writes_stay_outstanding_until_they_lapse() {
        let start = Instant::now();
        let writes = vec![
            created("bot-0", Some("u1"), start),
            created("bot-1", Some("u2"), start),
        ];
        let left = outstanding(writes.clone(), &[pod("bot-0", "u1", false)], start);
        assert_eq!(left, vec![writes[1].clone()]);
        let later = start + EXPECTATION_TTL;
        assert!(outstanding(writes, &[], later).is_empty(), "lapsed");
    }

    fn filled(cache: &PodCache, pods: &[Pod]) {
        let mut writer = cache.renew();
        writer.apply_watcher_event(&watcher::Event::Init);
        for p in pods {
            writer.apply_watcher_event(&watcher::Event::InitApply(p.clone()));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
    }

    #[test]
    fn the_store_is_read_only_when_filled_and_showing_our_writes() {
        let cache = PodCache::default();
        assert_eq!(cache.shardset_pods("ns/bot", "ns", "bot"), None, "no store");
        let mut writer = cache.renew();
        assert_eq!(
            cache.shardset_pods("ns/bot", "ns", "bot"),
            None,
            "not filled"
        );
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitApply(pod("bot-1", "u1", false)));
        writer.apply_watcher_event(&watcher::Event::InitApply(pod("bot-0", "u0", false)));
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let names = |pods: Option<Vec<Pod>>| {
            pods.map(|ps| ps.iter().map(ResourceExt::name_any).collect::<Vec<_>>())
        };
        assert_eq!(
            names(cache.shardset_pods("ns/bot", "ns", "bot")),
            Some(vec!["bot-0".to_owned(), "bot-1".to_owned()])
        );
        assert_eq!(
            names(cache.shardset_pods("other/bot", "other", "bot")),
            Some(vec![])
        );

        cache.expect("ns/bot", [created("bot-2", Some("u2"), Instant::now())]);
        assert_eq!(
            cache.shardset_pods("ns/bot", "ns", "bot"),
            None,
            "create unseen"
        );
        writer.apply_watcher_event(&watcher::Event::Apply(pod("bot-2", "u2", false)));
        assert_eq!(
            names(cache.shardset_pods("ns/bot", "ns", "bot")).map(|n| n.len()),
            Some(3)
        );

        cache.expect("ns/bot", [deleted("bot-0", "u0", Instant::now())]);
        assert_eq!(
            cache.shardset_pods("ns/bot", "ns", "bot"),
            None,
            "delete unseen"
        );
        writer.apply_watcher_event(&watcher::Event::Delete(pod("bot-0", "u0", false)));
        assert!(cache.shardset_pods("ns/bot", "ns", "bot").is_some());

        // A new leadership starts from an empty store that is not trusted until filled.
        filled(&cache, &[]);
        assert_eq!(
            names(cache.shardset_pods("ns/bot", "ns", "bot")),
            Some(vec![])
        );
    }
}
