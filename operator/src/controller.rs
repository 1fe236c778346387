//! The controller: a kube-rs `Controller` on ShardSets owning Pods, `reconcile` wrapped in kube's
//! `finalizer()` (Apply and Cleanup arms), and `error_policy`.
//!
//! One Apply pass: read the token Secret (and the Redis password Secret) → ask Discord when due
//! → decide the shard total → list pods → the reshard step ([`crate::reshard::handover`]: roles,
//! acknowledgements, budget) → plan → create/delete pods → apply the status if it changed.
//! A pass over an unchanged world writes nothing.
//!
//! Cleanup deletes the ShardSet's pods, waits for them (bounded), deletes the bot's per-layout
//! Redis keys, and gives up with a Warning Event rather than block deletion forever.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::watcher;
use shardset_contract::token::Token;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::context::Context;
use crate::crd::ShardSet;
use crate::discord::Lookup;
use crate::plan::{self, DeleteReason};
use crate::redis_state;
use crate::reshard::total::{self, ShardTotal};
use crate::status::{self, Observed, Problem};
use crate::text::summarize_list;
use crate::{Error, Result, apply, names, node_loss, pods, reshard};

/// Requeue while pods are starting, moving or blocked (watch events usually come first).
const REQUEUE_BUSY: Duration = Duration::from_secs(10);
/// How long cleanup waits for the ShardSet's pods to terminate before cleaning Redis anyway.
const CLEANUP_POD_WAIT: Duration = Duration::from_secs(30);

/// Runs the controller until `stop` resolves, then lets running reconciles finish.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let (shardsets, pods): (Api<ShardSet>, Api<Pod>) = match namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    Controller::new(shardsets, watcher::Config::default())
        .owns(
            pods,
            watcher::Config::default().labels(&names::managed_pods_selector()),
        )
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
            Event::Apply(ss) => apply_shardset(&ss, &namespace, &ctx).await,
            Event::Cleanup(ss) => cleanup(&ss, &namespace, &ctx).await,
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

