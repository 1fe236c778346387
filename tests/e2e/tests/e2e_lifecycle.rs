//! End to end, the way a user runs it: `helm install` the operator chart (two leader-elected
//! replicas, the chart's RBAC and Redis) and the fake Discord chart, then with `kubectl`:
//!
//! 1. apply a ShardSet of 8 shards at 2 per pod → 4 worker pods Running and Ready, every shard
//!    READY in the fake (one accepted Identify each), `kubectl get shardsets` shows 8/8/4 and the
//!    guilds, zero violations; what guards the chart's Redis and the workers holds
//!    ([`shardset_e2e::charts::guard`]: the password, the NetworkPolicies);
//! 2. `kubectl edit` `spec.shards` 8 → 12, then `kubectl scale --replicas=6` → each new layout
//!    Ready, the old one gone, zero violations;
//! 3. delete a worker pod → replaced, and its sessions **resumed**: same session ids, one more
//!    resume each, no new Identify in the fake's log;
//! 4. under the synthetic message load, the fake's `delay` fault holds shard 0's connection still
//!    (no dispatch, no heartbeat ACK): the worker notices the silent connection
//!    (`silent_connections_total`) and resumes it in place within the README's bound,
//!    (`GATEWAY_SILENT_BEATS` + 1) heartbeat intervals of its last ACK, no Identify, and every
//!    message of the load is answered exactly once;
//! 5. delete the ShardSet → its pods gone and its Redis keys deleted;
//! 6. the token appears in no log, Event, status or `kubectl get -o yaml`, and the operator's log
//!    has no `forbidden`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use shardset_e2e::charts::fake::{Fault, IdentifyOutcome, Target};
use shardset_e2e::charts::guard::check_guards;
use shardset_e2e::charts::{
    GUILDS, Placement, Stack, ensure_resumed, identifies_of, live_sessions,
};
use shardset_e2e::conditions::is_pod_ready;
use shardset_e2e::shardsets::{
    application_id, exactly_ready, settled_at, wait_pods, wait_shardset,
};
use shardset_e2e::waits::{Look, poll};
use shardset_e2e::{TestNamespace, report};

const READY_WITHIN: Duration = Duration::from_secs(180);

/// The stack's fake asks for a heartbeat every 5 s ([`shardset_e2e::charts::StackSettings`]): a
/// silent connection is closed within (1 + 1) intervals of its last ACK at the default
/// `GATEWAY_SILENT_BEATS`, then resumed; plus 5 s for a reconnect on a loaded kind node.
const SILENT_BOUND: Duration = Duration::from_secs(2 * 5 + 5);

