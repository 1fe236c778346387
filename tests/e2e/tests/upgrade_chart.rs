//! `helm upgrade` from the previous chart version to this one on a running bot (issue 15,
//! "Upgrades"), on kind, the way the README's "Upgrading" section tells users to:
//!
//! 1. The previous release (chart 0.1.0: its CRD, chart, operator, worker and Redis images, built
//!    from its own sources by `make test-upgrade`) runs an 8-shard ShardSet with that release's
//!    values (the chart's Redis without a password, `spec.image` pinned, as it required), under
//!    the synthetic message load of today's fake Discord (which stands for Discord: it is no part
//!    of the upgrade).
//! 2. The upgrade: the new CRD applied first (`helm upgrade` never upgrades CRDs), `helm upgrade
//!    --reset-then-reuse-values` of this chart with the values new in it (the fake's host
//!    trusted, the operator's new image, the chart's Redis kept without a password so that the
//!    Redis pod and the sessions it holds stay), then the ShardSet's pinned `spec.image` removed
//!    so that its pods roll to the worker image released with the chart.
//! 3. Then: the ShardSet is Ready on the new operator with the new worker image in every pod, the
//!    fake recorded no more Identify than the README promises, every shard live again, every
//!    message of the run answered exactly once, 0 violations.
//!
//! Ignored in `make e2e`: `make test-upgrade` builds (once, cached) and loads the previous
//! release, then runs it with `--ignored`.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use shardset_e2e::charts::{
    FAKE_RELEASE, OPERATOR_RELEASE, OperatorChart, Stack, StackSettings, WORKER_IMAGE,
    ensure_resumed, helm_install, live_sessions,
};
use shardset_e2e::manifest::ShardSetManifest;
use shardset_e2e::shardsets::{exactly_ready, layout_pods, settled_at, wait_pods, wait_shardset};
use shardset_e2e::tools::{helm_async, repo_path};
use shardset_e2e::{TestNamespace, apply_crd_dir, report};

const READY_WITHIN: Duration = Duration::from_secs(240);
const SHARDS: u32 = 8;
const PER_POD: u32 = 2;

fn image_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.containers.first()?.image.as_deref()
}

/// The operator Deployment's image.
async fn operator_image(ns: &TestNamespace) -> anyhow::Result<String> {
    let deployment = ns.api::<Deployment>().get(OPERATOR_RELEASE).await?;
    deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.image)
        .context("the operator Deployment has no image")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "make test-upgrade: needs the previous release's chart and images"]
async fn helm_upgrade_from_the_previous_chart_resumes_every_session() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("upgrade").await else {
        return Ok(());
    };
    let previous = OperatorChart::previous_from_env()?;
    let OperatorChart::Previous { tag, .. } = &previous else {
        unreachable!("previous_from_env gives a previous release");
    };
    let old_worker = format!("shardset/shard-worker:{tag}");
    let started = Instant::now();
    let settings = StackSettings {
        operator_chart: previous.clone(),
        ..StackSettings::default()
    };
    let stack = Stack::install_with(&ns, &settings).await?;

    // 1. The previous release's bot, as its README had users write it.
    let bot = ShardSetManifest::new("bot", &old_worker)
        .shards(SHARDS)
        .per_pod(PER_POD)
        .intents(513)
        .redis_url(&format!("redis://{OPERATOR_RELEASE}-redis:6379"))
        .api_url(&format!("http://{FAKE_RELEASE}:8080/api"))
        .identify_window_ms(stack.identify_window_ms)
        .replying();
    let first = stack.serve(&bot, READY_WITHIN).await?;
    ensure!(
        first.pods.iter().all(|p| image_of(p) == Some(&old_worker)),
        "the previous release's pods do not run {old_worker}"
    );
    let before = live_sessions(&first.sessions, SHARDS);
    let since = stack.start_load().await?;
    let identifies_before = stack.fake.identifies().await?.len();
    report!(
        "previous release {tag} Ready: {SHARDS} shards in {:.1} s, {identifies_before} Identifies",
        started.elapsed().as_secs_f64()
    );

    // 2. The upgrade, step by step as the README says.
    let step = Instant::now();
    apply_crd_dir(&repo_path("charts/shardset-operator/crds"))?;
    let upgrade_sets: Vec<String> = [
        "--reset-then-reuse-values".into(),
        // The previous release's values pinned its operator image's tag: today's is `dev`
        // (`make images`). Redis's image stays: a new one would restart it empty.
        "--set=image.tag=dev".into(),
        // Chart 0.1.0's Redis had no password: keep it so, or it restarts empty (one Identify
        // per shard).
        "--set=redis.auth.enabled=false".into(),
        // New and required for any REST host but Discord's (here the fake).
        format!("--set=trustedApiHosts={{{FAKE_RELEASE}:8080}}"),
    ]
    .to_vec();
    let chart = repo_path("charts/shardset-operator");
    let mut args = helm_install(
        &ns.name,
        OPERATOR_RELEASE,
        &chart.to_string_lossy(),
        &upgrade_sets,
    );
    // `helm upgrade`, not `--install`: the release must exist.
    args.retain(|a| a != "--install");
    helm_async(args).await.context("helm upgrade")?;
    let operator = operator_image(&ns).await?;
    ensure!(
        operator == "shardset/shardset-operator:dev",
        "operator image after the upgrade: {operator}"
    );
    // The worker image: the one released with the chart (`spec.image` is optional now).
    ns.merge_patch("shardset/bot", json!({"spec": {"image": null}}))?;
    let layout = layout_pods("bot", SHARDS, PER_POD);
    let want: Vec<&str> = layout.iter().map(String::as_str).collect();
    wait_pods(&ns, "bot", READY_WITHIN, |pods| {
        exactly_ready(pods, &want) && pods.iter().all(|p| image_of(p) == Some(WORKER_IMAGE))
    })
    .await?;
    let upgraded = wait_shardset(&ns, "bot", READY_WITHIN, |s| settled_at(s, SHARDS)).await?;
    stack.remember("ShardSet", &upgraded);
    let after = stack.fake.wait_layout_live(SHARDS, READY_WITHIN).await?;
    let took = step.elapsed();
    let left = READY_WITHIN.saturating_sub(step.elapsed());
    let until = stack
        .stop_load_after_tail("the upgraded pods", left)
        .await?;

    // 3. What it cost.
    let replies = stack.fake.replies(since, until).await?;
    let identifies = stack.fake.identifies().await?;
    let new_identifies = &identifies[identifies_before..];
    let resumed: Vec<u32> = after
        .iter()
        .filter(|s| {
            before
                .get(&s.shard)
                .is_some_and(|b| b.session_id == s.session_id)
        })
        .map(|s| s.shard)
        .collect();
    report!(
        "upgrade {tag} -> this chart: Ready in {:.1} s; new Identifies {}; shards on their old session {resumed:?}; replies {replies:?}",
        took.as_secs_f64(),
        new_identifies.len()
    );
    ensure!(
        new_identifies.is_empty(),
        "the upgrade spent session starts: {new_identifies:#?}"
    );
    ensure_resumed(&before, &after, before.keys().copied())?;
    stack
        .fake
        .ensure_each_answered_once(&replies, since, until)
        .await
        .context("the upgrade")?;
    stack.fake.assert_no_violations("after the upgrade").await?;
    stack.finish().await?;
    report!("whole scenario {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
