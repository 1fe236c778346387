//! The pass keeps an object the ShardSet owns besides its pods (see [`crate::owned`]): it reads
//! the one under the ShardSet's name, creates it when missing, applies it when its spec is not
//! what is wanted now, and leaves alone one the ShardSet does not own. A steady state only reads.
//! Nothing here fails the pass: a failure is a `Degraded` problem that says why and what it costs.

use std::fmt::Debug;

use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::info;

use crate::names;
use crate::owned::Step;
use crate::pods::BuildError;
use crate::status::Problem;

/// How one kind of owned object is described to the user.
pub struct Described {
    /// The kind, as the user knows it (`PodDisruptionBudget`).
    pub kind: &'static str,
    /// What the ShardSet goes without when it cannot be kept (`drains are not paced ...`).
    pub without: &'static str,
    /// What deleting a foreign object under its name gives back (`let the operator pace drains`).
    pub gives_back: &'static str,
    /// The problem that carries the message.
    pub problem: fn(String) -> Problem,
}

/// Brings the object named `name` in line with `want`, deciding with `step`; the problem when
/// it cannot.
pub async fn keep<K>(
    api: &Api<K>,
    name: &str,
    want: Result<K, BuildError>,
    step: impl FnOnce(K, Option<&K>) -> Step<K>,
    described: &Described,
) -> Option<Problem>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let kind = described.kind;
    let failed = |what: &str, error: kube::Error| {
        Some((described.problem)(format!(
            "cannot {what} the {kind} {name}, so {}: {error}",
            described.without
        )))
    };
    let name_taken = || {
        Some((described.problem)(format!(
            "a {kind} named {name} exists that this ShardSet does not own; it is left alone (delete or rename it to {})",
            described.gives_back
        )))
    };
    let want = match want {
        Ok(want) => want,
        Err(error) => {
            return Some((described.problem)(format!(
                "cannot build the {kind} {name}: {error}"
            )));
        }
    };
    let found = match api.get_opt(name).await {
        Ok(found) => found,
        Err(error) => return failed("read", error),
    };
    match step(want, found.as_ref()) {
        Step::Keep => None,
        Step::Create(object) => {
            let params = PostParams {
                field_manager: Some(names::FIELD_MANAGER.into()),
                ..PostParams::default()
            };
            match api.create(&params, &object).await {
                Ok(_) => {
                    info!(kind, name, "created");
                    None
                }
                Err(kube::Error::Api(status)) if status.code == 409 => name_taken(),
                Err(error) => failed("create", error),
            }
        }
        Step::Update(object) => {
            let params = PatchParams::apply(names::FIELD_MANAGER).force();
            match api.patch(name, &params, &Patch::Apply(&object)).await {
                Ok(_) => {
                    info!(kind, name, "updated");
                    None
                }
                Err(error) => failed("update", error),
            }
        }
        Step::NameTaken => name_taken(),
    }
}