/// Waits until layout `total` (at `per_pod`) serves alone ([`Stack::wait_layout`]) and the status
/// counts the fake's guilds; no pod restarted, no violation.
async fn wait_layout(stack: &Stack<'_>, total: u32, per_pod: u32) -> anyhow::Result<()> {
    let layout = stack
        .wait_layout("bot", total, per_pod, READY_WITHIN)
        .await?;
    let ss = wait_shardset(stack.ns, "bot", READY_WITHIN, move |s| {
        settled_at(s, total)
            && s.status.as_ref().and_then(|st| st.guilds) == Some(u64::from(GUILDS))
    })
    .await?;
    stack.remember("ShardSet", &ss);
    stack.snapshot(&format!("layout {total}"))?;
    for pod in &layout.pods {
        let restarts: i32 = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).sum())
            .unwrap_or_default();
        ensure!(
            restarts == 0,
            "{} restarted {restarts} times",
            pod.name_any()
        );
    }
    stack
        .fake
        .assert_no_violations(&format!("with layout {total}"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_scale_replace_delete() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("e2e-life").await else {
        return Ok(());
    };
    let started = Instant::now();
    let stack = Stack::install(&ns, Placement::Anywhere).await?;
    report!(
        "charts installed in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 1. The first layout.
    let step = Instant::now();
    stack.shardset("bot", 8, 2).replying().apply(&ns)?;
    wait_layout(&stack, 8, 2).await?;
    report!(
        "8 shards / 4 pods Ready and live in the fake {:.1} s after kubectl apply",
        step.elapsed().as_secs_f64()
    );
    let identifies = stack.fake.identifies().await?;
    let accepted: Vec<u32> = identifies
        .iter()
        .filter(|r| r.num_shards == 8 && r.outcome == IdentifyOutcome::Accepted)
        .map(|r| r.shard)
        .collect();
    ensure!(
        accepted.iter().copied().collect::<BTreeSet<_>>() == (0..8).collect()
            && accepted.len() == 8,
        "expected one accepted Identify per shard, got {identifies:#?}"
    );
    let step = Instant::now();
    check_guards(&stack, "bot").await?;
    report!(
        "Redis and worker guards checked in {:.1} s",
        step.elapsed().as_secs_f64()
    );
    let table = ns.kubectl(&["get", "shardsets"])?;
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    ensure!(
        rows.len() == 2 && rows[0][..5] == ["NAME", "SHARDS", "READY", "PODS", "GUILDS"],
        "kubectl get shardsets:\n{table}"
    );
    let guilds = GUILDS.to_string();
    ensure!(
        rows[1][..5] == ["bot", "8", "8", "4", guilds.as_str()],
        "kubectl get shardsets:\n{table}"
    );

    // 2. Reshard: kubectl edit, then kubectl scale (BlueGreen, the default).
    let step = Instant::now();
    ns.kubectl_edit("shardset/bot", "s/^  shards: 8$/  shards: 12/")?;
    wait_layout(&stack, 12, 2).await?;
    report!(
        "kubectl edit 8 -> 12 shards: Ready in {:.1} s",
        step.elapsed().as_secs_f64()
    );
    let step = Instant::now();
    ns.kubectl(&["scale", "shardset/bot", "--replicas=6"])?;
    wait_layout(&stack, 6, 2).await?;
    report!(
        "kubectl scale 12 -> 6 shards: Ready in {:.1} s",
        step.elapsed().as_secs_f64()
    );

    // 3. A deleted worker pod is replaced and resumes its sessions.
    let victim = "bot-6-2-3";
    let moved: BTreeSet<u32> = [2, 3].into();
    let before_identifies = stack.fake.identifies().await?;
    let before = live_sessions(&stack.fake.sessions().await?, 6);
    let old_uid = ns
        .api::<Pod>()
        .get(victim)
        .await?
        .uid()
        .context("pod uid")?;
    let step = Instant::now();
    ns.kubectl(&["delete", "pod", victim, "--wait=false"])?;
    wait_pods(&ns, "bot", READY_WITHIN, |pods| {
        pods.iter().any(|p| {
            p.name_any() == victim
                && p.uid().as_deref() != Some(old_uid.as_str())
                && is_pod_ready(p)
        }) && exactly_ready(pods, &["bot-6-0-1", "bot-6-2-3", "bot-6-4-5"])
    })
    .await?;
    let after = stack.fake.wait_layout_live(6, READY_WITHIN).await?;
    report!(
        "deleted {victim}: replaced and live again in {:.1} s",
        step.elapsed().as_secs_f64()
    );
    ensure_resumed(&before, &after, moved.iter().copied())?;
    let after_identifies = stack.fake.identifies().await?;
    ensure!(
        identifies_of(&after_identifies, 6, &moved) == identifies_of(&before_identifies, 6, &moved),
        "the replacement pod identified instead of resuming: {:#?}",
        &after_identifies[before_identifies.len()..]
    );
    stack
        .fake
        .assert_no_violations("after the pod was replaced")
        .await?;

    // 4. A silent shard: under load, the fake holds every frame to shard 0 for a minute (the
    // delay starts with its next dispatch: no dispatch, no heartbeat ACK from then); its worker
    // closes the connection and resumes in place.
    let since = stack.start_load().await?;
    let silent_pod = "bot-6-0-1";
    let silent_series = r#"shardset_worker_silent_connections_total{shard="0"}"#;
    let silent_before = stack.pod_metrics(silent_pod).await?.get(silent_series);
    let before = live_sessions(&stack.fake.sessions().await?, 6);
    let before_identifies = stack.fake.identifies().await?;
    let shard_0 = Target {
        shard: Some(0),
        num_shards: Some(6),
        ..Target::default()
    };
    let step = Instant::now();
    let affected = stack
        .fake
        .inject(Fault::Delay { ms: 60_000 }, shard_0)
        .await?;
    ensure!(affected == 1, "the delay reached {affected} connections");
    let resumes = before.get(&0).context("shard 0 live")?.resumes;
    poll(
        "shard 0 resumed after its silence",
        READY_WITHIN,
        Duration::from_millis(250),
        || async {
            let live = live_sessions(&stack.fake.sessions().await?, 6);
            Ok(match live.get(&0) {
                Some(now) if now.resumes > resumes => Look::Done(()),
                _ => Look::NotYet("shard 0 not resumed yet".into()),
            })
        },
    )
    .await?;
    let took = step.elapsed();
    report!(
        "shard 0 silenced by the fake's delay: resumed in place after {:.1} s (bound {:.0} s)",
        took.as_secs_f64(),
        SILENT_BOUND.as_secs_f64()
    );
    ensure!(
        took <= SILENT_BOUND,
        "shard 0 was resumed {took:?} after it fell silent, beyond {SILENT_BOUND:?}"
    );
    ensure_resumed(&before, &stack.fake.sessions().await?, [0])?;
    let silent_after = stack.pod_metrics(silent_pod).await?.get(silent_series);
    ensure!(
        silent_after == silent_before + 1.0,
        "{silent_pod} counted {silent_before} then {silent_after} silent connections of shard 0"
    );
    ensure!(
        stack.fake.identifies().await?.len() == before_identifies.len(),
        "an Identify was spent on the silent shard"
    );
    let until = stack
        .stop_load_after_tail("layout 6 after the silence", READY_WITHIN)
        .await?;
    let replies = stack.fake.replies(since, until).await?;
    report!("replies across the silence: {replies:?}");
    stack
        .fake
        .ensure_each_answered_once(&replies, since, until)
        .await?;
    stack
        .fake
        .assert_no_violations("after the silent shard resumed")
        .await?;

    // 5. Delete: pods gone, Redis keys cleaned.
    let app_id = application_id(&ns, "bot").await?;
    let keys = stack.redis_keys(&app_id).await?;
    ensure!(
        [":session:6:", ":lease:6:", ":status:6:", ":epoch"]
            .iter()
            .all(|kind| keys.iter().any(|k| k.contains(kind))),
        "expected the bot's sessions, leases, status and epoch in Redis before the delete, found {keys:?}"
    );
    let step = Instant::now();
    ns.kubectl(&["delete", "shardset", "bot", "--timeout=120s"])?;
    wait_pods(&ns, "bot", Duration::from_secs(60), |p| p.is_empty()).await?;
    let left = stack.redis_keys(&app_id).await?;
    if !left.is_empty() {
        bail!("Redis keys left after the ShardSet was deleted: {left:?}");
    }
    report!(
        "kubectl delete shardset: pods and {} Redis keys gone in {:.1} s",
        keys.len(),
        step.elapsed().as_secs_f64()
    );

    // 6. What a user could see holds no token, and RBAC never refused the operator.
    stack.finish().await?;
    report!("whole scenario {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
