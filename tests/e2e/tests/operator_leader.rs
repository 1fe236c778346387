//! Scenario: two operator replicas share one Lease; only the holder acts.
//!
//! 1. Two processes start; exactly one holds the Lease (`coordination.k8s.io`) and reports
//!    `leader 1`, the other `leader 0`.
//! 2. A ShardSet appears: the leader creates its pods; the standby has reconciled nothing and
//!    written nothing.
//! 3. The leader crashes (SIGKILL, nothing released): once the Lease expires the standby takes it
//!    and acts (a deleted pod comes back); pods were created once each across both replicas.
//! 4. SIGTERM on the new leader: it stops cleanly and releases the Lease at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use shardset_e2e::host::{Operator, Stage};
use shardset_e2e::shardsets::{exactly_ready, wait_pods};
use shardset_e2e::{TestNamespace, wait_for};

fn holder(lease: Option<&Lease>) -> Option<String> {
    lease?.spec.as_ref()?.holder_identity.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_both_act() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("op-leader").await else {
        return Ok(());
    };
    let stage = Stage::with_token(&ns, 100).await?;
    let mut a = Operator::start(&ns, "op-a", &["--lease-duration", "6"])?;
    let mut b = Operator::start(&ns, "op-b", &["--lease-duration", "6"])?;

    // 1. One holder.
    let leases = ns.api::<Lease>();
    let lease = wait_for(
        &leases,
        "shardset-operator",
        |l: Option<&Lease>| holder(l).is_some(),
        Duration::from_secs(60),
    )
    .await?;
    let first = holder(lease.as_ref()).unwrap_or_default();
    let (leader, standby) = if first == "op-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert_eq!(leader.identity, first);
    // The holder starts its controller.
    leader.wait_leading(Duration::from_secs(30)).await?;
    assert!(!standby.metrics().await?.leader());
    // Each replica applies the Lease under its own field manager: that is what makes a competing
    // replica's apply a conflict instead of a silent takeover.
    let managers: Vec<String> = leases
        .get("shardset-operator")
        .await?
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.contains(&format!("shardset-operator-{first}")),
        "{managers:?}"
    );

    // 2. Only the leader acts.
    stage.shardset("bot").shards(2).apply(&ns)?;
    wait_pods(&ns, "bot", Duration::from_secs(120), |p| {
        exactly_ready(p, &["bot-2-0-0", "bot-2-1-1"])
    })
    .await?;
    let idle = standby.metrics().await?;
    assert_eq!(idle.reconciles(), 0.0, "the standby reconciled");
    assert_eq!(
        idle.writes(),
        0.0,
        "the standby wrote: {:?}",
        idle.requests()
    );

    // 3. The leader crashes; the standby takes over once the Lease expires.
    let created_by_leader = leader
        .metrics()
        .await?
        .get("shardset_operator_pod_actions_total{action=\"create\"}");
    leader.kill();
    let new_holder = standby.identity.clone();
    wait_for(
        &leases,
        "shardset-operator",
        move |l: Option<&Lease>| holder(l).as_deref() == Some(new_holder.as_str()),
        Duration::from_secs(60),
    )
    .await?;
    let pods = ns.api::<Pod>();
    let old_uid = pods.get("bot-2-1-1").await?.metadata.uid;
    pods.delete("bot-2-1-1", &DeleteParams::default()).await?;
    wait_pods(&ns, "bot", Duration::from_secs(120), |p| {
        exactly_ready(p, &["bot-2-0-0", "bot-2-1-1"])
            && p.iter().all(|p| {
                p.metadata.name.as_deref() != Some("bot-2-1-1") || p.metadata.uid != old_uid
            })
    })
    .await?;
    let took_over = standby.metrics().await?;
    assert!(took_over.leader() && took_over.reconciles() > 0.0);
    let created_by_standby =
        took_over.get("shardset_operator_pod_actions_total{action=\"create\"}");
    assert_eq!(
        created_by_leader, 2.0,
        "the first leader created both pods once"
    );
    assert_eq!(
        created_by_standby, 1.0,
        "the new leader created only the deleted pod"
    );

    // 4. A clean stop releases the Lease.
    let status = standby.terminate()?;
    assert!(status.success(), "exit status {status}");
    let lease = leases.get("shardset-operator").await?;
    assert!(
        holder(Some(&lease)).unwrap_or_default().is_empty(),
        "released: {:?}",
        lease.spec
    );
    assert!(standby.log().contains("released the leader Lease"));
    stage.shutdown().await;
    Ok(())
}