/// The Apply arm.
async fn apply_shardset(ss: &ShardSet, namespace: &str, ctx: &Context) -> Result<Action> {
    let name = ss.name_any();
    let key = format!("{namespace}/{name}");
    let spec = &ss.spec;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let mut problems = Vec::new();

    // The token: no pods without it (they would crash-loop and could burn the Identify budget).
    let token_ref = &spec.token_secret_ref;
    let token_desc = format!("Secret \"{}\" key \"{}\"", token_ref.name, token_ref.key);
    let token = match read_secret_key(&secrets, &token_ref.name, &token_ref.key).await? {
        SecretValue::Found(raw) => {
            let token = Token::new(raw);
            if token.is_empty() {
                problems.push(Problem::TokenSecretMissing(format!(
                    "{token_desc} in namespace \"{namespace}\" is empty: put the bot token there"
                )));
                None
            } else {
                Some(token)
            }
        }
        missing => {
            problems.push(Problem::TokenSecretMissing(missing.describe(
                namespace,
                &token_ref.name,
                &token_ref.key,
                "spec.tokenSecretRef",
                "the bot token",
            )));
            None
        }
    };

    let redis_password = match &spec.redis.secret_ref {
        None => None,
        Some(r) => match read_secret_key(&secrets, &r.name, &r.key).await? {
            SecretValue::Found(password) => Some(password),
            missing => {
                problems.push(Problem::RedisSecretMissing(missing.describe(
                    namespace,
                    &r.name,
                    &r.key,
                    "spec.redis.secretRef",
                    "the Redis password",
                )));
                None
            }
        },
    };

    // Discord, when a call is due.
    let lookup = match &token {
        Some(token) => {
            ctx.discord
                .lookup(&key, spec.api_url(), token, &token_desc)
                .await
        }
        None => Lookup::default(),
    };
    if let Some(problem) = &lookup.problem {
        problems.push(problem.clone());
    }
    let app_id = lookup.app_id.or_else(|| {
        ss.status
            .as_ref()
            .and_then(|s| s.application_id.as_deref())
            .and_then(|id| id.parse().ok())
    });

    // The shard total: fixed, or from Discord's recommendation (the last one known), changed
    // by `autoShards` at most once per `minReshardIntervalSeconds`.
    let shard_total = total::shard_total(
        spec,
        ss.status.as_ref(),
        lookup.facts.as_ref(),
        Timestamp::now().as_second(),
    );
    problems.extend(total::unknown_total(&shard_total, spec, &problems));
    let ShardTotal {
        total,
        held: auto_hold,
    } = shard_total;

    // Plan against the pods that exist.
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let existing = apply::list_pods(&pods_api, &name).await?;
    let uid = ss.uid().unwrap_or_default();
    let observed: Vec<plan::ObservedPod> =
        existing.iter().map(|p| pods::observe(p, &uid)).collect();
    let layout = total.map(shardset_contract::layout_name);
    let blocked = total.is_none() || problems.iter().any(Problem::blocks_pods);
    let redis_usable = spec.redis.secret_ref.is_none() || redis_password.is_some();

    // The reshard (docs/resharding.md): which layout the pods follow, what may be created or
    // deleted, and the next roles document in Redis.
    let reshard = match (total, blocked) {
        (Some(total), false) => Some(
            reshard::handover::pass(
                ctx,
                reshard::handover::Args {
                    ss,
                    key: &key,
                    total,
                    observed: &observed,
                    app_id,
                    redis_password: if redis_usable {
                        Ok(redis_password.as_deref())
                    } else {
                        Err(())
                    },
                    token: token.as_ref(),
                    token_desc: &token_desc,
                    lookup: &lookup,
                    auto_hold: auto_hold.clone(),
                },
            )
            .await,
        ),
        _ => None,
    };
    if let Some(problem) = reshard.as_ref().and_then(|r| r.problem.clone()) {
        problems.push(problem);
    }
    // A new token or new intents: shards the gateway refused for good (fatal markers) try again.
    if let (Some(app_id), Some(token), true) = (app_id, token.as_ref(), redis_usable) {
        clear_fatal_markers(ctx, ss, app_id, token, redis_password.as_deref()).await;
    }
    let plan_total = reshard.as_ref().map(|r| r.decision.layout).or(total);
    let desired = match plan_total {
        // A new token (or new intents) is a new pod template: the pods read it when they start.
        Some(total) => pods::desired_pods_for_token(
            ss,
            total,
            token
                .as_ref()
                .map(|t| fatal_basis(t, spec.intents))
                .as_deref(),
        )?,
        None => Vec::new(),
    };
    let records: Vec<plan::DesiredPod> = desired.iter().map(|(d, _)| d.clone()).collect();
    let gates = match &reshard {
        Some(r) => plan::Gates {
            create: r.decision.create,
            delete_layouts: &r.decision.delete,
        },
        None => plan::Gates::OPEN,
    };
    // The layout the pods follow this pass (the hand-over's new layout, or the serving one while
    // a reshard is refused): its pods are the ones created.
    let pod_layout = plan_total.map(shardset_contract::layout_name);
    let plan = plan::plan(
        pod_layout.as_deref().unwrap_or_default(),
        &records,
        &observed,
        gates,
        blocked,
    );

    let stuck: Vec<String> = existing
        .iter()
        .zip(&observed)
        .filter(|(_, o)| o.owned && !o.terminating)
        .filter_map(|(p, _)| pods::stuck_reason(p))
        .collect();
    if !stuck.is_empty() {
        problems.push(Problem::PodsFailing(summarize_list(&stuck, 3)));
    }

    // Act.
    if !plan.delete.is_empty() {
        let targets: Vec<String> = plan.delete.iter().map(|d| d.name.clone()).collect();
        let deleted = apply::delete_pods(&pods_api, &existing, &targets).await?;
        ctx.metrics.pod_action("delete", deleted.len());
        if !deleted.is_empty() {
            let described: Vec<String> = plan
                .delete
                .iter()
                .filter(|d| deleted.contains(&d.name))
                .map(|d| format!("{} ({})", d.name, d.reason.describe()))
                .collect();
            info!(count = deleted.len(), pods = ?deleted, "deleted pods");
            let reason = if plan
                .delete
                .iter()
                .all(|d| d.reason == DeleteReason::Drifted)
            {
                "PodReplaced"
            } else {
                "PodsDeleted"
            };
            ctx.publish(
                ss,
                EventType::Normal,
                reason,
                "DeletePods",
                format!(
                    "deleted {} pods: {}",
                    deleted.len(),
                    summarize_list(&described, 10)
                ),
            )
            .await;
        }
    }
    if !plan.create.is_empty() {
        let batch: Vec<Pod> = desired
            .iter()
            .filter(|(d, _)| plan.create.contains(&d.name))
            .map(|(_, pod)| pod.clone())
            .collect();
        let created = apply::create_pods(&pods_api, batch).await;
        ctx.metrics.pod_action("create", created.created.len());
        if !created.created.is_empty() {
            info!(
                count = created.created.len(),
                layout = pod_layout.as_deref().unwrap_or_default(),
                "created pods"
            );
            ctx.publish(
                ss,
                EventType::Normal,
                "PodsCreated",
                "CreatePods",
                format!(
                    "created {} pods for layout {}: {}",
                    created.created.len(),
                    pod_layout.as_deref().unwrap_or_default(),
                    summarize_list(&created.created, 10)
                ),
            )
            .await;
        }
        if !created.taken.is_empty() {
            ctx.publish(
                ss,
                EventType::Warning,
                "PodNameTaken",
                "CreatePods",
                format!(
                    "pod names held by objects the ShardSet does not own: {}; delete or rename them",
                    summarize_list(&created.taken, 10)
                ),
            )
            .await;
        }
        if let Some(error) = created.errors.into_iter().next() {
            return Err(Error::Kube(error));
        }
    }

    // Pods stuck on a lost node: their replacements can only start once they are gone.
    let recheck_stuck = force_delete_lost_pods(ss, &pods_api, &existing, &observed, ctx).await?;

    // What the workers report (read with the roles when the reshard pass ran).
    let mut guilds = None;
    let read = reshard
        .as_ref()
        .and_then(|r| r.statuses.as_ref())
        .zip(plan_total)
        .and_then(|(statuses, total)| statuses.get(&total).cloned());
    if let (Some(app_id), Some(total), true) = (app_id, plan_total, redis_usable) {
        let records = match read {
            Some(records) => Ok(records),
            None => {
                ctx.redis
                    .shard_statuses(&spec.redis.url, redis_password.as_deref(), app_id, total)
                    .await
            }
        };
        match records {
            Ok(records) => {
                let summary = redis_state::summarize(&records);
                guilds = summary.guilds;
                if !summary.failed.is_empty() {
                    let failed: Vec<String> = summary
                        .failed
                        .iter()
                        .map(|(shard, pod, reason)| format!("shard {shard} on {pod}: {reason}"))
                        .collect();
                    problems.push(Problem::ShardFailed(format!(
                        "{} shards closed for good: {}",
                        failed.len(),
                        summarize_list(&failed, 3)
                    )));
                }
            }
            Err(error) => problems.push(Problem::RedisUnreachable(error.to_string())),
        }
    }

    // Status, written only when it changed.
    let observed_status = Observed {
        generation: ss.metadata.generation,
        total,
        target_layout: layout,
        progress: plan.progress.clone(),
        problems: &problems,
        gateway: lookup.facts.as_ref(),
        max_concurrency_override: spec.max_concurrency,
        application_id: app_id,
        guilds,
        selector: names::shardset_pods_selector(&name),
        reshard: reshard.as_ref().and_then(|r| r.report.clone()),
    };
    let new_status = status::build(&observed_status, ss.status.as_ref(), Timestamp::now());
    if ss.status.as_ref() != Some(&new_status) {
        let api: Api<ShardSet> = Api::namespaced(ctx.client.clone(), namespace);
        apply::apply_status(&api, &name, &new_status).await?;
        announce_problems(ss, &new_status, ctx).await;
    }

    let mut requeue = if blocked || !plan.is_noop() || !plan.progress.settled() {
        REQUEUE_BUSY
    } else {
        ctx.settings.resync
    };
    if token.is_some() {
        requeue = requeue.min(lookup.next_call_in.max(Duration::from_secs(1)));
    }
    if let Some(recheck) = recheck_stuck {
        requeue = requeue.min(recheck);
    }
    if let Some(soon) = reshard.as_ref().and_then(|r| r.requeue) {
        requeue = requeue.min(soon);
    }
    Ok(Action::requeue(requeue))
}

