//! The gateway's WebSocket endpoint: any path that is not REST or control, as on Discord, where
//! the gateway URL is `wss://gateway.discord.gg/?v=10&encoding=json&compress=zlib-stream` and the
//! resume URL is another host. Here the resume URL is `<base>/resume`; both serve the same
//! gateway, but a Resume is accepted only on a path under `/resume` (gateway.mdx "Resuming":
//! resume on READY's `resume_gateway_url`, not on the URL of the first connection).
//!
//! The upgrade is answered here rather than with axum's `ws` extractor so that the connection
//! runs on the same tokio-tungstenite as the rest of the project.

pub mod connection;
pub mod encoder;
pub mod zlib;
pub mod zstd;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::arrival::Arrivals;
use crate::state::Fake;

/// Gateway versions served (discord-api-docs `developers/reference.mdx`, "API Versions").
const VERSIONS: [&str; 2] = ["10", "9"];

/// The path segment of READY's `resume_gateway_url` (`<base>/resume`).
const RESUME_SEGMENT: &str = "resume";

/// Whether a connection came in on the resume URL: a path with a `resume` segment, as clients
/// append `/?v=10…` (twilight), `?v=10…` (discord.js, disgo) or nothing to
/// `resume_gateway_url`, and `--public-url` may add a prefix.
fn is_resume_path(path: &str) -> bool {
    path.split('/').any(|segment| segment == RESUME_SEGMENT)
}

/// Answers a WebSocket upgrade on any path; anything else is Discord's JSON 404.
pub async fn upgrade(State(fake): State<Arc<Fake>>, mut request: Request) -> Response {
    let headers = request.headers();
    let wants_ws = header_has(headers, header::UPGRADE, "websocket")
        && header_has(headers, header::CONNECTION, "upgrade");
    let key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    let (true, Some(key)) = (wants_ws, key) else {
        return crate::rest::not_found().await.into_response();
    };
    let query = request.uri().query().unwrap_or_default().to_owned();
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    };
    let version = param("v");
    let encoding = param("encoding");
    let compress = param("compress");
    let transport = match compress.as_deref() {
        None | Some("") => connection::Transport::Plain,
        Some("zlib-stream") => connection::Transport::Zlib(fake.config.zlib_level),
        Some("zstd-stream") => connection::Transport::Zstd(fake.config.zstd_level),
        Some(other) => {
            tracing::warn!(
                compress = other,
                "unknown transport compression; sending uncompressed"
            );
            connection::Transport::Plain
        }
    };
    let base = crate::public_url::public_base(&fake, request.headers());
    // The connection's kernel receive stamps (a router served without them times at reads).
    let arrivals = request
        .extensions()
        .get::<ConnectInfo<Arrivals>>()
        .map_or_else(|| Arrivals::new(fake.clock), |info| info.0.clone());
    let params = connection::Params {
        transport,
        bad_version: version.filter(|v| !VERSIONS.contains(&v.as_str())),
        bad_encoding: encoding.filter(|e| e != "json"),
        resume_url: format!("{base}/{RESUME_SEGMENT}"),
        on_resume_url: is_resume_path(request.uri().path()),
        arrivals,
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                // Clients send small payloads (4 KiB at most), so a small read buffer; writes
                // go out in batches, flushed past 32 KiB. Thousands of connections stay cheap.
                let config = WebSocketConfig::default()
                    .read_buffer_size(8 * 1024)
                    .write_buffer_size(32 * 1024)
                    .max_message_size(Some(1 << 20))
                    .max_frame_size(Some(1 << 20));
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                connection::serve(fake, ws, params).await;
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resume_url_is_recognised_however_clients_append_to_it() {
        for path in ["/resume", "/resume/", "/prefix/resume/"] {
            assert!(is_resume_path(path), "{path}");
        }
        for path in ["/", "", "/resumes", "/gateway", "/resume-me"] {
            assert!(!is_resume_path(path), "{path}");
        }
    }
}
