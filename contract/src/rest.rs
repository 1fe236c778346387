//! The few Discord REST calls that the operator and the worker both make:
//! `GET /v10/gateway/bot` (gateway URL, recommended shards, session start limit) and
//! `GET /v10/users/@me` (the bot's id, which keys the Redis protocol).
//!
//! Source: discord-api-docs `developers/events/gateway.mdx` ("Get Gateway Bot") and
//! `developers/topics/rate-limits.mdx` (429 bodies carry `retry_after` in seconds).
//! Errors never contain the token: it travels only in the `Authorization` header.
//!
//! Whatever answers at the base URL is not trusted (a ShardSet author chooses it): bodies are
//! read up to [`MAX_BODY_BYTES`], a `retry_after` is bounded by [`MAX_RETRY_AFTER`], and numbers
//! Discord never sends are refused ([`GatewayBot::check`]); nothing an answer holds can panic.

use std::time::Duration;

use serde::Deserialize;

use crate::token::Token;

/// Discord's public REST base; `DISCORD_API_URL` / `spec.gateway.apiUrl` override it.
pub const DEFAULT_API_URL: &str = "https://discord.com/api";

/// The largest answer body read. Discord's answers to these calls are a few hundred bytes; a
/// server that sends more is not Discord.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The longest wait a 429 can impose: a larger (or infinite, or unparsable) `retry_after` is
/// read as this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The answer of `GET /gateway/bot`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GatewayBot {
    /// The gateway WebSocket URL (`wss://gateway.discord.gg`).
    pub url: String,
    /// Discord's recommended shard count.
    pub shards: u32,
    pub session_start_limit: SessionStartLimit,
}

/// The most shards a layout can have (the CRD's bound on `spec.shards`); a recommendation above
/// it is not Discord's (Discord recommends one shard per 1,000 guilds).
pub const MAX_SHARDS: u32 = 65_536;

impl GatewayBot {
    /// Refuses numbers Discord never sends, which would make the operator plan absurd layouts
    /// (millions of pods) or the worker divide by them: shards and `max_concurrency` at most
    /// [`MAX_SHARDS`].
    pub fn check(&self) -> Result<(), &'static str> {
        if self.shards > MAX_SHARDS {
            return Err("the recommended shard count is above 65536");
        }
        if self.session_start_limit.max_concurrency > MAX_SHARDS {
            return Err("max_concurrency is above 65536");
        }
        Ok(())
    }
}

/// `session_start_limit` of `GET /gateway/bot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct SessionStartLimit {
    /// Session starts allowed per 24 h.
    pub total: u32,
    /// Session starts left in the current period.
    pub remaining: u32,
    /// Milliseconds until `remaining` resets to `total`.
    pub reset_after: u64,
    /// Identify buckets: shards with equal `shard_id % max_concurrency` share one.
    pub max_concurrency: u32,
}

/// The parts of `GET /users/@me` we use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CurrentUser {
    /// The bot user's snowflake, which is also its application id.
    #[serde(deserialize_with = "snowflake")]
    pub id: u64,
    pub username: String,
}

/// Why a REST call failed. `metric_label` gives a fixed label for metrics.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// 401: the token is wrong or was reset. Retrying will not help.
    #[error("Discord refused the bot token (401 Unauthorized)")]
    Unauthorized,
    /// 429: wait `retry_after` before asking again.
    #[error("Discord rate limited the request; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// Any other non-success status.
    #[error("Discord answered {status} to {path}")]
    Status { status: u16, path: &'static str },
    /// Connection, TLS, timeout or body errors.
    #[error("cannot reach the Discord API at {base}: {reason}")]
    Unreachable { base: String, reason: String },
    /// The configured base URL is not a URL.
    #[error("invalid Discord API URL {0:?}")]
    InvalidBase(String),
    /// The answer is not what Discord sends: too large, not the expected JSON, or numbers out of
    /// Discord's range.
    #[error("Discord's answer to {path} is malformed: {reason}")]
    Malformed { path: &'static str, reason: String },
}

impl RestError {
    /// A fixed, low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::RateLimited { .. } => "rate_limited",
            Self::Status { .. } => "status",
            Self::Unreachable { .. } => "unreachable",
            Self::InvalidBase(_) => "invalid_base",
            Self::Malformed { .. } => "malformed",
        }
    }
}

