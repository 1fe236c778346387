//! The ownership loop of one replica (`docs/bus-protocol.md`, "Partition ownership"): on every
//! tick (a third of the lease TTL) and whenever the group's membership or a lease changes, it
//! heartbeats its member key, computes its assignment from the live members, renews the leases
//! it holds, stops the partitions that moved away (releasing each lease once the partition's
//! last event is settled) and takes the free leases of the partitions assigned to it. Partition
//! tasks live in a `JoinSet`, so dropping the loop (a killed replica) stops them without any
//! release: their leases expire.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::Stream;
use futures_util::StreamExt;
use shardset_contract::bus::{self, Partition};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::assignment::assigned;
use crate::backlog::Backlog;
use crate::commands::Commands;
use crate::config::Config;
use crate::handler::Handler;
use crate::lease::Leases;
use crate::metrics::Metrics;
use crate::partition::PartitionRun;
use crate::setup::{self, Layout};
use crate::stats::Stats;

/// A partition this replica holds the lease of.
struct Held {
    revision: u64,
    /// Its loop's task (to find it when the task panicked).
    task: tokio::task::Id,
    stop: watch::Sender<bool>,
    /// Its consumer loop is running (not yet told to stop).
    running: bool,
    /// The lease was lost (expired, or taken): the partition stops and nothing is released.
    lost: bool,
}

pub(crate) struct Coordinator<H> {
    pub config: Config,
    pub leases: Leases,
    pub stream: Stream,
    pub layout: Layout,
    pub ttl: Duration,
    pub client: async_nats::Client,
    pub handler: Arc<H>,
    pub commands: Commands,
    pub stats: Arc<Stats>,
    pub metrics: Metrics,
    pub owned: watch::Sender<BTreeSet<Partition>>,
    held: BTreeMap<Partition, Held>,
    tasks: JoinSet<Partition>,
    leaving: bool,
}

/// What woke the loop.
enum Wake {
    /// Reconcile now.
    Reconcile,
    /// Nothing to do (e.g. a lease renewal seen on the watch).
    Nothing,
    /// A partition's loop ended.
    Finished(Partition),
    /// Shut down: leave the group, release everything.
    Leave,
}

