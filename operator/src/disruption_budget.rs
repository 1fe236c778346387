//! The worker pods' PodDisruptionBudget, without a client: one per ShardSet, named like it, owned
//! by it (deleted with it), selecting its pods. Voluntary disruptions (`kubectl drain`, a cluster
//! autoscaler's scale-down) then evict its pods one at a time: the evicted pod saves its sessions
//! and releases their leases on SIGTERM (custody), the operator creates it again on another node,
//! and it resumes them; only once it is Ready may the next one go. The operator's own deletes
//! (rolling updates, reshards) are not evictions and do not consult it.
//!
//! Why `minAvailable` and not `maxUnavailable: 1`: with `maxUnavailable` (or a percentage) the
//! disruption controller takes the expected pod count from the owner's scale subresource, and a
//! ShardSet's scale counts shards (`spec.shards`), not pods: 8 shards at 2 per pod would ask for
//! 7 healthy pods of 4 and block every drain, and with `autoShards` (no `spec.shards`) it would
//! read 0 and protect nothing. An integer `minAvailable` is compared with the pods the selector
//! matches, so the operator sets it to the pods it wants, minus one: the pods of the layout the
//! pods follow, plus those of other layouts and older packings still running (a drain waits for
//! a reshard or a repacking to end).
//!
//! `unhealthyPodEvictionPolicy: AlwaysAllow`: a pod that is not Ready handles no events, so
//! evicting it costs nothing and a crash-looping pod never blocks a drain.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use crate::crd::ShardSet;
use crate::owned;
use crate::plan::Progress;
use crate::pods::{self, BuildError};

/// `unhealthyPodEvictionPolicy`: not-Ready pods may always be evicted.
pub const UNHEALTHY_POD_EVICTION_POLICY: &str = "AlwaysAllow";

/// The budget's name: the ShardSet's.
pub fn name(shardset: &ShardSet) -> String {
    shardset.name_any()
}

/// The pods that must stay available: every pod the ShardSet runs or is about to run, minus one.
pub fn min_available(progress: &Progress) -> i32 {
    let pods = progress.desired_pods + progress.old_layout_pods + progress.outside_plan_pods;
    i32::try_from(pods.saturating_sub(1)).unwrap_or(i32::MAX)
}

/// The budget the ShardSet needs now, given where its pods stand.
pub fn build(shardset: &ShardSet, progress: &Progress) -> Result<PodDisruptionBudget, BuildError> {
    let metadata = owned::metadata(shardset)?;
    let name = shardset.name_any();
    Ok(PodDisruptionBudget {
        metadata,
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(min_available(progress))),
            selector: Some(LabelSelector {
                match_labels: Some(pods::selector_labels(&name)),
                ..LabelSelector::default()
            }),
            unhealthy_pod_eviction_policy: Some(UNHEALTHY_POD_EVICTION_POLICY.to_owned()),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

/// What to do about the budget.
pub type Step = owned::Step<PodDisruptionBudget>;

/// Compares the wanted budget with the one found under its name (`None`: none).
pub fn step(want: PodDisruptionBudget, found: Option<&PodDisruptionBudget>) -> Step {
    owned::step(want, found, |f: &PodDisruptionBudget| {
        f.spec.as_ref().map(|s| {
            (
                s.min_available.clone(),
                s.max_unavailable.clone(),
                s.selector.clone(),
                s.unhealthy_pod_eviction_policy.clone(),
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ShardSetSpec;

    fn shardset() -> ShardSet {
        let spec: ShardSetSpec = serde_json::from_value(serde_json::json!({
            "shards": 8,
            "shardsPerPod": 2,
            "tokenSecretRef": {"name": "bot-token"},
            "redis": {"url": "redis://redis:6379"},
        }))
        .expect("spec");
        let mut ss = ShardSet::new("bot", spec);
        ss.metadata.namespace = Some("ns".into());
        ss.metadata.uid = Some("uid-1".into());
        ss
    }

    fn four_pods() -> Progress {
        Progress {
            desired_pods: 4,
            desired_shards: 8,
            ..Progress::default()
        }
    }

    #[test]
    fn all_pods_but_one_stay_available() {
        assert_eq!(min_available(&four_pods()), 3);
        let resharding = Progress {
            old_layout_pods: 4,
            ..four_pods()
        };
        assert_eq!(min_available(&resharding), 7, "a drain waits for a reshard");
        let repacking = Progress {
            desired_pods: 2,
            outside_plan_pods: 3,
            ..Progress::default()
        };
        assert_eq!(min_available(&repacking), 4);
        assert_eq!(min_available(&Progress::default()), 0);
    }

    #[test]
    fn the_budget_selects_the_shardsets_pods_and_is_owned_by_it() {
        let pdb = build(&shardset(), &four_pods()).expect("build");
        assert_eq!(pdb.name_any(), "bot");
        assert_eq!(pdb.metadata.namespace.as_deref(), Some("ns"));
        let owner = &pdb.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("ShardSet", "uid-1", Some(true))
        );
        let spec = pdb.spec.as_ref().expect("spec");
        assert_eq!(spec.min_available, Some(IntOrString::Int(3)));
        assert_eq!(spec.max_unavailable, None);
        assert_eq!(
            spec.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow")
        );
        let selected = spec
            .selector
            .as_ref()
            .and_then(|s| s.match_labels.clone())
            .expect("labels");
        // Every label it selects on is one the operator puts on each of its pods.
        let (_, pod) = crate::pods::desired_pods(&shardset(), "worker:dev", 8)
            .expect("pods")
            .remove(0);
        for (key, value) in &selected {
            assert_eq!(pod.labels().get(key), Some(value), "{key}");
        }
    }

    #[test]
    fn a_budget_is_written_only_when_it_differs_and_never_over_a_foreign_one() {
        let want = build(&shardset(), &four_pods()).expect("build");
        assert_eq!(step(want.clone(), None), Step::Create(want.clone()));
        let mut found = want.clone();
        found.metadata.resource_version = Some("7".into());
        found.metadata.labels = None;
        assert_eq!(step(want.clone(), Some(&found)), Step::Keep);

        let more = build(
            &shardset(),
            &Progress {
                old_layout_pods: 4,
                ..four_pods()
            },
        )
        .expect("build");
        assert_eq!(step(more.clone(), Some(&found)), Step::Update(more));

        let mut foreign = found.clone();
        foreign.metadata.owner_references = None;
        assert_eq!(step(want.clone(), Some(&foreign)), Step::NameTaken);
        let mut other_owner = found;
        if let Some(refs) = other_owner.metadata.owner_references.as_mut() {
            refs[0].uid = "uid-2".into();
        }
        assert_eq!(step(want, Some(&other_owner)), Step::NameTaken);
    }
}
