//! `shardset-operator`: wires the kube client, the HTTP endpoints (`/metrics`, `/healthz`,
//! `/readyz`), leader election and the controller, and shuts down cleanly on SIGTERM.
//!
//! Configuration comes from the pod (in-cluster service account) or `KUBECONFIG` when run by
//! hand. Only the replica holding the Lease runs the controller; the others wait, serving
//! `/healthz` and `/metrics` (`shardset_operator_leader` tells them apart).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use clap::Parser;
use kube::api::{Api, ListParams};
use kube::client::ClientBuilder;
use kube_lease_manager::LeaseManagerBuilder;
use shardset_operator::api_trust::TrustedHosts;
use shardset_operator::context::{Context, Settings};
use shardset_operator::controller;
use shardset_operator::crd::ShardSet;
use shardset_operator::metrics::{self, Metrics};
use shardset_operator::names;
use shardset_operator::telemetry::{self, LogFormat};
use tokio::sync::watch;
use tracing::{error, info, warn};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Kubernetes operator for Discord gateway shards (ShardSet)"
)]
struct Args {
    /// Address of the HTTP server (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Watch ShardSets of this namespace only (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Run without leader election (one replica only).
    #[arg(long, env = "NO_LEADER_ELECTION")]
    no_leader_election: bool,
    /// Name of the leader election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = names::LEASE_NAME)]
    lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace, or the kubeconfig's).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Lease duration in seconds: how long a dead leader blocks a new one.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration: u64,
    /// This replica's identity in the Lease and in Events (default: pod name, else host-pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds between reconciles of a settled ShardSet (shard status from Redis; no write
    /// unless something changed).
    #[arg(long, env = "RESYNC_SECONDS", default_value_t = 60)]
    resync_seconds: u64,
    /// Seconds after a ShardSet's deletion began when cleanup stops retrying an unreachable
    /// Redis and lets the ShardSet go.
    #[arg(long, env = "CLEANUP_GIVE_UP_SECONDS", default_value_t = 120)]
    cleanup_give_up_seconds: u64,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
    /// REST hosts besides Discord's that a ShardSet's `spec.gateway.apiUrl` may name, `host` or
    /// `host:port`, comma-separated (a fake Discord, a proxy): the token is sent there. Empty by
    /// default: only Discord.
    #[arg(long, env = "TRUSTED_API_HOSTS", value_delimiter = ',')]
    trusted_api_hosts: Vec<String>,
    /// Worker image of ShardSets that do not set `spec.image`: the one released with this
    /// operator (the chart sets it from `workerImage`). Unset: such ShardSets get no pods.
    #[arg(long, env = "WORKER_IMAGE", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    worker_image: Option<String>,
    /// Make a NetworkPolicy per ShardSet that limits its worker pods' egress to DNS, Redis,
    /// Discord (443), a trusted fake's port and the bus (`--worker-network-policy=false`: none,
    /// for CNIs or egress proxies that need rules of their own).
    #[arg(long, env = "WORKER_NETWORK_POLICY", default_value_t = true, action = clap::ArgAction::Set)]
    worker_network_policy: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init(args.log_format);
    shardset_contract::rest::install_crypto_provider();
    // A malformed entry stops the operator before it serves anything: better than trusting less
    // (or more) than the chart says.
    let trusted_api_hosts = TrustedHosts::parse(&args.trusted_api_hosts)
        .map_err(|e| anyhow::anyhow!("--trusted-api-hosts: {e}"))?;

    let metrics = Arc::new(Metrics::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shardset_contract::pod::terminated().await;
        info!("shutdown signal received");
        let _ = stop_tx.send(true);
    });

    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.http_addr))?;
    info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    let app = Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(metrics.clone());
    let mut http_stop = stop_rx.clone();
    let http = tokio::spawn(async move {
        let shutdown = async move {
            let _ = http_stop.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            error!(error = %e, "HTTP server failed");
        }
    });

    let config = kube::Config::infer()
        .await
        .context("no Kubernetes configuration (in-cluster or KUBECONFIG)")?;
    let default_namespace = config.default_namespace.clone();
    let client = ClientBuilder::try_from(config)?
        .with_layer(&metrics::request_counter(metrics.clone()))
        .build();

    // Fail early, with a useful message, when the CRD is missing or we may not list it.
    let probe: Api<ShardSet> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    probe
        .list(&ListParams::default().limit(1))
        .await
        .context("cannot list ShardSets: is the CRD (crds/shardset.io_shardsets.yaml) installed, and may this service account list shardsets.shardset.io?")?;

    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let settings = Settings {
        resync: Duration::from_secs(args.resync_seconds.max(1)),
        cleanup_give_up: Duration::from_secs(args.cleanup_give_up_seconds),
        trusted_api_hosts,
        worker_image: args.worker_image.clone(),
        worker_network_policy: args.worker_network_policy,
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        identity.clone(),
        settings,
    ));

    if args.no_leader_election {
        metrics.set_leader(true);
        let stop = wait_true(stop_rx.clone());
        controller::run(ctx, args.namespace.as_deref(), stop).await;
    } else {
        let lease_namespace = args.lease_namespace.clone().unwrap_or(default_namespace);
        let manager = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
            .with_namespace(&lease_namespace)
            .with_identity(&identity)
            .with_duration(args.lease_duration)
            .with_grace((args.lease_duration / 3).max(1))
            // One field manager per replica: the Lease's server-side apply detects a competing
            // holder only through a conflict between managers; a shared name would let a second
            // replica overwrite the holder silently and both would lead.
            .with_field_manager(format!("{}-{identity}", names::FIELD_MANAGER))
            .build()
            .await
            .context("cannot set up leader election")?;
        info!(lease = %args.lease_name, namespace = %lease_namespace, %identity, "waiting for leadership");
        let (mut leader, task) = manager.watch().await;
        let mut stop = stop_rx.clone();
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                changed = leader.wait_for(|l| *l) => if changed.is_err() {
                    error!("leader election stopped");
                    break;
                },
            }
            info!(%identity, "leading: starting the controller");
            metrics.set_leader(true);
            let mut lost = leader.clone();
            let shutdown = stop_rx.clone();
            let until = async move {
                tokio::select! {
                    _ = wait_true(shutdown) => {},
                    _ = lost.wait_for(|l| !*l) => warn!("lost the leader Lease: stopping the controller"),
                }
            };
            controller::run(ctx.clone(), args.namespace.as_deref(), until).await;
            metrics.set_leader(false);
            if *stop_rx.borrow() {
                break;
            }
        }
        // Closing the channel makes the manager release the Lease, so a standby takes over now
        // rather than after the Lease expires.
        drop(leader);
        match task.await {
            Ok(Ok(_)) => info!("released the leader Lease"),
            Ok(Err(e)) => warn!(error = %e, "could not release the leader Lease"),
            Err(e) => warn!(error = %e, "leader election task failed"),
        }
    }

    let _ = http.await;
    info!("stopped");
    Ok(())
}

async fn serve_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

/// Resolves once the stop flag is set.
async fn wait_true(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "shardset-operator".into());
    format!("{host}-{}", std::process::id())
}
