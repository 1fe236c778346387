//! The ShardSet CRD on the test cluster: the generated `crds/` file applied (as after a chart
//! upgrade) once per test binary, and served before any scenario uses it; or any chart's `crds/`
//! directory (a previous release's, for the upgrade scenario), applied the way the README tells
//! users to after `helm upgrade`.

use std::path::Path;
use std::sync::OnceLock;

use crate::tools::{kubectl, repo_path};

/// Applies the generated CRD (server-side, taking over fields an older copy set) and waits until
/// it is Established; once per test binary, later calls return the first call's result.
pub fn install_crd() -> anyhow::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        apply_crd_dir(&repo_path("crds/shardset.io_shardsets.yaml")).map_err(|e| format!("{e:#}"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// `kubectl apply --server-side --force-conflicts -f <path>` (a CRD file or a chart's `crds/`
/// directory), then waits until the ShardSet CRD is Established.
pub fn apply_crd_dir(path: &Path) -> anyhow::Result<()> {
    kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        &path.to_string_lossy(),
    ])?;
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/shardsets.shardset.io",
        "--timeout=60s",
    ])?;
    Ok(())
}
