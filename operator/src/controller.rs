//! The controller: a kube-rs `Controller` on ShardSets owning Pods, `reconcile` wrapped in kube's
//! `finalizer()` (its Apply and Cleanup arms are [`crate::reconcile::apply`] and
//! [`crate::reconcile::cleanup::cleanup`]), and `error_policy`. The pod watch that triggers
//! reconciles also fills the pod store the passes read ([`crate::pod_cache`]).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::{WatchStreamExt, watcher};
use tracing::{Instrument, debug, info_span, warn};

use crate::context::Context;
use crate::crd::ShardSet;
use crate::error::{Error, Result};
use crate::names;
use crate::reconcile;

/// Runs the controller until `stop` resolves, then lets running reconciles finish.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    ctx.first_pods.leading_from_now();
    let client = ctx.client.clone();
    let (shardsets, pods): (Api<ShardSet>, Api<Pod>) = match namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    // Every pod wearing a ShardSet's label (ours, and foreign ones a pass must see), in one
    // store; the same events trigger the owners' reconciles.
    let pod_events = watcher(
        pods,
        watcher::Config::default().labels(&names::any_shardset_pods_selector()),
    )
    .default_backoff()
    .reflect(ctx.pod_cache.renew())
    .touched_objects();
    Controller::new(shardsets, watcher::Config::default())
        .owns_stream(pod_events)
        // Coalesce the burst of pod events while many pods start.
        .with_config(controller::Config::default().debounce(Duration::from_millis(300)))
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                debug!(%error, "controller event");
            }
        })
        .await;
}

/// Reconciles one ShardSet.
pub async fn reconcile(ss: Arc<ShardSet>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started();
    let namespace = ss.namespace().ok_or(Error::MissingNamespace)?;
    let span = info_span!("reconcile", shardset = %ss.name_any(), namespace = %namespace);
    let api: Api<ShardSet> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, names::FINALIZER, ss, |event| async {
        match event {
            Event::Apply(ss) => reconcile::apply(&ss, &namespace, &ctx).await,
            Event::Cleanup(ss) => Ok(reconcile::cleanup::cleanup(&ss, &namespace, &ctx).await?),
        }
    })
    .instrument(span)
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Counts the failure and decides when to try again: input that cannot work waits for a change
/// of the object; everything else is retried soon.
pub fn error_policy(ss: Arc<ShardSet>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(error.metric_label());
    warn!(shardset = %ss.name_any(), namespace = ss.namespace().unwrap_or_default(), %error, "reconcile failed");
    if error.is_invalid_input() {
        Action::await_change()
    } else {
        Action::requeue(Duration::from_secs(5))
    }
}
