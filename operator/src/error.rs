//! Why a reconciliation failed: the error of each step of a pass (each defined in its step's file
//! under `reconcile/`), kube's finalizer errors around them, and a ShardSet without a namespace.
//! Problems the user must fix (a missing Secret, a bad token) are not errors: they become status
//! conditions. Errors are what a retry may cure, or input no retry can (`is_invalid_input`).

use kube::runtime::finalizer;

use crate::reconcile::act::ActError;
use crate::reconcile::cleanup::CleanupError;
use crate::reconcile::decide::DecideError;
use crate::reconcile::dereference::DereferenceError;
use crate::reconcile::update_status::StatusError;

/// Why a reconciliation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Dereference(#[from] DereferenceError),
    #[error(transparent)]
    Decide(#[from] DecideError),
    #[error(transparent)]
    Act(#[from] ActError),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Cleanup(#[from] CleanupError),
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    #[error("the ShardSet has no namespace")]
    MissingNamespace,
}

/// Result of a reconciliation step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A fixed, low-cardinality label for `reconcile_failures_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Dereference(e) => e.metric_label(),
            Self::Decide(e) => e.metric_label(),
            Self::Act(e) => e.metric_label(),
            Self::Status(e) => e.metric_label(),
            Self::Cleanup(e) => e.metric_label(),
            Self::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => {
                    e.metric_label()
                }
                finalizer::Error::AddFinalizer(_) | finalizer::Error::RemoveFinalizer(_) => {
                    "finalizer"
                }
                finalizer::Error::UnnamedObject | finalizer::Error::InvalidFinalizer => {
                    "invalid_object"
                }
            },
            Self::MissingNamespace => "invalid_object",
        }
    }

    /// True when retrying without a change of the object cannot help.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            Self::Decide(e) => e.is_invalid_input(),
            Self::MissingNamespace => true,
            Self::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => {
                    e.is_invalid_input()
                }
                finalizer::Error::UnnamedObject | finalizer::Error::InvalidFinalizer => true,
                _ => false,
            },
            Self::Dereference(_) | Self::Act(_) | Self::Status(_) | Self::Cleanup(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::BuildError;

    #[test]
    fn labels_are_fixed_and_invalid_input_waits_for_a_change() {
        let cleanup = Error::Cleanup(CleanupError::Redis("refused".into()));
        assert_eq!(cleanup.metric_label(), "cleanup");
        assert!(!cleanup.is_invalid_input());
        let wrapped = Error::Finalizer(Box::new(finalizer::Error::CleanupFailed(cleanup)));
        assert_eq!(
            wrapped.metric_label(),
            "cleanup",
            "the step's label, not the wrapper's"
        );
        assert_eq!(Error::MissingNamespace.metric_label(), "invalid_object");
        assert!(Error::MissingNamespace.is_invalid_input());
        let unnamed = Error::Finalizer(Box::new(finalizer::Error::UnnamedObject));
        assert!(unnamed.is_invalid_input());
        let build = Error::Decide(DecideError::Build(BuildError::MissingMetadata("uid")));
        assert_eq!(build.metric_label(), "build");
        assert!(build.is_invalid_input());
    }
}
