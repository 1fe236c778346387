//! The operator scenarios' world (`tests/operator_*.rs`): the operator binary run as a process on
//! the host against the kind cluster, scoped to the test's namespace ([`Operator`]); what its
//! ShardSets talk to, beside it on the host ([`Stage`]: the fake Discord in-process and a real
//! redis-server); and, since the pods run the probe image, a stand-in for the workers' Redis side.
//!
//! Everything started here stops on drop, also when the test fails: the operator is killed, and
//! the finalizers of ShardSets it leaves behind are removed so the namespace can go.

pub mod operator;
pub mod stage;
pub mod stand_in;

pub use operator::Operator;
pub use stage::{Stage, TOKEN, WORKER_IMAGE, fake_application_id};
pub use stand_in::WorkerStandIn;