/// Force-deletes the owned pods that `node_loss::assess` finds stuck on a lost node, with a
/// Warning Event naming them. Returns when to look again at pods that may become stuck.
async fn force_delete_lost_pods(
    ss: &ShardSet,
    pods_api: &Api<Pod>,
    existing: &[Pod],
    observed: &[plan::ObservedPod],
    ctx: &Context,
) -> Result<Option<Duration>> {
    let now = Timestamp::now();
    let mut recheck: Option<Duration> = None;
    let mut stuck: Vec<(String, String)> = Vec::new();
    for (pod, _) in existing
        .iter()
        .zip(observed)
        .filter(|(_, o)| o.owned && o.terminating)
    {
        match node_loss::assess(pod, now) {
            node_loss::Verdict::ForceDelete(why) => stuck.push((pod.name_any(), why)),
            node_loss::Verdict::Wait(Some(later)) => {
                recheck = Some(recheck.map_or(later, |r| r.min(later)));
            }
            node_loss::Verdict::Wait(None) => {}
        }
    }
    if stuck.is_empty() {
        return Ok(recheck);
    }
    let targets: Vec<String> = stuck.iter().map(|(name, _)| name.clone()).collect();
    let deleted = apply::force_delete_pods(pods_api, existing, &targets).await?;
    ctx.metrics.pod_action("force_delete", deleted.len());
    if !deleted.is_empty() {
        let described: Vec<String> = stuck
            .iter()
            .filter(|(name, _)| deleted.contains(name))
            .map(|(name, why)| format!("{name} ({why})"))
            .collect();
        warn!(count = deleted.len(), pods = ?described, "force-deleted pods stuck on a lost node");
        ctx.publish(
            ss,
            EventType::Warning,
            "PodForceDeleted",
            "DeletePods",
            format!(
                "force-deleted {} pods stuck on a lost node, to recreate them elsewhere (their shards wait for the old Redis leases): {}",
                deleted.len(),
                summarize_list(&described, 10)
            ),
        )
        .await;
    }
    Ok(recheck)
}