/// A small Discord REST client: one base URL, one token.
#[derive(Clone)]
pub struct DiscordRest {
    http: reqwest::Client,
    base: String,
    token: Token,
}

impl std::fmt::Debug for DiscordRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordRest")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl DiscordRest {
    /// A client for `base` (e.g. `https://discord.com/api` or `http://fake-discord:8080/api`).
    pub fn new(base: &str, token: Token) -> Result<Self, RestError> {
        install_crypto_provider();
        let parsed = url::Url::parse(base).map_err(|_| RestError::InvalidBase(base.to_owned()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(RestError::InvalidBase(base.to_owned()));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!(
                "DiscordBot (https://github.com/shardset/shardset-operator, ",
                env!("CARGO_PKG_VERSION"),
                ")"
            ))
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| RestError::Unreachable {
                base: base.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// The REST base this client talks to.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A transport error as a user reads it: reqwest's own text ("error sending request") says
    /// little, so the causes follow ("...: tcp connect error: Connection refused"). The URL is left
    /// out: it holds no secret, but the base is already named by the error.
    fn unreachable(&self, error: reqwest::Error) -> RestError {
        let error = error.without_url();
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !reason.ends_with(&text) {
                reason.push_str(": ");
                reason.push_str(&text);
            }
            source = cause.source();
        }
        RestError::Unreachable {
            base: self.base.clone(),
            reason,
        }
    }

    /// `GET /v10/gateway/bot`, its numbers checked against what Discord can answer.
    pub async fn gateway_bot(&self) -> Result<GatewayBot, RestError> {
        const PATH: &str = "/v10/gateway/bot";
        let gateway: GatewayBot = self.get(PATH).await?;
        gateway.check().map_err(|reason| RestError::Malformed {
            path: PATH,
            reason: reason.to_owned(),
        })?;
        Ok(gateway)
    }

    /// `GET /v10/users/@me`.
    pub async fn current_user(&self) -> Result<CurrentUser, RestError> {
        self.get("/v10/users/@me").await
    }

    /// `POST /v10/channels/{channel_id}/messages` with plain `content`, as a reply to
    /// `reply_to` when given (`message_reference`): the worker's "act" path.
    pub async fn create_message(
        &self,
        channel_id: &str,
        content: &str,
        reply_to: Option<&str>,
    ) -> Result<(), RestError> {
        self.post_message(channel_id, message_body(content, reply_to, None))
            .await
    }

    /// The same, idempotent: with `nonce` (at most 25 characters) and `enforce_nonce: true`,
    /// Discord creates at most one message per nonce and author within a few minutes and
    /// answers a repeat with the message already created (discord-api-docs
    /// `developers/resources/message.mdx`, "Create Message"). A handler that replied and died
    /// before acknowledging the event replies again with the same nonce: no second message.
    pub async fn create_message_once(
        &self,
        channel_id: &str,
        content: &str,
        reply_to: Option<&str>,
        nonce: &str,
    ) -> Result<(), RestError> {
        self.post_message(channel_id, message_body(content, reply_to, Some(nonce)))
            .await
    }

    async fn post_message(
        &self,
        channel_id: &str,
        body: serde_json::Value,
    ) -> Result<(), RestError> {
        let unreachable = |e| self.unreachable(e);
        let response = self
            .http
            .post(format!("{}/v10/channels/{channel_id}/messages", self.base))
            .header(reqwest::header::AUTHORIZATION, self.token.authorization())
            .json(&body)
            .send()
            .await
            .map_err(unreachable)?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            401 => Err(RestError::Unauthorized),
            429 => Err(RestError::RateLimited {
                retry_after: retry_after_header(&response).unwrap_or(Duration::from_secs(1)),
            }),
            code => Err(RestError::Status {
                status: code,
                path: "/v10/channels/{channel_id}/messages",
            }),
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &'static str,
    ) -> Result<T, RestError> {
        let unreachable = |e| self.unreachable(e);
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::AUTHORIZATION, self.token.authorization())
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        match status.as_u16() {
            200..=299 => {
                let body = self.bounded_body(response, path).await?;
                serde_json::from_slice(&body).map_err(|e| RestError::Malformed {
                    path,
                    reason: e.to_string(),
                })
            }
            401 => Err(RestError::Unauthorized),
            429 => {
                let header = retry_after_header(&response);
                let body = self.bounded_body(response, path).await.ok();
                let retry_after = body
                    .and_then(|b| serde_json::from_slice::<RateLimitBody>(&b).ok())
                    .and_then(|b| seconds(b.retry_after))
                    .or(header)
                    .unwrap_or(Duration::from_secs(5));
                Err(RestError::RateLimited { retry_after })
            }
            code => Err(RestError::Status { status: code, path }),
        }
    }

    /// The answer's body, at most [`MAX_BODY_BYTES`]: a larger declared length is refused before
    /// reading, and a body that grows past the bound is dropped as soon as it does (the
    /// connection with it), so a hostile server cannot make the client buffer without end.
    async fn bounded_body(
        &self,
        mut response: reqwest::Response,
        path: &'static str,
    ) -> Result<Vec<u8>, RestError> {
        let too_large = || RestError::Malformed {
            path,
            reason: format!("the answer is larger than {MAX_BODY_BYTES} bytes"),
        };
        if response
            .content_length()
            .is_some_and(|length| length > MAX_BODY_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.unreachable(e))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The JSON of a message create: `content`, `message_reference` when replying, `nonce` with
/// `enforce_nonce: true` when given.
fn message_body(content: &str, reply_to: Option<&str>, nonce: Option<&str>) -> serde_json::Value {
    let mut body = serde_json::json!({ "content": content });
    if let Some(id) = reply_to {
        body["message_reference"] = serde_json::json!({ "message_id": id });
    }
    if let Some(nonce) = nonce {
        body["nonce"] = serde_json::json!(nonce);
        body["enforce_nonce"] = serde_json::json!(true);
    }
    body
}

#[derive(Deserialize)]
struct RateLimitBody {
    retry_after: f64,
}

fn retry_after_header(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    seconds(value.to_str().ok()?.trim().parse().ok()?)
}

/// A `retry_after` in seconds as a wait: negative is no wait, anything above [`MAX_RETRY_AFTER`]
/// (infinity included) is that bound, NaN is no answer. Never panics, whatever the server sent.
fn seconds(value: f64) -> Option<Duration> {
    if value.is_nan() {
        return None;
    }
    let bounded = value.clamp(0.0, MAX_RETRY_AFTER.as_secs_f64());
    Some(Duration::try_from_secs_f64(bounded).unwrap_or(MAX_RETRY_AFTER))
}

/// Discord sends snowflakes as strings; accept numbers too.
fn snowflake<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Str(String),
        Num(u64),
    }
    match Raw::deserialize(d)? {
        Raw::Num(n) => Ok(n),
        Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// rustls needs one process-wide crypto provider; we use ring, as kube does.
pub fn install_crypto_provider() {
    // Err means another part of the process installed one already: fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gateway_bot() {
        let json = r#"{"url":"wss://gateway.discord.gg","shards":9,
            "session_start_limit":{"total":1000,"remaining":999,"reset_after":14400000,"max_concurrency":1}}"#;
        let parsed: GatewayBot = serde_json::from_str(json).expect("parse");
        assert_eq!(parsed.shards, 9);
        assert_eq!(parsed.session_start_limit.max_concurrency, 1);
        assert_eq!(parsed.session_start_limit.reset_after, 14_400_000);
    }

    #[test]
    fn parses_string_snowflakes() {
        let user: CurrentUser =
            serde_json::from_str(r#"{"id":"80351110224678912","username":"bot"}"#).expect("parse");
        assert_eq!(user.id, 80351110224678912);
    }

    #[tokio::test]
    async fn unreachable_names_the_cause() {
        // A port nothing listens on: bind one, then close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let rest = DiscordRest::new(&format!("http://127.0.0.1:{port}/api"), Token::new("t"))
            .expect("client");
        let err = rest.gateway_bot().await.expect_err("nothing listens");
        let text = err.to_string();
        assert_eq!(err.metric_label(), "unreachable");
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }

    #[test]
    fn message_bodies_reply_and_enforce_nonces() {
        assert_eq!(
            message_body("hi", None, None),
            serde_json::json!({"content": "hi"})
        );
        assert_eq!(
            message_body("ack 5", Some("5"), Some("5")),
            serde_json::json!({"content": "ack 5", "message_reference": {"message_id": "5"},
                "nonce": "5", "enforce_nonce": true})
        );
    }

    #[test]
    fn refuses_non_http_base() {
        let err = DiscordRest::new("ftp://x", Token::new("t")).expect_err("refused");
        assert_eq!(err.metric_label(), "invalid_base");
    }
}
