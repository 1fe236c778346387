//! The base URL clients reach the fake at, for the URLs it hands out: `/gateway` and
//! `/gateway/bot` answer the gateway URL, READY's `resume_gateway_url` is `<base>/resume`. Built
//! from the request's `Host` header, so it is right behind a Kubernetes Service, unless
//! `--public-url` overrides it.

use axum::http::{HeaderMap, header};

use crate::state::Fake;

/// The WebSocket base URL clients should use: `--public-url`, else `ws://<Host header>`.
pub fn public_base(fake: &Fake, headers: &HeaderMap) -> String {
    if let Some(url) = &fake.config.public_url {
        let url = url.trim_end_matches('/');
        return match url.split_once("://") {
            Some(("http", rest)) => format!("ws://{rest}"),
            Some(("https", rest)) => format!("wss://{rest}"),
            _ => url.to_owned(),
        };
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("ws://{host}")
}
