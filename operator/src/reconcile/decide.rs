//! The decision of a pass, without a client: the pods the layout needs (built from the spec, with
//! the token's digest in their hash), and the plan that gets there from the observed pods, within
//! what the reshard step allows (its gates). Also the owned pods that cannot start, for the
//! `PodsFailing` problem.

use k8s_openapi::api::core::v1::Pod;
use shardset_contract::layout_name;
use shardset_contract::token::Token;

use crate::crd::ShardSet;
use crate::plan::{self, DesiredPod, Gates, Plan};
use crate::pods::{self, BuildError};
use crate::reconcile::dereference::Pods;
use crate::reconcile::fatal_markers::fatal_basis;
use crate::reshard::handover::Pass;
use crate::status::Problem;
use crate::text::summarize_list;

/// Why no decision could be made: the spec cannot be turned into pods.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("cannot build the worker pods: {0}")]
    Build(#[from] BuildError),
}

impl DecideError {
    /// A fixed label for `reconcile_failures_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Build(_) => "build",
        }
    }

    /// True when retrying without a change of the ShardSet cannot help.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Self::Build(_))
    }
}

/// What the pass will do.
pub struct Decided {
    /// The pods of the layout the pods follow, as plan records and as objects to create.
    pub desired: Vec<(DesiredPod, Pod)>,
    pub plan: Plan,
    /// The layout the pods follow this pass (the hand-over's new layout, or the serving one
    /// while a reshard is refused): its pods are the ones created.
    pub pod_layout: Option<String>,
    /// Its shard total.
    pub plan_total: Option<u32>,
    /// Owned pods that cannot start (image pull, crash loop, bad config).
    pub pods_failing: Option<Problem>,
}

