//! What every reconcile shares: the kube client, the Events recorder, the metrics, the Discord and
//! Redis state kept between passes, and the controller's tunables ([`Settings`]). Publishing an
//! Event lives here too, so a step that announces something needs nothing but the context.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use tracing::warn;

use crate::api_trust::TrustedHosts;
use crate::crd::ShardSet;
use crate::discord::Discord;
use crate::metrics::Metrics;
use crate::names;
use crate::pod_cache::PodCache;
use crate::reconcile::fresh_epoch::FirstPods;
use crate::reconcile::redis_secrets::Remembered;
use crate::redis_state::RedisPool;
use crate::text::truncate;

/// The Events API keeps a note of at most 1 kB.
const NOTE_MAX_BYTES: usize = 1000;

/// Tunables of the controller.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Requeue of a settled ShardSet: refreshes guilds from Redis (and Discord when due);
    /// writes only if something changed.
    pub resync: Duration,
    /// After this long in deletion, cleanup stops retrying Redis and lets the ShardSet go.
    pub cleanup_give_up: Duration,
    /// REST hosts besides Discord's that a ShardSet may send its token to (a fake Discord, a
    /// proxy): [`crate::api_trust`].
    pub trusted_api_hosts: TrustedHosts,
    /// The worker image of ShardSets without `spec.image`: the one the operator was released
    /// with (`--worker-image`, the chart's `workerImage`).
    pub worker_image: Option<String>,
    /// Make each ShardSet's worker NetworkPolicy ([`crate::network_policy`]); on unless
    /// `--worker-network-policy=false` (the chart's `networkPolicy.workers`).
    pub worker_network_policy: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(60),
            cleanup_give_up: Duration::from_secs(120),
            trusted_api_hosts: TrustedHosts::default(),
            worker_image: None,
            worker_network_policy: true,
        }
    }
}

/// Shared state of all reconciles.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub discord: Discord,
    pub redis: RedisPool,
    /// The last usable Redis Secrets of each ShardSet, for its cleanup.
    pub redis_secrets: Remembered,
    pub settings: Settings,
    /// What the fresh-epoch step remembers (`reconcile::fresh_epoch`).
    pub first_pods: FirstPods,
    /// The worker pods as the controller's watch saw them, and the pod writes it must show
    /// before a pass reads them there ([`crate::pod_cache`]).
    pub pod_cache: PodCache,
}

impl Context {
    /// `instance` names this replica in Events (`reportingInstance`).
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        instance: String,
        settings: Settings,
    ) -> Self {
        let reporter = Reporter {
            controller: names::EVENT_REPORTER.into(),
            instance: Some(instance),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            discord: Discord::new(metrics.clone()),
            redis: RedisPool::default(),
            redis_secrets: Remembered::default(),
            first_pods: FirstPods::default(),
            pod_cache: PodCache::default(),
            metrics,
            settings,
        }
    }

    /// Publishes an Event on the ShardSet; a failure is logged, never fatal.
    pub(crate) async fn publish(
        &self,
        ss: &ShardSet,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(truncate(note, NOTE_MAX_BYTES)),
            action: action.into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &ss.object_ref(&())).await {
            warn!(%error, reason, "cannot publish Event");
        }
    }
}