/// Deletes the bot's fatal markers (`P:fatal:<total>:<shard>`) when the token or the intents
/// changed since they were written (a Normal Event says how many); failures only log: the
/// markers also expire by themselves.
async fn clear_fatal_markers(
    ctx: &Context,
    ss: &ShardSet,
    app_id: u64,
    token: &Token,
    password: Option<&str>,
) {
    let basis = fatal_basis(token, ss.spec.intents);
    match ctx
        .redis
        .clear_fatal_on_new_basis(&ss.spec.redis.url, password, app_id, &basis)
        .await
    {
        Ok(0) => {}
        Ok(cleared) => {
            info!(cleared, "token or intents changed: fatal markers cleared");
            ctx.publish(
                ss,
                EventType::Normal,
                "FatalMarkersCleared",
                "Reconcile",
                format!(
                    "the token or the intents changed: {cleared} shards closed for good by Discord will identify once more"
                ),
            )
            .await;
        }
        Err(error) => warn!(%error, "cannot check the fatal markers"),
    }
}

/// What the fatal markers were written under: a digest of the token and the intents (64 bits
/// of xxh3: stable across builds, and nothing of the token can be read back from it).
fn fatal_basis(token: &Token, intents: u64) -> String {
    let mut bytes = token.expose().as_bytes().to_vec();
    bytes.extend_from_slice(&intents.to_le_bytes());
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes))
}

