//! The fixtures and waits of the tests on the kind test cluster (`make cluster`), once for every
//! scenario: a scenario file in `tests/` holds only its story.
//!
//! The cluster is made once per test run (by `make e2e`, or `eval "$(make -s cluster)"` by hand), not
//! per test. Each test takes a fresh namespace on it and works there; the namespace is deleted when
//! the test ends, also when it fails (a `Drop` guard), so tests run in parallel without seeing each
//! other.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use k8s_openapi::api::core::v1::Pod;
//! use shardset_e2e::{TestNamespace, conditions, wait_for};
//! use std::time::Duration;
//!
//! // None (and a loud SKIPPED line on stderr) when no cluster is configured, see below.
//! let Some(ns) = TestNamespace::new("my-scenario").await else { return Ok(()) };
//! let pods = ns.api::<Pod>();
//! pods.create(&Default::default(), &shardset_e2e::probe_pod("p", &[])).await?;
//! wait_for(&pods, "p", conditions::pod_ready, Duration::from_secs(60)).await?;
//! let logs = ns.kubectl(&["logs", "p"])?;          // kubectl from the harness, -n <ns> added
//! # Ok(()) }
//! ```
//!
//! # Is a cluster configured?
//! [`E2E_ENV`] (`SHARDSET_E2E`) decides, and `make e2e` sets it:
//! - unset: every cluster test is **skipped loudly** (a `SKIPPED ...` line on the real stderr, not
//!   hidden by the test harness's capture), so `cargo test` on a machine without Docker still works;
//! - `1`: a cluster **must** answer: `KUBECONFIG` names it (printed by `make -s cluster`); if it does
//!   not answer, the test fails with a message that says so. Never a silent pass.
//!
//! # What is where
//! Every test:
//! - [`namespace`]: [`TestNamespace`], a namespace (labelled [`E2E_LABEL`]) with its
//!   [`kube::Client`], `api::<K>()`, `kubectl`/`apply`/`kubectl_edit`/`helm` run from the
//!   harness's bin dir against it, `merge_patch`, `events_yaml`, `wait_pods`, `logs`/`follow_logs`, `run_probe` (a
//!   one-shot probe pod, optionally on a given node; its JSON answer), `nodes`. On drop it prints
//!   `kubectl get all,events` of the namespace to the captured output (shown only when the test
//!   failed) and deletes it ([`KEEP_ENV`] keeps it).
//! - [`waits`]: [`wait_for`], [`wait_list`], [`delete_and_wait`] (watches), [`waits::poll`] (for
//!   what has no watch); [`conditions`]: their predicates (pod ready, phase, node ready, ...).
//! - [`tools`]: [`kubectl`], [`helm`], [`docker`], the harness's own binaries (never the system's
//!   kubectl), and [`tools::repo_path`].
//! - [`probe`]: [`probe_pod`], a pod running `shardset/cluster-probe:dev` (see tests/cluster/probe)
//!   with the restricted security context our pods use; [`PROBE_IMAGE`].
//! - [`nodes`]: a kind node stopped and started again ([`nodes::StoppedNode`]).
//! - [`report!`]: a scenario's timings on stderr, past the harness's capture.
//!
//! Scenarios that run the operator:
//! - [`crd`]: the generated CRD applied once per test binary; [`manifest`]: chainable ShardSet
//!   manifests; [`secrets`]: bot tokens and their Secrets.
//! - [`shardsets`]: waits on ShardSets and their pods, layouts and their pod names.
//! - [`recorders`]: what happened during a run (Resharding steps, pods, every container's log).
//! - [`metrics`]: the operator's `/metrics`, parsed.
//! - [`charts`]: the operator and fake Discord charts installed as a user does (`e2e_*`,
//!   `reshard_*`); [`host`]: the operator binary on the host with the fake in-process and a
//!   redis-server (`operator_*`).
//! - [`background`]: the tasks those fixtures run beside the test, stopped on drop.
//! - [`usage`]: containers' CPU and memory from the kubelets' Summary API (benchmarks).
//!
//! No sleeps as synchronisation: waits watch the API, or poll what has no watch, until the
//! condition holds or the timeout ends.

pub mod background;
pub mod charts;
pub mod conditions;
pub mod crd;
pub mod host;
pub mod manifest;
pub mod metrics;
pub mod namespace;
pub mod nodes;
pub mod probe;
mod random;
pub mod recorders;
pub mod report;
pub mod secrets;
pub mod shardsets;
pub mod tools;
pub mod usage;
pub mod waits;

pub use crd::{apply_crd_dir, install_crd};
pub use namespace::{E2E_ENV, E2E_LABEL, KEEP_ENV, TestNamespace, cluster_configured};
pub use probe::{PROBE_IMAGE, probe_pod, probe_pod_spec};
pub use tools::{BIN_DIR_ENV, docker, helm, kubectl, tool};
pub use waits::{delete_and_wait, wait_for, wait_list};
