//! The chart scenarios' world (`tests/e2e_*.rs`, `tests/reshard_*.rs`): the operator and fake
//! Discord charts installed as a user installs them ([`Stack`]), the fake's control API ([`Fake`]),
//! a port-forward to the chart's Redis, and the final token and RBAC sweep.

pub mod fake;
pub mod guard;
pub mod port_forward;
pub mod stack;
pub mod sweep;

pub use fake::{Fake, ensure_resumed, identifies_of, live_sessions, now_ms};
pub use stack::{
    FAKE_RELEASE, GUILDS, IDENTIFY_WINDOW_MS, LOAD, LiveLayout, MAX_CONCURRENCY, NATS_URL,
    OPERATOR_RELEASE, OperatorChart, Placement, Stack, StackSettings, WORKER_IMAGE, helm_install,
};
