//! The pass keeps the ShardSet's PodDisruptionBudget (see [`crate::disruption_budget`]) the way it
//! keeps every object the ShardSet owns ([`super::owned`]). Without a budget the pods run as
//! before, only drains are not paced, so a failure is a `Degraded` problem
//! (`DisruptionBudgetFailed`) that says why.

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;

use super::owned::{self, Described};
use crate::context::Context;
use crate::crd::ShardSet;
use crate::disruption_budget;
use crate::plan::Progress;
use crate::status::Problem;

const BUDGET: Described = Described {
    kind: "PodDisruptionBudget",
    without: "drains are not paced one pod at a time",
    gives_back: "let the operator pace drains",
    problem: Problem::DisruptionBudgetFailed,
};

/// Brings the budget in line with `progress`; the problem when it cannot.
pub async fn keep(
    ctx: &Context,
    ss: &ShardSet,
    namespace: &str,
    progress: &Progress,
) -> Option<Problem> {
    let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), namespace);
    owned::keep(
        &api,
        &disruption_budget::name(ss),
        disruption_budget::build(ss, progress),
        disruption_budget::step,
        &BUDGET,
    )
    .await
}
