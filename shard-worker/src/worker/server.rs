//! The worker's HTTP endpoints: `/healthz`, `/readyz` (every owned shard READY or RESUMED) and
//! `/metrics` (Prometheus text).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::worker::board::Board;
use crate::worker::metrics::state_label;
use shardset_contract::{HEALTHZ_PATH, METRICS_PATH, READYZ_PATH};

#[derive(Clone)]
struct AppState {
    board: Arc<Board>,
    registry: Arc<Registry>,
}

/// The router of the worker's endpoints.
pub fn router(board: Arc<Board>, registry: Arc<Registry>) -> Router {
    Router::new()
        .route(HEALTHZ_PATH, get(|| async { "ok\n" }))
        .route(READYZ_PATH, get(readyz))
        .route(METRICS_PATH, get(metrics))
        .with_state(AppState { board, registry })
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = String::new();
    for (shard, s, reason) in state.board.summary() {
        body.push_str(&format!("shard {shard}: {}", state_label(s)));
        if let Some(reason) = reason {
            body.push_str(&format!(" ({reason})"));
        }
        body.push('\n');
    }
    let code = if state.board.all_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, body)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
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
            String::new(),
        ),
    }
}

/// Serves `router` on `addr` until `shutdown` turns true. Returns the bound address first (for
/// `:0` in tests) through `bound`.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|s| *s).await;
            })
            .await;
    });
    Ok((local, task))
}
