//! The pass keeps the ShardSet's worker NetworkPolicy (see [`crate::network_policy`]) the way it
//! keeps every object the ShardSet owns ([`super::owned`]), before it creates pods. Without it
//! the pods run as before, with their egress unlimited, so a failure is a `Degraded` problem
//! (`NetworkPolicyFailed`) that says why; it stops nothing.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::Api;

use super::owned::{self, Described};
use crate::context::Context;
use crate::crd::ShardSet;
use crate::network_policy;
use crate::status::Problem;

const POLICY: Described = Described {
    kind: "NetworkPolicy",
    without: "the worker pods' egress is not limited",
    gives_back: "let the operator limit the worker pods' egress",
    problem: Problem::NetworkPolicyFailed,
};

/// Brings the policy in line with the spec; the problem when it cannot.
pub async fn keep(ctx: &Context, ss: &ShardSet, namespace: &str) -> Option<Problem> {
    let api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), namespace);
    owned::keep(
        &api,
        &network_policy::name(ss),
        network_policy::build(ss),
        network_policy::step,
        &POLICY,
    )
    .await
}