impl<H: Handler> Coordinator<H> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Config,
        leases: Leases,
        stream: Stream,
        layout: Layout,
        ttl: Duration,
        client: async_nats::Client,
        handler: Arc<H>,
        commands: Commands,
        stats: Arc<Stats>,
        metrics: Metrics,
        owned: watch::Sender<BTreeSet<Partition>>,
    ) -> Self {
        Self {
            config,
            leases,
            stream,
            layout,
            ttl,
            client,
            handler,
            commands,
            stats,
            metrics,
            owned,
            held: BTreeMap::new(),
            tasks: JoinSet::new(),
            leaving: false,
        }
    }

    /// Runs until `shutdown` turns true and every lease is released.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watch: Option<kv::Watch> = None;
        let mut members_seen: BTreeSet<String> = BTreeSet::new();
        let watched = format!("{}.>", self.config.group);
        loop {
            if watch.is_none() && !self.leaving {
                watch = self.leases.store().watch(&watched).await.ok();
            }
            let wake = tokio::select! {
                _ = tick.tick() => Wake::Reconcile,
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => match done {
                    Ok(partition) => Wake::Finished(partition),
                    // A partition loop panicked (a bug): release it like a finished one.
                    Err(e) => match self.held.iter().find(|(_, h)| h.task == e.id()) {
                        Some((partition, _)) => Wake::Finished(*partition),
                        None => Wake::Reconcile,
                    },
                },
                entry = next_entry(&mut watch) => match entry {
                    Some(entry) => self.wake_for(&entry, &mut members_seen),
                    None => {
                        watch = None;
                        Wake::Nothing
                    }
                },
                changed = shutdown.changed(), if !self.leaving => {
                    let _ = changed;
                    Wake::Leave
                }
            };
            match wake {
                Wake::Nothing => continue,
                Wake::Reconcile => {}
                Wake::Finished(partition) => self.finished(partition).await,
                Wake::Leave => {
                    self.leaving = true;
                    if let Err(e) = self.leases.leave().await {
                        warn!(error = %e, "leaving the group failed; the member key will expire");
                    }
                }
            }
            self.reconcile().await;
            if self.leaving && self.held.is_empty() {
                break;
            }
        }
        self.owned.send_replace(BTreeSet::new());
        self.metrics.owned(0);
        info!(replica = %self.config.replica, "left the group, every lease released");
    }

    /// Whether a change in the bucket calls for a reconcile: a member joined or left, or a
    /// lease was released. Renewals and heartbeats of known members do not.
    fn wake_for(&self, entry: &kv::Entry, members_seen: &mut BTreeSet<String>) -> Wake {
        let removed = matches!(
            entry.operation,
            kv::Operation::Delete | kv::Operation::Purge
        );
        if let Some(member) = entry
            .key
            .strip_prefix(&bus::member_prefix(&self.config.group))
        {
            let changed = if removed {
                members_seen.remove(member)
            } else {
                members_seen.insert(member.to_owned())
            };
            return if changed {
                Wake::Reconcile
            } else {
                Wake::Nothing
            };
        }
        if removed
            && entry
                .key
                .starts_with(&bus::owner_prefix(&self.config.group))
        {
            return Wake::Reconcile;
        }
        Wake::Nothing
    }

    /// One pass of the ownership protocol.
    async fn reconcile(&mut self) {
        let want = self.wanted().await;
        let partitions: Vec<Partition> = self.held.keys().copied().collect();
        for partition in partitions {
            self.renew(partition).await;
            let Some(held) = self.held.get_mut(&partition) else {
                continue;
            };
            let keep = want.as_ref().is_none_or(|w| w.contains(&partition));
            if held.running && !keep {
                debug!(%partition, "assigned elsewhere now: stopping");
                held.running = false;
                held.stop.send_replace(true);
            }
        }
        if let Some(want) = want {
            for partition in want {
                if !self.held.contains_key(&partition) {
                    self.acquire(partition).await;
                }
            }
        }
        self.publish_owned();
    }

    /// The partitions this replica should own; `None` when the members cannot be listed (keep
    /// what is running).
    async fn wanted(&self) -> Option<BTreeSet<Partition>> {
        if self.leaving {
            return Some(BTreeSet::new());
        }
        if let Err(e) = self.leases.heartbeat().await {
            warn!(error = %e, "member heartbeat failed");
        }
        match self.leases.members().await {
            Ok(members) => Some(assigned(
                &members,
                &self.config.replica,
                self.layout.partitions,
            )),
            Err(e) => {
                warn!(error = %e, "cannot list the group's members");
                None
            }
        }
    }

    async fn renew(&mut self, partition: Partition) {
        let Some(held) = self.held.get_mut(&partition) else {
            return;
        };
        if held.lost {
            return;
        }
        match self.leases.renew(partition, held.revision).await {
            Ok(Some(revision)) => held.revision = revision,
            Ok(None) => {
                warn!(%partition, "lease lost (expired or taken): stopping the partition");
                held.lost = true;
                held.running = false;
                held.stop.send_replace(true);
            }
            Err(e) => warn!(%partition, error = %e, "lease renewal failed"),
        }
    }

    async fn acquire(&mut self, partition: Partition) {
        let revision = match self.leases.acquire(partition).await {
            Ok(Some(revision)) => revision,
            Ok(None) => return,
            Err(e) => {
                warn!(%partition, error = %e, "cannot take the lease");
                return;
            }
        };
        let consumer = setup::consumer(
            &self.stream,
            &self.config.stream,
            &self.layout,
            &self.config.group,
            partition,
            self.ttl,
        )
        .await;
        let consumer = match consumer {
            Ok(consumer) => consumer,
            Err(e) => {
                warn!(%partition, error = %e, "cannot bind the partition's consumer; releasing");
                let _ = self.leases.release(partition, revision).await;
                return;
            }
        };
        let ack_wait = consumer.cached_info().config.ack_wait;
        let (stop, stop_rx) = watch::channel(false);
        let backlog = Backlog {
            partition,
            stream: self.stream.clone(),
            consumer: bus::consumer_name(&self.config.stream, &self.config.group, partition),
            subject: bus::event_subject(&self.layout.prefix, partition),
            metrics: self.metrics.clone(),
            every: self.config.backlog_every,
        };
        let run = PartitionRun {
            partition,
            consumer,
            client: self.client.clone(),
            handler: self.handler.clone(),
            commands: self.commands.clone(),
            stats: self.stats.clone(),
            metrics: self.metrics.clone(),
            max_attempts: self.config.max_attempts,
            retry_delay: self.config.retry_delay,
            fetch_expires: self.config.fetch_expires,
            progress_every: (ack_wait / 3).max(Duration::from_millis(100)),
        };
        let task = self
            .tasks
            .spawn(async move {
                // The backlog watch ends with the partition's loop, told by the same `stop`.
                tokio::join!(run.run(stop_rx.clone()), backlog.run(stop_rx));
                partition
            })
            .id();
        info!(%partition, revision, "partition owned");
        self.held.insert(
            partition,
            Held {
                revision,
                task,
                stop,
                running: true,
                lost: false,
            },
        );
    }

    /// A partition's loop ended: release its lease unless it was lost.
    async fn finished(&mut self, partition: Partition) {
        let Some(held) = self.held.remove(&partition) else {
            return;
        };
        if held.lost {
            return;
        }
        match self.leases.release(partition, held.revision).await {
            Ok(()) => {
                self.stats.released();
                info!(%partition, "partition released");
            }
            Err(e) => warn!(%partition, error = %e, "release failed; the lease will expire"),
        }
    }

    fn publish_owned(&self) {
        let owned: BTreeSet<Partition> = self
            .held
            .iter()
            .filter(|(_, h)| h.running)
            .map(|(p, _)| *p)
            .collect();
        self.metrics.owned(owned.len());
        self.owned.send_if_modified(|current| {
            let changed = *current != owned;
            *current = owned;
            changed
        });
    }
}

/// The next entry of the watch, or `None` when it ended; never resolves without a watch.
async fn next_entry(watch: &mut Option<kv::Watch>) -> Option<kv::Entry> {
    match watch {
        Some(w) => match w.next().await {
            Some(Ok(entry)) => Some(entry),
            _ => None,
        },
        None => std::future::pending().await,
    }
}
