//! `helm install` of a small chart from the repo (tests/cluster/chart) brings its Deployment to
//! Ready; `helm uninstall` removes everything it made.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use shardset_e2e::tools::repo_path;
use shardset_e2e::{TestNamespace, conditions, wait_for};

#[tokio::test]
async fn helm_install_then_uninstall() -> anyhow::Result<()> {
    let Some(ns) = TestNamespace::new("cluster-helm").await else {
        return Ok(());
    };
    let chart = repo_path("tests/cluster/chart");
    let chart = chart.to_str().expect("utf-8 path");
    ns.helm(&[
        "install",
        "demo",
        chart,
        "--set",
        "message=hello from helm",
        "--wait",
        "--timeout",
        "120s",
    ])?;

    let deployments = ns.api::<Deployment>();
    let ready = deployments.get("demo-probe").await?;
    assert_eq!(
        ready.status.and_then(|s| s.ready_replicas),
        Some(1),
        "helm --wait returned with the Deployment ready"
    );
    let config = ns.api::<ConfigMap>().get("demo-probe").await?;
    assert_eq!(
        config
            .data
            .unwrap_or_default()
            .get("message")
            .map(String::as_str),
        Some("hello from helm"),
        "values reach the templates"
    );
    assert!(ns.helm(&["list", "-q"])?.lines().any(|l| l == "demo"));

    ns.helm(&["uninstall", "demo", "--wait", "--timeout", "120s"])?;
    let gone = Duration::from_secs(60);
    wait_for(&deployments, "demo-probe", conditions::gone, gone).await?;
    wait_for(&ns.api::<Service>(), "demo-probe", conditions::gone, gone).await?;
    wait_for(&ns.api::<ConfigMap>(), "demo-probe", conditions::gone, gone).await?;
    assert!(
        ns.helm(&["list", "-q"])?.trim().is_empty(),
        "no release left"
    );
    Ok(())
}