/// A Warning Event when the Degraded reason changes to a problem, a Normal one when it clears.
async fn announce_problems(ss: &ShardSet, new: &crate::crd::ShardSetStatus, ctx: &Context) {
    let before = status::degraded(ss.status.as_ref()).map(|(reason, _)| reason.to_owned());
    match (before, status::degraded(Some(new))) {
        (before, Some((reason, message))) if before.as_deref() != Some(reason) => {
            warn!(reason, message, "ShardSet degraded");
            ctx.publish(
                ss,
                EventType::Warning,
                reason,
                "Reconcile",
                message.to_owned(),
            )
            .await;
        }
        (Some(before), None) => {
            info!(previous = %before, "ShardSet recovered");
            ctx.publish(
                ss,
                EventType::Normal,
                "Recovered",
                "Reconcile",
                format!("{before} is resolved"),
            )
            .await;
        }
        _ => {}
    }
}

/// The Cleanup arm: pods first (so workers save their sessions and stop), then Redis.
async fn cleanup(ss: &ShardSet, namespace: &str, ctx: &Context) -> Result<Action> {
    let name = ss.name_any();
    let key = format!("{namespace}/{name}");
    let uid = ss.uid().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);

    let owned = |pods: &[Pod]| -> Vec<Pod> {
        pods.iter()
            .filter(|p| pods::observe(p, &uid).owned)
            .cloned()
            .collect()
    };
    let existing = owned(&apply::list_pods(&pods_api, &name).await?);
    let targets: Vec<String> = existing
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.name_any())
        .collect();
    if !targets.is_empty() {
        let deleted = apply::delete_pods(&pods_api, &existing, &targets).await?;
        ctx.metrics.pod_action("delete", deleted.len());
    }
    let waited = tokio::time::timeout(CLEANUP_POD_WAIT, async {
        loop {
            match apply::list_pods(&pods_api, &name).await {
                Ok(pods) if owned(&pods).is_empty() => return,
                _ => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    })
    .await;
    if waited.is_err() {
        warn!("pods still terminating; cleaning Redis anyway");
    }

    let in_deletion_for = ss
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| Timestamp::now().duration_since(t.0))
        .unwrap_or_default();
    let give_up =
        SignedDuration::try_from(ctx.settings.cleanup_give_up).unwrap_or(SignedDuration::MAX);
    let app_id = ctx.discord.cached_app_id(&key).or_else(|| {
        ss.status
            .as_ref()
            .and_then(|s| s.application_id.as_deref())
            .and_then(|id| id.parse().ok())
    });
    match app_id {
        None => {
            ctx.publish(
                ss,
                EventType::Warning,
                "CleanupSkipped",
                "Cleanup",
                "the bot's application id was never learned (no valid token), so no Redis keys were deleted".into(),
            )
            .await;
        }
        Some(app_id) => {
            let password = match &ss.spec.redis.secret_ref {
                Some(r) => {
                    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
                    match read_secret_key(&secrets, &r.name, &r.key).await? {
                        SecretValue::Found(p) => Some(p),
                        _ => None,
                    }
                }
                None => None,
            };
            match ctx
                .redis
                .cleanup(&ss.spec.redis.url, password.as_deref(), app_id)
                .await
            {
                Ok(count) => {
                    info!(count, app_id, "deleted Redis keys");
                    ctx.publish(
                        ss,
                        EventType::Normal,
                        "RedisKeysDeleted",
                        "Cleanup",
                        format!(
                            "deleted {count} session, lease and status keys of application {app_id}"
                        ),
                    )
                    .await;
                }
                Err(error) if in_deletion_for < give_up => {
                    return Err(Error::Cleanup(error.to_string()));
                }
                Err(error) => {
                    ctx.publish(
                        ss,
                        EventType::Warning,
                        "CleanupSkipped",
                        "Cleanup",
                        format!("gave up deleting Redis keys after {}s: {error}; they expire on their own", in_deletion_for.as_secs()),
                    )
                    .await;
                }
            }
        }
    }
    ctx.discord.forget(&key);
    Ok(Action::await_change())
}

