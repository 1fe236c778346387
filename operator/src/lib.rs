//! The ShardSet operator: a kube-rs controller that runs a Discord bot's gateway shards as one
//! worker pod per shard range.
//!
//! Pure parts (no client, unit-tested):
//! - [`crd`]: the `ShardSet` resource, its schema and CEL validation.
//! - [`names`]: label keys, finalizer, field manager: every name we write on objects.
//! - [`plan`]: shard ranges and the pods to create, delete or replace.
//! - [`pods`]: the worker Pod for one range.
//! - [`reshard`]: the shard total, and the hand-over between layouts step by step
//!   (`docs/resharding.md`), with its I/O in [`reshard::handover`].
//! - [`node_loss`]: when a pod on a lost node is force-deleted, and its node-loss tolerations.
//! - [`status`]: status summary and conditions.
//! - [`text`]: lists and notes cut to size for people.
//!
//! I/O parts:
//! - [`context`]: what every reconcile shares (client, Events, metrics, Discord and Redis state).
//! - [`controller`]: `reconcile` (with a finalizer) and `error_policy`.
//! - [`apply`]: server-side apply of pods and status, pruning.
//! - [`discord`]: `GET /gateway/bot` and `/users/@me`, refreshed on a period with backoff.
//! - [`redis_state`]: the workers' shard status, and cleanup of the bot's keys.
//! - [`metrics`], [`telemetry`]: Prometheus metrics and JSON logs.

pub mod crd;
pub mod names;
pub mod node_loss;
pub mod plan;
pub mod pods;
pub mod reshard;
pub mod status;
pub mod text;

pub mod apply;
pub mod context;
pub mod controller;
pub mod discord;
pub mod metrics;
pub mod redis_state;
pub mod telemetry;

/// Why a reconciliation failed. Problems the user must fix (a missing Secret, a bad token) are
/// not errors: they become status conditions. Errors are what a retry may cure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("cannot build the worker pods: {0}")]
    Build(#[from] pods::BuildError),
    #[error("the ShardSet has no namespace")]
    MissingNamespace,
    #[error("cleanup of the bot's Redis keys failed (will retry): {0}")]
    Cleanup(String),
}

/// Result of a reconciliation step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A fixed, low-cardinality label for `reconcile_failures_total`.
    pub fn metric_label(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match self {
            Self::Kube(_) => "kube",
            Self::Finalizer(inner) => match inner.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.metric_label(),
                F::AddFinalizer(_) | F::RemoveFinalizer(_) => "finalizer",
                F::UnnamedObject | F::InvalidFinalizer => "invalid_object",
            },
            Self::Build(_) => "build",
            Self::MissingNamespace => "invalid_object",
            Self::Cleanup(_) => "cleanup",
        }
    }

    /// True when retrying without a change of the object cannot help.
    pub fn is_invalid_input(&self) -> bool {
        use kube::runtime::finalizer::Error as F;
        match self {
            Self::Build(_) | Self::MissingNamespace => true,
            Self::Finalizer(inner) => match inner.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.is_invalid_input(),
                F::UnnamedObject | F::InvalidFinalizer => true,
                _ => false,
            },
            _ => false,
        }
    }
}
