//! An HTTP face of the Identify queue, compatible with twilight's gateway-queue:
//! `GET /?shard=N` answers `200` when shard N may send its Identify. Bots written with other
//! libraries (twilight's `examples/gateway-queue-http.rs` queue, or any HTTP client) can share the
//! buckets of the Redis protocol without code of ours.
//!
//! The window is confirmed when the answer is written, a moment before the client's Identify
//! leaves: the gate's margin must cover that moment (it does on one host or one cluster).
//! A client that goes away before the answer gives the gate back unused.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;

use super::queue::IdentifyQueue;

#[derive(Debug, Deserialize)]
struct ShardQuery {
    shard: u32,
}

/// The router serving `GET /?shard=N`.
pub fn router(queue: Arc<dyn IdentifyQueue>) -> Router {
    Router::new()
        .route("/", get(wait_for_turn))
        .with_state(queue)
}

async fn wait_for_turn(
    State(queue): State<Arc<dyn IdentifyQueue>>,
    Query(query): Query<ShardQuery>,
) -> StatusCode {
    // If the client disconnects, axum drops this future: the permit's Drop releases the gate.
    let permit = queue.acquire(query.shard, &|_| {}).await;
    permit.sent().await;
    StatusCode::OK
}
