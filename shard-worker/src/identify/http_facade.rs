//! An HTTP face of the Identify queue, compatible with twilight's gateway-queue:
//! `GET /?shard=N` answers `200` when shard N may send its Identify. Bots written with other
//! libraries (twilight's `examples/gateway-queue-http.rs` queue, or any HTTP client) can share the
//! buckets of the Redis protocol without code of ours.
//!
//! The window is confirmed when the answer is written, a moment before the client's Identify
//! leaves: the gate's margin must cover that moment (it does on one host or one cluster).
//! A client that goes away before the answer gives the gate back unused.
//!
//! Every `200` spends a session start, so a request must pass, in this order: the bearer token
//! when one is configured (`401` without it), a shard id of the layout, below its shard count
//! (`400`), and no other request waiting for the same shard (`409`: two would take two permits
//! for one Identify). So at most one request per shard of the layout waits at a time. Any answer
//! but `200` means: do not Identify.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::queue::IdentifyQueue;

/// The token a client of the facade must present (`Authorization: Bearer <token>`). Prints
/// `<redacted>`; compared in constant time.
#[derive(Clone)]
pub struct BearerToken(String);

impl BearerToken {
    /// Wraps a token read from the environment (`QUEUE_TOKEN`); surrounding whitespace (a
    /// trailing newline from a Secret) is removed.
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into().trim().to_owned())
    }

    /// True when nothing is left after trimming: no token at all, not one that admits anyone.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `headers` carry `Authorization: Bearer <this token>`.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(presented) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        !self.is_empty() && bool::from(presented.trim().as_bytes().ct_eq(self.0.as_bytes()))
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the facade admits.
#[derive(Debug, Clone)]
pub struct FacadeConfig {
    /// The layout's shard count: shard ids at or above it are refused.
    pub total: u32,
    /// When set, every request must carry it as a bearer token.
    pub token: Option<BearerToken>,
}

struct Facade {
    queue: Arc<dyn IdentifyQueue>,
    config: FacadeConfig,
    /// Shards with a request waiting for its permit.
    waiting: Mutex<HashSet<u32>>,
}

impl Facade {
    /// Marks `shard` as waiting, unless a request for it already waits.
    fn wait_for(self: &Arc<Self>, shard: u32) -> Option<Waiting> {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        waiting.insert(shard).then(|| Waiting {
            facade: Arc::clone(self),
            shard,
        })
    }
}

/// A shard's request waiting for its permit; the shard is free again when it is dropped (the
/// answer written, or the client gone).
struct Waiting {
    facade: Arc<Facade>,
    shard: u32,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut waiting = self
            .facade
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        waiting.remove(&self.shard);
    }
}

#[derive(Debug, Deserialize)]
struct ShardQuery {
    shard: u32,
}

/// The router serving `GET /?shard=N` for the layout and token of `config`.
pub fn router(queue: Arc<dyn IdentifyQueue>, config: FacadeConfig) -> Router {
    let facade = Arc::new(Facade {
        queue,
        config,
        waiting: Mutex::default(),
    });
    Router::new()
        .route("/", get(wait_for_turn))
        .with_state(facade)
}

async fn wait_for_turn(
    State(facade): State<Arc<Facade>>,
    headers: HeaderMap,
    query: Result<Query<ShardQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Some(token) = &facade.config.token
        && !token.admits(&headers)
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
        )
            .into_response();
    }
    let Ok(Query(ShardQuery { shard })) = query else {
        return (StatusCode::BAD_REQUEST, "expected ?shard=<shard id>").into_response();
    };
    if shard >= facade.config.total {
        let message = format!(
            "shard {shard} is not below this layout's {}",
            facade.config.total
        );
        return (StatusCode::BAD_REQUEST, message).into_response();
    }
    let Some(_waiting) = facade.wait_for(shard) else {
        let message = format!("a request for shard {shard} is already waiting");
        return (StatusCode::CONFLICT, message).into_response();
    };
    // If the client disconnects, axum drops this future: the permit's Drop releases the gate.
    let permit = facade.queue.acquire(shard, &|_| {}).await;
    permit.sent().await;
    StatusCode::OK.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().expect("header"));
        headers
    }

    #[test]
    fn the_token_admits_only_itself_and_never_prints() {
        let token = BearerToken::new("s3cret\n");
        assert!(token.admits(&bearer("Bearer s3cret")));
        assert!(!token.admits(&bearer("Bearer s3cre")));
        assert!(!token.admits(&bearer("Bearer s3cret2")));
        assert!(!token.admits(&bearer("Basic s3cret")));
        assert!(!token.admits(&HeaderMap::new()));
        assert_eq!(format!("{token:?}"), "<redacted>");
        // An empty token admits nobody (it is refused at start anyway).
        assert!(!BearerToken::new(" ").admits(&bearer("Bearer ")));
    }
}
