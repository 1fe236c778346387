//! A running handler replica: connect, read the stream's layout, join the group, consume the
//! partitions the group assigns to it until shut down (releasing them) or dropped (a crash, as
//! far as the others can tell: its leases expire).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_nats::jetstream;
use shardset_contract::bus::Partition;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::commands::Commands;
use crate::config::Config;
use crate::coordinator::Coordinator;
use crate::error::Error;
use crate::handler::Handler;
use crate::lease::Leases;
use crate::metrics::Metrics;
use crate::setup;
use crate::stats::{Stats, StatsSnapshot};

/// One replica of a handler service (see the crate documentation).
pub struct Replica {
    id: String,
    partitions: u32,
    owned: watch::Receiver<BTreeSet<Partition>>,
    stats: Arc<Stats>,
    commands: Commands,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.id)
            .field("owned", &*self.owned.borrow())
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Connects as `config` says (waiting for the bus and for the stream if needed), joins the
    /// group and starts consuming what it is assigned. Returns once it is a member. Its bus
    /// metrics are kept nowhere: see [`Replica::start_with_metrics`].
    pub async fn start<H: Handler>(config: Config, handler: H) -> Result<Self, Error> {
        Self::start_with_metrics(config, handler, Metrics::default()).await
    }

    /// As [`Replica::start`], exporting its bus metrics through `metrics` (made with
    /// [`Metrics::register`] in the registry the service serves at `/metrics`).
    pub async fn start_with_metrics<H: Handler>(
        config: Config,
        handler: H,
        metrics: Metrics,
    ) -> Result<Self, Error> {
        config.validate()?;
        let client = setup::connect(&config).await?;
        let js = jetstream::new(client.clone());
        let (stream, layout) = setup::stream(&js, &config.stream).await?;
        let (kv, ttl) = setup::ownership_bucket(&js, &config.stream, config.lease_ttl).await?;
        let leases = Leases::new(kv.clone(), &config.group, &config.replica);
        leases
            .heartbeat()
            .await
            .map_err(|e| Error::jetstream("joining the group", e))?;
        info!(replica = %config.replica, group = %config.group, stream = %config.stream,
            partitions = layout.partitions, ?ttl, "joined the handler group");
        let commands = Commands::new(
            client.clone(),
            &layout.prefix,
            Some(kv),
            config.command_timeout,
        );
        let stats = Arc::new(Stats::default());
        let (owned_tx, owned) = watch::channel(BTreeSet::new());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let id = config.replica.clone();
        let partitions = layout.partitions;
        let coordinator = Coordinator::new(
            config,
            leases,
            stream,
            layout,
            ttl,
            client,
            Arc::new(handler),
            commands.clone(),
            stats.clone(),
            metrics,
            owned_tx,
        );
        let task = tokio::spawn(coordinator.run(shutdown_rx));
        Ok(Self {
            id,
            partitions,
            owned,
            stats,
            commands,
            shutdown,
            task: Some(task),
        })
    }

    /// This replica's name in its group.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The stream's number of guild partitions.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The partitions it consumes now.
    pub fn owned(&self) -> BTreeSet<Partition> {
        self.owned.borrow().clone()
    }

    /// Follows [`Replica::owned`] (await its changes instead of polling).
    pub fn ownership(&self) -> watch::Receiver<BTreeSet<Partition>> {
        self.owned.clone()
    }

    /// Its counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Commands for the bot outside of an event (address guilds with [`Commands::send_for_guild`],
    /// which reads the acting layout from the bucket).
    pub fn commands(&self) -> Commands {
        self.commands.clone()
    }

    /// Leaves the group cleanly: the others take its partitions as each one's event in hand is
    /// settled and its lease released. Returns when all are released, with the final counters.
    pub async fn shutdown(mut self) -> StatsSnapshot {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.stats.snapshot()
    }
}

impl Drop for Replica {
    /// Without [`Replica::shutdown`]: stops at once, releasing nothing (like a crash; the
    /// leases expire after their TTL and the unacknowledged event is redelivered).
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
