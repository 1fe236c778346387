//! The ShardSet CRD on the test cluster: the generated `crds/` file applied (as after a chart
//! upgrade) once per test binary, and served before any scenario uses it.

use std::sync::OnceLock;

use crate::tools::{kubectl, repo_path};

/// Applies the generated CRD (server-side, taking over fields an older copy set) and waits until
/// it is Established; once per test binary, later calls return the first call's result.
pub fn install_crd() -> anyhow::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let path = repo_path("crds/shardset.io_shardsets.yaml");
        let path = path.to_string_lossy();
        kubectl(&["apply", "--server-side", "--force-conflicts", "-f", &path])
            .and_then(|_| {
                kubectl(&[
                    "wait",
                    "--for=condition=Established",
                    "crd/shardsets.shardset.io",
                    "--timeout=60s",
                ])
            })
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}
