//! Handler services of the bot tier (`docs/bus-protocol.md`): the shard workers publish every
//! dispatch to a NATS JetStream stream, partitioned by guild; replicas of a handler service
//! share the partitions, each consuming its own in order and acknowledging after handling, and
//! send gateway commands back to the workers.
//!
//! ```no_run
//! use shardset_handler::{Config, Event, HandlerError, Replica};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_env()?; // NATS_URL, SHARDSET_STREAM, ...
//! let replica = Replica::start(config, |event: Event| async move {
//!     if event.name == "MESSAGE_CREATE" {
//!         // act on event.data (the raw `d` JSON)
//!     }
//!     Ok::<(), HandlerError>(())
//! })
//! .await?;
//! tokio::signal::ctrl_c().await?;
//! replica.shutdown().await; // hand the partitions over cleanly
//! # Ok(())
//! # }
//! ```
//!
//! What each file owns: [`config`] the settings and their env names; [`event`] the event and
//! the check of the wire format; [`handler`] the trait; [`commands`] commands back; [`wire`]
//! the JetStream configurations of the protocol; `assignment` who should own what; `lease` the
//! ownership bucket's records; `coordinator` the ownership loop; `partition` one partition's
//! consumption; `backlog` an owned partition's backlog for the metrics; [`setup`] connecting and
//! binding (shared with the publishing worker); [`replica`] the running replica; [`stats`] its
//! counters; [`metrics`] its Prometheus metrics (`shardset_bus_consumer_lag_seconds`, ...).

mod assignment;
mod backlog;
pub mod commands;
pub mod config;
mod coordinator;
pub mod error;
pub mod event;
pub mod handler;
mod lease;
pub mod metrics;
mod partition;
pub mod replica;
pub mod setup;
pub mod stats;
pub mod wire;

pub use commands::{CommandError, Commands, Sent};
pub use config::{Auth, Config, ConfigError};
pub use error::Error;
pub use event::{BadMessage, Event};
pub use handler::{Handler, HandlerError};
pub use metrics::Metrics;
pub use replica::Replica;
pub use shardset_contract::bus::Partition;
pub use stats::StatsSnapshot;