/// Decides the pass. `image` is the worker image (`None`: unknown, and no pod can be built),
/// `total` the spec's shard total, `reshard` the reshard step's outcome (`None` when it did not
/// run), `blocked` true when no pod may be created.
pub fn decide(
    ss: &ShardSet,
    image: Option<&str>,
    token: Option<&Token>,
    total: Option<u32>,
    reshard: Option<&Pass>,
    pods: &Pods,
    blocked: bool,
) -> Result<Decided, DecideError> {
    let plan_total = reshard.map(|r| r.decision.layout).or(total);
    let desired = match (plan_total, image) {
        // A new token (or new intents) is a new pod template: the pods read it when they start.
        (Some(total), Some(image)) => pods::desired_pods_for_token(
            ss,
            image,
            total,
            token.map(|t| fatal_basis(t, ss.spec.intents)).as_deref(),
        )?,
        _ => Vec::new(),
    };
    let records: Vec<DesiredPod> = desired.iter().map(|(d, _)| d.clone()).collect();
    let gates = match reshard {
        Some(r) => Gates {
            create: r.decision.create,
            delete_layouts: &r.decision.delete,
        },
        None => Gates::OPEN,
    };
    let pod_layout = plan_total.map(layout_name);
    let plan = plan::plan(
        pod_layout.as_deref().unwrap_or_default(),
        &records,
        &pods.observed,
        gates,
        blocked,
    );

    let stuck: Vec<String> = pods
        .existing
        .iter()
        .zip(&pods.observed)
        .filter(|(_, o)| o.owned && !o.terminating)
        .filter_map(|(p, _)| pods::stuck_reason(p))
        .collect();
    let pods_failing = (!stuck.is_empty()).then(|| Problem::PodsFailing(summarize_list(&stuck, 3)));

    Ok(Decided {
        desired,
        plan,
        pod_layout,
        plan_total,
        pods_failing,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus};

    use super::*;
    use crate::crd::ShardSetSpec;
    use crate::plan::ShardRange;
    use crate::reshard::decision::{Decision, Phase};

    fn shardset() -> ShardSet {
        let spec: ShardSetSpec = serde_json::from_value(serde_json::json!({
            "shards": 10,
            "shardsPerPod": 3,
            "image": "worker:dev",
            "tokenSecretRef": {"name": "bot-token"},
            "redis": {"url": "redis://redis:6379"},
        }))
        .expect("spec");
        let mut ss = ShardSet::new("bot", spec);
        ss.metadata.namespace = Some("ns".into());
        ss.metadata.uid = Some("uid-1".into());
        ss
    }

    fn pods_of(existing: Vec<Pod>) -> Pods {
        let observed = existing.iter().map(|p| pods::observe(p, "uid-1")).collect();
        Pods { existing, observed }
    }

    const IMAGE: &str = "worker:dev";

    fn token() -> Token {
        Token::new("a.b.c")
    }

    #[test]
    fn a_new_shardset_creates_every_pod_of_its_layout() {
        let ss = shardset();
        let d = decide(
            &ss,
            Some(IMAGE),
            Some(&token()),
            Some(10),
            None,
            &pods_of(vec![]),
            false,
        )
        .expect("decide");
        assert_eq!(
            (d.pod_layout.as_deref(), d.plan_total),
            (Some("10"), Some(10))
        );
        assert_eq!(
            d.plan.create,
            ["bot-10-0-2", "bot-10-3-5", "bot-10-6-8", "bot-10-9-9"]
        );
        assert_eq!(d.desired.len(), 4);
        assert!(d.plan.delete.is_empty() && d.pods_failing.is_none());
    }

    #[test]
    fn blocked_or_without_a_total_nothing_is_created() {
        let ss = shardset();
        let d = decide(
            &ss,
            Some(IMAGE),
            None,
            Some(10),
            None,
            &pods_of(vec![]),
            true,
        )
        .expect("decide");
        assert!(d.plan.create.is_empty(), "{:?}", d.plan.create);
        let d = decide(&ss, Some(IMAGE), None, None, None, &pods_of(vec![]), true).expect("decide");
        assert!(d.desired.is_empty() && d.plan_total.is_none() && d.pod_layout.is_none());
    }

    #[test]
    fn the_token_digest_is_in_the_hash_and_a_new_token_replaces_every_pod() {
        let ss = shardset();
        let first = decide(
            &ss,
            Some(IMAGE),
            Some(&token()),
            Some(10),
            None,
            &pods_of(vec![]),
            false,
        )
        .expect("decide");
        let running: Vec<Pod> = first.desired.iter().map(|(_, p)| p.clone()).collect();
        let again = decide(
            &ss,
            Some(IMAGE),
            Some(&token()),
            Some(10),
            None,
            &pods_of(running.clone()),
            false,
        )
        .expect("decide");
        assert!(again.plan.is_noop(), "{:?}", again.plan);
        let new = Token::new("a.b.d");
        let rolled = decide(
            &ss,
            Some(IMAGE),
            Some(&new),
            Some(10),
            None,
            &pods_of(running),
            false,
        )
        .expect("decide");
        assert_eq!(rolled.plan.progress.drifted_pods, 4);
    }

    #[test]
    fn the_reshard_step_picks_the_layout_and_gates_creation() {
        let ss = shardset();
        // A reshard to 10 refused: the pods follow the serving layout (4 shards), created freely.
        let refused = Pass {
            decision: Decision {
                layout: 4,
                create: true,
                delete: Vec::new(),
                write: None,
                phase: Phase::InsufficientSessionStarts,
                message: String::new(),
                handover: None,
                starts: false,
            },
            report: None,
            statuses: None,
            requeue: None,
            problem: None,
        };
        let d = decide(
            &ss,
            Some(IMAGE),
            None,
            Some(10),
            Some(&refused),
            &pods_of(vec![]),
            false,
        )
        .expect("decide");
        assert_eq!(d.pod_layout.as_deref(), Some("4"));
        assert_eq!(d.plan.create, ["bot-4-0-2", "bot-4-3-3"]);
        // A step that does not allow creating yet.
        let waiting = Pass {
            decision: Decision {
                layout: 10,
                create: false,
                ..refused.decision.clone()
            },
            ..refused
        };
        let d = decide(
            &ss,
            Some(IMAGE),
            None,
            Some(10),
            Some(&waiting),
            &pods_of(vec![]),
            false,
        )
        .expect("decide");
        assert!(d.plan.create.is_empty());
    }

    #[test]
    fn a_pod_that_cannot_pull_its_image_is_reported() {
        let ss = shardset();
        let mut pod =
            pods::build_pod(&ss, IMAGE, 10, ShardRange { first: 0, last: 2 }).expect("pod");
        pod.status = Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "worker".into(),
                image: "worker:dev".into(),
                state: Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("ImagePullBackOff".into()),
                        ..ContainerStateWaiting::default()
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        });
        let d = decide(
            &ss,
            Some(IMAGE),
            None,
            Some(10),
            None,
            &pods_of(vec![pod]),
            false,
        )
        .expect("decide");
        let problem = d.pods_failing.expect("a problem");
        assert_eq!(problem.reason(), "PodsFailing");
        assert!(
            problem.message().contains("bot-10-0-2"),
            "{}",
            problem.message()
        );
    }
}