/// A Secret key's value, or what is missing.
enum SecretValue {
    Found(String),
    SecretMissing,
    KeyMissing(Vec<String>),
    NotUtf8,
}

impl SecretValue {
    /// A message that names exactly what is missing and what to do.
    fn describe(
        &self,
        namespace: &str,
        secret: &str,
        key: &str,
        field: &str,
        what: &str,
    ) -> String {
        match self {
            Self::Found(_) => String::new(),
            Self::SecretMissing => format!(
                "Secret \"{secret}\" not found in namespace \"{namespace}\" ({field}): create it with {what} under key \"{key}\""
            ),
            Self::KeyMissing(keys) if keys.is_empty() => format!(
                "Secret \"{secret}\" in namespace \"{namespace}\" has no key \"{key}\" (it has no keys) ({field}): add {what} under that key"
            ),
            Self::KeyMissing(keys) => format!(
                "Secret \"{secret}\" in namespace \"{namespace}\" has no key \"{key}\" (it has {}) ({field}): add {what} under that key or set {field}.key",
                keys.join(", ")
            ),
            Self::NotUtf8 => format!(
                "Secret \"{secret}\" key \"{key}\" in namespace \"{namespace}\" is not UTF-8 text ({field})"
            ),
        }
    }
}

/// Reads one key of a Secret. Only a failing API call is an error; absence is a value.
async fn read_secret_key(api: &Api<Secret>, name: &str, key: &str) -> Result<SecretValue> {
    let Some(secret) = api.get_opt(name).await? else {
        return Ok(SecretValue::SecretMissing);
    };
    let mut data = secret.data.unwrap_or_default();
    // `stringData` is write-only; the API server folds it into `data`.
    Ok(match data.remove(key) {
        Some(bytes) => match String::from_utf8(bytes.0) {
            Ok(value) => SecretValue::Found(value),
            Err(_) => SecretValue::NotUtf8,
        },
        None => SecretValue::KeyMissing(data.into_keys().collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fatal_basis_follows_token_and_intents_and_hides_the_token() {
        let a = fatal_basis(&Token::new("a.b.c"), 513);
        assert_eq!(a, fatal_basis(&Token::new("a.b.c"), 513), "stable");
        assert_ne!(a, fatal_basis(&Token::new("a.b.d"), 513));
        assert_ne!(a, fatal_basis(&Token::new("a.b.c"), 1));
        assert_eq!(a.len(), 16);
        assert!(!a.contains("a.b.c"));
    }

    #[test]
    fn missing_secrets_are_described_exactly() {
        let m = SecretValue::SecretMissing.describe(
            "ns",
            "bot-token",
            "token",
            "spec.tokenSecretRef",
            "the bot token",
        );
        assert_eq!(
            m,
            "Secret \"bot-token\" not found in namespace \"ns\" (spec.tokenSecretRef): create it with the bot token under key \"token\""
        );
        let m = SecretValue::KeyMissing(vec!["tok".into()]).describe(
            "ns",
            "bot-token",
            "token",
            "spec.tokenSecretRef",
            "the bot token",
        );
        assert!(m.contains("has no key \"token\" (it has tok)"), "{m}");
    }
}
