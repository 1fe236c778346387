//! Benchmark, not a test (`make bench-operator`; skipped unless `SHARDSET_BENCH=1`): on the real
//! cluster, the time from `kubectl apply` of a 100-pod ShardSet (100 shards, 1 per pod) to all
//! 100 pods created, and to all 100 Ready; then the time to delete it (pods gone, finalizer done).
//! The pods run the probe image, so "Ready" measures the operator, the scheduler and the kubelets,
//! not Discord. Prints the figures; asserts nothing about them.

use std::time::{Duration, Instant};

use shardset_e2e::host::{Operator, Stage};
use shardset_e2e::shardsets::{ShardSet, has_condition, ready_names, wait_pods, wait_shardset};
use shardset_e2e::{TestNamespace, delete_and_wait};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_hundred_pods() -> anyhow::Result<()> {
    if std::env::var("SHARDSET_BENCH").as_deref() != Ok("1") {
        eprintln!(
            "SKIPPED bench_hundred_pods: a benchmark; run `make bench-operator` (SHARDSET_BENCH=1)"
        );
        return Ok(());
    }
    let pods: u32 = std::env::var("SHARDSET_BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let Some(ns) = TestNamespace::new("op-bench").await else {
        return Ok(());
    };
    let stage = Stage::with_token(&ns, 100).await?;
    let operator = Operator::start(&ns, "op-a", &[])?;
    // Ready before the clock starts: the controller runs and the CRD is served.
    operator.wait_leading(Duration::from_secs(30)).await?;

    let manifest = stage.shardset("bot").shards(pods).per_pod(1);
    let start = Instant::now();
    manifest.apply(&ns)?;
    let applied = start.elapsed();
    let mut created_at = None;
    wait_pods(&ns, "bot", Duration::from_secs(600), |p| {
        if created_at.is_none() && p.len() as u32 >= pods {
            created_at = Some(start.elapsed());
        }
        ready_names(p).len() as u32 == pods
    })
    .await?;
    let ready = start.elapsed();
    let created = created_at.unwrap_or(ready);
    wait_shardset(&ns, "bot", Duration::from_secs(120), |s| {
        has_condition(s, "Ready", "True", "AllShardsReady")
    })
    .await?;
    let status_ready = start.elapsed();

    let shardsets = ns.api::<ShardSet>();
    let delete_start = Instant::now();
    delete_and_wait(&shardsets, "bot", Duration::from_secs(300)).await?;
    let deleted = delete_start.elapsed();
    let m = operator.metrics().await?;

    println!("ShardSet of {pods} pods (1 shard each) on the kind cluster:");
    println!(
        "  kubectl apply returned        {:>8.2} s",
        applied.as_secs_f64()
    );
    println!(
        "  all {pods} pods created          {:>8.2} s   (aim < 10 s)",
        created.as_secs_f64()
    );
    println!(
        "  all {pods} pods Ready            {:>8.2} s",
        ready.as_secs_f64()
    );
    println!(
        "  ShardSet Ready condition      {:>8.2} s",
        status_ready.as_secs_f64()
    );
    println!(
        "  delete → ShardSet gone        {:>8.2} s",
        deleted.as_secs_f64()
    );
    println!(
        "  operator: {} reconciles, {} API writes, mean reconcile {:.1} ms",
        m.reconciles(),
        m.writes(),
        1000.0 * m.get("shardset_operator_reconcile_duration_seconds_sum")
            / m.get("shardset_operator_reconcile_duration_seconds_count")
                .max(1.0)
    );
    stage.shutdown().await;
    Ok(())
}
