//! What the operator makes for a ShardSet besides its pods (the PodDisruptionBudget, the worker
//! NetworkPolicy), without a client: the metadata each such object carries (named like the
//! ShardSet, in its namespace, owned by it so that it goes with it, labelled like its pods), and
//! the decision to create, update or keep one, or to leave alone a foreign object under its name.

use std::collections::BTreeMap;

use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::crd::ShardSet;
use crate::names::{self, labels};
use crate::pods::{self, BuildError};

/// The metadata of an object the ShardSet owns: its name, namespace, controller owner reference
/// and the operator's labels.
pub fn metadata(shardset: &ShardSet) -> Result<ObjectMeta, BuildError> {
    let (name, namespace, owner) = pods::identity(shardset)?;
    Ok(ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(BTreeMap::from([
            (labels::NAME.to_owned(), names::APP_NAME.to_owned()),
            (labels::INSTANCE.to_owned(), name.to_owned()),
            (labels::MANAGED_BY.to_owned(), names::MANAGED_BY.to_owned()),
            (labels::PART_OF.to_owned(), names::PART_OF.to_owned()),
            (labels::SHARDSET.to_owned(), name.to_owned()),
        ])),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    })
}

/// What to do about an owned object.
#[derive(Debug, Clone, PartialEq)]
pub enum Step<K> {
    /// None exists: create it.
    Create(K),
    /// Ours, but its spec differs: apply it.
    Update(K),
    /// Ours and as wanted: nothing to write.
    Keep,
    /// An object the ShardSet does not control holds the name: left alone.
    NameTaken,
}

/// Compares the wanted object with the one found under its name (`None`: none); `spec` picks
/// what must match (the fields the operator sets; the API server's defaults are not compared).
pub fn step<K: Resource, T: PartialEq>(
    want: K,
    found: Option<&K>,
    spec: impl Fn(&K) -> T,
) -> Step<K> {
    let Some(found) = found else {
        return Step::Create(want);
    };
    let owner_uid = want.owner_references().first().map(|o| o.uid.clone());
    let ours = found
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == owner_uid.as_ref());
    if !ours {
        Step::NameTaken
    } else if spec(found) == spec(&want) {
        Step::Keep
    } else {
        Step::Update(want)
    }
}
