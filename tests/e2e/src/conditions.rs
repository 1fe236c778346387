//! Predicates for [`crate::wait_for`] and [`crate::wait_list`], and the readings of a pod or node
//! they are made of.

use k8s_openapi::api::core::v1::{Node, Pod};

/// The pod's Ready condition is True.
pub fn pod_ready(pod: Option<&Pod>) -> bool {
    pod.is_some_and(is_pod_ready)
}

/// For lists: the pod is Running and Ready.
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Running")
            && s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// The pod reached a terminal phase (Succeeded or Failed).
pub fn pod_finished(pod: Option<&Pod>) -> bool {
    pod.and_then(|p| p.status.as_ref())
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed")
}

/// The node the pod was scheduled on.
pub fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

/// The node's Ready condition has `status` ("True", "False" or "Unknown").
pub fn node_ready_is(status: &'static str) -> impl Fn(Option<&Node>) -> bool + Clone {
    move |node: Option<&Node>| {
        node.and_then(|n| n.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == status)
    }
}

/// The object is gone.
pub fn gone<K>(obj: Option<&K>) -> bool {
    obj.is_none()
}
