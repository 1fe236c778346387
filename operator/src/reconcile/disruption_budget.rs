//! The pass keeps the ShardSet's PodDisruptionBudget (see [`crate::disruption_budget`]): it reads
//! the one under the ShardSet's name, creates it when missing, applies it when its spec is not
//! what the pods need now, and leaves alone one the ShardSet does not own. A steady state only
//! reads. Nothing here fails the pass: without a budget the pods run as before, only drains are
//! not paced, so a failure is a `Degraded` problem (`DisruptionBudgetFailed`) that says why.

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tracing::info;

use crate::context::Context;
use crate::crd::ShardSet;
use crate::disruption_budget::{self, Step};
use crate::names;
use crate::plan::Progress;
use crate::status::Problem;

/// Brings the budget in line with `progress`; the problem when it cannot.
pub async fn keep(
    ctx: &Context,
    ss: &ShardSet,
    namespace: &str,
    progress: &Progress,
) -> Option<Problem> {
    let name = disruption_budget::name(ss);
    let failed = |what: &str, error: kube::Error| {
        Some(Problem::DisruptionBudgetFailed(format!(
            "cannot {what} the PodDisruptionBudget {name}, so drains are not paced one pod at a time: {error}"
        )))
    };
    let want = match disruption_budget::build(ss, progress) {
        Ok(want) => want,
        Err(error) => {
            return Some(Problem::DisruptionBudgetFailed(format!(
                "cannot build the PodDisruptionBudget {name}: {error}"
            )));
        }
    };
    let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), namespace);
    let found = match api.get_opt(&name).await {
        Ok(found) => found,
        Err(error) => return failed("read", error),
    };
    match disruption_budget::step(want, found.as_ref()) {
        Step::Keep => None,
        Step::Create(pdb) => {
            let params = PostParams {
                field_manager: Some(names::FIELD_MANAGER.into()),
                ..PostParams::default()
            };
            match api.create(&params, &pdb).await {
                Ok(_) => {
                    info!(pdb = %name, "PodDisruptionBudget created");
                    None
                }
                Err(kube::Error::Api(status)) if status.code == 409 => name_taken(&name),
                Err(error) => failed("create", error),
            }
        }
        Step::Update(pdb) => {
            let params = PatchParams::apply(names::FIELD_MANAGER).force();
            match api.patch(&name, &params, &Patch::Apply(&pdb)).await {
                Ok(_) => {
                    info!(pdb = %name, "PodDisruptionBudget updated");
                    None
                }
                Err(error) => failed("update", error),
            }
        }
        Step::NameTaken => name_taken(&name),
    }
}

fn name_taken(name: &str) -> Option<Problem> {
    Some(Problem::DisruptionBudgetFailed(format!(
        "a PodDisruptionBudget named {name} exists that this ShardSet does not own; it is left alone (delete or rename it to let the operator pace drains)"
    )))
}
