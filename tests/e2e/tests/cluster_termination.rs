//! Deleting a pod sends its container SIGTERM and honours the grace period: a probe that exits 3 s
//! after SIGTERM is gone after about 3 s (not at its 30 s grace period, not at once), and one that
//! ignores SIGTERM is killed when its 4 s grace period runs out.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use shardset_e2e::{TestNamespace, conditions, probe_pod, wait_for};

/// Starts a probe with `args` and grace period `grace` s, deletes it once Ready; returns the log
/// lines it printed and how long the pod took to go away.
async fn delete_and_watch(
    ns: &TestNamespace,
    name: &str,
    args: &[&str],
    grace: i64,
) -> anyhow::Result<(Vec<String>, Duration)> {
    let mut pod = probe_pod(name, args);
    pod.spec
        .as_mut()
        .expect("spec")
        .termination_grace_period_seconds = Some(grace);
    let pods = ns.api::<Pod>();
    pods.create(&PostParams::default(), &pod).await?;
    wait_for(&pods, name, conditions::pod_ready, Duration::from_secs(90)).await?;
    // Follow the logs from now on: what the container says while it stops.
    let lines = ns.follow_logs(name).await?;
    let collector = tokio::spawn(lines.collect::<Vec<String>>());

    let start = Instant::now();
    pods.delete(name, &DeleteParams::default()).await?;
    wait_for(
        &pods,
        name,
        conditions::gone,
        Duration::from_secs(grace as u64 + 60),
    )
    .await?;
    let took = start.elapsed();
    let lines = tokio::time::timeout(Duration::from_secs(10), collector).await??;
    Ok((lines, took))
}

#[tokio::test]
async fn sigterm_is_delivered_and_the_pod_exits_on_its_own() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("cluster-sigterm").await else {
        return Ok(());
    };
    let (lines, took) =
        delete_and_watch(&ns, "graceful", &["serve", "--term-delay", "3"], 30).await?;
    assert!(
        lines.iter().any(|l| l.contains("received SIGTERM")),
        "SIGTERM reached the container: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("exiting 3 s after SIGTERM")),
        "it finished its own shutdown: {lines:?}"
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(25),
        "the pod went away when the process exited (~3 s), not at the 30 s grace period: {took:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_process_ignoring_sigterm_is_killed_at_the_grace_period() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("cluster-grace").await else {
        return Ok(());
    };
    let (lines, took) = delete_and_watch(&ns, "stubborn", &["serve", "--ignore-term"], 4).await?;
    assert!(
        lines.iter().any(|l| l.contains("ignoring SIGTERM")),
        "SIGTERM reached the container: {lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("exiting")),
        "it never exited by itself: {lines:?}"
    );
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(30),
        "killed when the 4 s grace period ran out: {took:?}"
    );
    Ok(())
}
