//! Worker pods on a lost node, without a client: when to give up on them, and the tolerations
//! that decide how soon Kubernetes evicts them.
//!
//! Our pods are bare Pods with deterministic names, so a replacement can only be created once the
//! old object is gone from the API. On a node that stops answering (powered off, partitioned,
//! `docker stop` of a kind node) the kubelet never confirms a deletion, and the old pod would stay
//! `Terminating` — its shards offline — until the node came back. So:
//!
//! 1. Worker pods tolerate `node.kubernetes.io/unreachable` and `not-ready` (NoExecute) for
//!    [`NODE_LOSS_TOLERATION_SECONDS`] instead of Kubernetes' default 300 s: after that, the
//!    taint-eviction controller deletes them (and marks them `DisruptionTarget`,
//!    `DeletionByTaintManager`). A toleration for the same key in `spec.pod.tolerations` wins.
//! 2. The operator force-deletes (grace 0) a terminating pod that the taint-eviction controller
//!    evicted, or whose deletion deadline passed more than [`STUCK_AFTER_DEADLINE`] ago (a kubelet
//!    that does not answer; e.g. someone deleted a pod on a dead node by hand). The plan then
//!    creates the pod again and the scheduler places it on a node that answers.
//!
//! Why this is safe even if the old container still runs (a partition, not a power-off): the old
//! worker holds each shard's Redis lease (`P:lease:<total>:<shard>`, renewed every 5 s, TTL 15 s).
//! The new pod's shards wait for those leases; as long as the old worker reaches Redis it keeps
//! them, and when its node returns the kubelet stops the orphaned container, which saves its
//! sessions and releases the leases, so the new pod resumes. A worker cut off from Redis can no
//! longer renew; its leases expire and the new pod takes over. Identify safety never depends on
//! this: every Identify still takes its bucket's gate in Redis (docs/redis-protocol.md).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Toleration};
use k8s_openapi::jiff::Timestamp;

/// Taint of a node whose kubelet stopped reporting.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Taint of a node whose kubelet reports NotReady.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// How long worker pods stay bound to a lost node before Kubernetes evicts them (its default is
/// 300 s: five minutes of offline shards is more than a bot should lose).
pub const NODE_LOSS_TOLERATION_SECONDS: i64 = 30;
/// How long past its deletion deadline a terminating pod may stay before the operator decides
/// its kubelet is gone.
pub const STUCK_AFTER_DEADLINE: Duration = Duration::from_secs(30);
/// The pod condition the taint-eviction controller sets on the pods it deletes.
const DISRUPTION_TARGET: &str = "DisruptionTarget";
/// Its reason when the pod was evicted for a NoExecute taint.
const EVICTED_BY_TAINT: &str = "DeletionByTaintManager";

/// The user's tolerations, plus ours for the node-loss taints the user did not mention.
pub fn tolerations(user: Option<&[Toleration]>) -> Vec<Toleration> {
    let mut all: Vec<Toleration> = user.unwrap_or_default().to_vec();
    for key in [TAINT_UNREACHABLE, TAINT_NOT_READY] {
        let mentioned = all.iter().any(|t| t.key.as_deref() == Some(key));
        if !mentioned {
            all.push(Toleration {
                key: Some(key.to_owned()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(NODE_LOSS_TOLERATION_SECONDS),
                value: None,
            });
        }
    }
    all
}

/// What to do about one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not terminating, or its kubelet still has time.
    Wait(Option<Duration>),
    /// Stuck on a lost node: force-delete it. The text says why (for Events and logs).
    ForceDelete(String),
}

