//! The ShardSet operator: a kube-rs controller that runs a Discord bot's gateway shards as one
//! worker pod per shard range.
//!
//! Pure parts (no client, unit-tested):
//! - [`api_trust`]: which REST bases a ShardSet may send its token to.
//! - [`crd`]: the `ShardSet` resource, its schema and CEL validation.
//! - [`names`]: label keys, finalizer, field manager: every name we write on objects.
//! - [`plan`]: shard ranges and the pods to create, delete or replace.
//! - [`pods`]: the worker Pod for one range; [`bus_env`]: its bus variables, from `spec.bus`.
//! - [`disruption_budget`]: the worker pods' PodDisruptionBudget; [`network_policy`]: their
//!   NetworkPolicy (egress); [`owned`]: what both share (metadata, create/update/keep).
//! - [`reshard`]: the shard total, and the hand-over between layouts step by step
//!   (`docs/resharding.md`), with its I/O in [`reshard::handover`].
//! - [`node_loss`]: when a pod on a lost node is force-deleted, and its node-loss tolerations.
//! - [`status`]: status summary and conditions.
//! - [`text`]: lists and notes cut to size for people.
//!
//! I/O parts:
//! - [`context`]: what every reconcile shares (client, Events, metrics, Discord and Redis state).
//! - [`controller`]: `reconcile` (with a finalizer) and `error_policy`.
//! - [`reconcile`]: the Apply arm as steps (dereference, decide, act, disruption budget, update
//!   status) and the Cleanup arm; [`error`]: each step's error, with a fixed metric label.
//! - [`apply`]: the API writes: pods created and deleted (uid preconditions), the status applied.
//! - [`discord`]: `GET /gateway/bot` and `/users/@me`, refreshed on a period with backoff.
//! - [`redis_state`]: the workers' shard status, and cleanup of the bot's keys.
//! - [`metrics`], [`telemetry`]: Prometheus metrics and JSON logs; [`shardset_gauges`]: the
//!   per-ShardSet gauges the chart's alerts read.

pub mod api_trust;
pub mod bus_env;
pub mod crd;
pub mod disruption_budget;
pub mod names;
pub mod network_policy;
pub mod node_loss;
pub mod owned;
pub mod plan;
pub mod pods;
pub mod redis_ca;
pub mod reshard;
pub mod shardset_gauges;
pub mod status;
pub mod text;

pub mod apply;
pub mod context;
pub mod controller;
pub mod discord;
pub mod error;
pub mod metrics;
pub mod pod_cache;
pub mod reconcile;
pub mod redis_state;
pub mod telemetry;
