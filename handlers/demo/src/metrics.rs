//! The demo handler's `/healthz` and `/metrics` (Prometheus text): events handled (and
//! redelivered), replies by result, reorderings; beside them, the handler library's bus
//! metrics (`shardset_bus_*`: lag, pending, redeliveries, partitions owned) in the same registry.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use shardset_contract::{HEALTHZ_PATH, METRICS_PATH};
use shardset_handler::{Event, Metrics as BusMetrics};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// The counters (cheap to clone: shared).
#[derive(Clone, Default)]
pub struct Metrics {
    events: Counter,
    redelivered: Counter,
    replies: Family<ResultLabel, Counter>,
    reorderings: Counter,
}

impl Metrics {
    /// The counters, registered in a new registry beside the handler library's bus metrics of
    /// a replica of `group` consuming `stream` (handed to `Replica::start_with_metrics`).
    pub fn registered(stream: &str, group: &str) -> (Self, BusMetrics, Registry) {
        let metrics = Self::default();
        let mut root = Registry::default();
        // The demo's own series under `shardset_handler_`, the library's under `shardset_bus_`.
        let registry = root.sub_registry_with_prefix("shardset_handler");
        registry.register("events", "Events handled", metrics.events.clone());
        registry.register(
            "redelivered_events",
            "Events delivered more than once",
            metrics.redelivered.clone(),
        );
        registry.register(
            "replies",
            "REST replies sent, by result",
            metrics.replies.clone(),
        );
        registry.register(
            "reorderings",
            "Messages of a guild handled before an earlier one (first deliveries)",
            metrics.reorderings.clone(),
        );
        let bus = BusMetrics::register(&mut root, stream, group);
        (metrics, bus, root)
    }

    pub fn event(&self, event: &Event) {
        self.events.inc();
        if event.redelivered() {
            self.redelivered.inc();
        }
    }

    pub fn reply(&self, result: &'static str) {
        self.replies.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn reordering(&self) {
        self.reorderings.inc();
    }
}

/// Serves `/healthz` and `/metrics` on `listen` until the process ends.
pub async fn serve(listen: SocketAddr, registry: Registry) -> std::io::Result<()> {
    let registry = Arc::new(registry);
    let app = Router::new()
        .route(HEALTHZ_PATH, get(|| async { "ok\n" }))
        .route(METRICS_PATH, get(metrics))
        .with_state(registry);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app).await
}

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "encoding failed\n".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_the_documented_ones() {
        let (metrics, _bus, registry) = Metrics::registered("shardset-ns-bot", "default");
        metrics.reply("ok");
        metrics.reordering();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for line in [
            "shardset_handler_events_total 0",
            "shardset_handler_redelivered_events_total 0",
            "shardset_handler_replies_total{result=\"ok\"} 1",
            "shardset_handler_reorderings_total 1",
            r#"shardset_bus_partitions_owned{stream="shardset-ns-bot",group="default"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
