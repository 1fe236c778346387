//! Every name the operator writes onto Kubernetes objects, in one place: label keys and values,
//! the finalizer, the server-side-apply field manager and the Events reporter. Tests, the chart
//! and users' selectors rely on these strings; changing one is a breaking change.

/// API group of the ShardSet.
pub const GROUP: &str = "shardset.io";

/// Field manager of every server-side apply (pods and ShardSet status).
pub const FIELD_MANAGER: &str = "shardset-operator";

/// Finalizer that cleans the ShardSet's Redis keys before the object goes.
pub const FINALIZER: &str = "shardset.io/cleanup";

/// `reportingController` of the Events we publish.
pub const EVENT_REPORTER: &str = "shardset.io/operator";

/// Name of the `coordination.k8s.io` Lease used for leader election (default).
pub const LEASE_NAME: &str = "shardset-operator";

/// Label keys on worker pods.
pub mod labels {
    /// `app.kubernetes.io/name`: always [`super::APP_NAME`].
    pub const NAME: &str = "app.kubernetes.io/name";
    /// `app.kubernetes.io/instance`: the ShardSet's name.
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    /// `app.kubernetes.io/component`: always [`super::COMPONENT`].
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// `app.kubernetes.io/managed-by`: always [`super::MANAGED_BY`]; the operator's pod watch
    /// selects on it.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// `app.kubernetes.io/part-of`: always [`super::PART_OF`].
    pub const PART_OF: &str = "app.kubernetes.io/part-of";

    /// The owning ShardSet's name; pods are listed and pruned by it.
    pub const SHARDSET: &str = "shardset.io/shardset";
    /// The layout (shard total) the pod belongs to, `contract::layout_name(total)`.
    pub const LAYOUT: &str = "shardset.io/layout";
    /// First shard id the pod runs (inclusive).
    pub const SHARD_FIRST: &str = "shardset.io/shard-first";
    /// Last shard id the pod runs (inclusive).
    pub const SHARD_LAST: &str = "shardset.io/shard-last";
    /// Hash of everything the operator put into the pod; a different desired hash is drift.
    pub const SPEC_HASH: &str = "shardset.io/spec-hash";
}

/// Value of `app.kubernetes.io/name` on worker pods.
pub const APP_NAME: &str = "shard-worker";
/// Value of `app.kubernetes.io/component` on worker pods.
pub const COMPONENT: &str = "gateway-shards";
/// Value of `app.kubernetes.io/managed-by` on worker pods.
pub const MANAGED_BY: &str = "shardset-operator";
/// Value of `app.kubernetes.io/part-of` on worker pods.
pub const PART_OF: &str = "shardset";

/// Label selector of every pod this operator manages.
pub fn managed_pods_selector() -> String {
    format!("{}={}", labels::MANAGED_BY, MANAGED_BY)
}

/// Label selector of the pods of every ShardSet (the controller's pod watch and store).
pub fn any_shardset_pods_selector() -> String {
    labels::SHARDSET.to_owned()
}

/// Label selector of the pods of one ShardSet (also `status.selector`, for the scale subresource).
pub fn shardset_pods_selector(shardset: &str) -> String {
    format!("{}={shardset}", labels::SHARDSET)
}