/// Decides whether a pod is stuck on a lost node, at `now`. `Wait(Some(d))`: look again in `d`.
pub fn assess(pod: &Pod, now: Timestamp) -> Verdict {
    let Some(deadline) = pod.metadata.deletion_timestamp.as_ref().map(|t| t.0) else {
        return Verdict::Wait(None);
    };
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("its node");
    let evicted = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == DISRUPTION_TARGET
                    && c.status == "True"
                    && c.reason.as_deref() == Some(EVICTED_BY_TAINT)
            })
        });
    if evicted {
        return Verdict::ForceDelete(format!(
            "evicted from {node}, which is unreachable or not ready"
        ));
    }
    let overdue = now.duration_since(deadline);
    let limit = k8s_openapi::jiff::SignedDuration::try_from(STUCK_AFTER_DEADLINE)
        .unwrap_or(k8s_openapi::jiff::SignedDuration::MAX);
    if overdue > limit {
        Verdict::ForceDelete(format!(
            "still terminating {}s after its grace period: the kubelet of {node} does not answer",
            overdue.as_secs()
        ))
    } else {
        let left = Duration::try_from(limit - overdue).unwrap_or_default();
        Verdict::Wait(Some(left + Duration::from_secs(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(deleted_at: Option<Timestamp>, evicted: bool) -> Pod {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "bot-8-2-3"},
            "spec": {"nodeName": "node-a", "containers": []},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]},
        }))
        .expect("pod");
        pod.metadata.deletion_timestamp = deleted_at.map(Time);
        if evicted {
            let conditions = pod
                .status
                .as_mut()
                .and_then(|s| s.conditions.as_mut())
                .expect("conditions");
            conditions.push(
                serde_json::from_value(serde_json::json!({
                    "type": "DisruptionTarget", "status": "True",
                    "reason": "DeletionByTaintManager",
                    "message": "Taint manager: deleting due to NoExecute taint",
                }))
                .expect("condition"),
            );
        }
        pod
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("time")
    }

    #[test]
    fn running_pods_are_left_alone() {
        assert_eq!(assess(&pod(None, false), at(0)), Verdict::Wait(None));
        // Even when marked by the taint manager, a pod not yet deleted is not ours to delete.
        assert_eq!(assess(&pod(None, true), at(0)), Verdict::Wait(None));
    }

    #[test]
    fn pods_evicted_from_a_lost_node_are_force_deleted_at_once() {
        let verdict = assess(&pod(Some(at(30)), true), at(0));
        assert_eq!(
            verdict,
            Verdict::ForceDelete("evicted from node-a, which is unreachable or not ready".into())
        );
    }

    #[test]
    fn a_terminating_pod_gets_its_grace_period_and_a_margin() {
        // Deadline at 30 s (a 30 s grace period from 0); stuck only after 30 + 30 s.
        let p = pod(Some(at(30)), false);
        assert_eq!(
            assess(&p, at(10)),
            Verdict::Wait(Some(Duration::from_secs(51)))
        );
        assert_eq!(
            assess(&p, at(60)),
            Verdict::Wait(Some(Duration::from_secs(1)))
        );
        match assess(&p, at(61)) {
            Verdict::ForceDelete(why) => assert!(
                why.contains("31s after its grace period") && why.contains("node-a"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn our_tolerations_shorten_the_eviction_unless_the_user_set_them() {
        let ours = tolerations(None);
        assert_eq!(ours.len(), 2);
        for (t, key) in ours.iter().zip([TAINT_UNREACHABLE, TAINT_NOT_READY]) {
            assert_eq!(t.key.as_deref(), Some(key));
            assert_eq!(t.effect.as_deref(), Some("NoExecute"));
            assert_eq!(t.operator.as_deref(), Some("Exists"));
            assert_eq!(t.toleration_seconds, Some(NODE_LOSS_TOLERATION_SECONDS));
        }
        let user = vec![
            Toleration {
                key: Some(TAINT_UNREACHABLE.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(600),
                value: None,
            },
            Toleration {
                key: Some("dedicated".into()),
                operator: Some("Equal".into()),
                value: Some("bots".into()),
                effect: Some("NoSchedule".into()),
                toleration_seconds: None,
            },
        ];
        let merged = tolerations(Some(&user));
        assert_eq!(merged.len(), 3, "{merged:?}");
        assert_eq!(&merged[..2], &user[..], "the user's come first, unchanged");
        assert_eq!(merged[2].key.as_deref(), Some(TAINT_NOT_READY));
    }
}
