//! The REST endpoints a gateway client and a bot that answers messages need, under `/api/v10`
//! (also `/api/v9` and `/api`): `GET /gateway`, `GET /gateway/bot`, `GET /users/@me`,
//! `GET /oauth2/applications/@me`, `POST /channels/{channel_id}/messages`.
//!
//! Errors have Discord's JSON shape `{"message": ..., "code": ...}` (discord-api-docs
//! `developers/topics/opcodes-and-status-codes.mdx`, "JSON Error Codes"). REST rate limits are
//! not enforced: the fake polices the gateway's rules.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::nonces::parse_nonce;
use crate::payloads;
use crate::state::Fake;
use crate::state::events::NewMessage;
use crate::world::{self, Channel, Person};

/// The REST routes (mounted under `/api/v10`, `/api/v9` and `/api`).
pub fn routes() -> Router<Arc<Fake>> {
    Router::new()
        .route("/gateway", get(gateway))
        .route("/gateway/bot", get(gateway_bot))
        .route("/users/@me", get(current_user))
        .route("/oauth2/applications/@me", get(current_application))
        .route("/channels/{channel_id}/messages", post(create_message))
        .fallback(not_found)
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "message": message, "code": code })),
    )
        .into_response()
}

/// Discord's 404 for an unknown route.
pub async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, 0, "404: Not Found")
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized")
}

fn json_bytes(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Checks `Authorization: Bot <token>`; the 401 to answer otherwise.
fn authorize(fake: &Fake, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if fake.authorized(header) {
        Ok(())
    } else {
        Err(Box::new(unauthorized()))
    }
}

/// `GET /gateway`: no authentication.
async fn gateway(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> Response {
    let url = crate::public_url::public_base(&fake, &headers);
    axum::Json(json!({ "url": url })).into_response()
}

/// `GET /gateway/bot`: the gateway URL, the recommended shard count and the session start limit.
async fn gateway_bot(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&fake, &headers) {
        return *denied;
    }
    let config = &fake.config;
    let shards = world::recommended_shards(
        config.guilds,
        config.guilds_per_shard,
        config.shard_multiple,
    );
    axum::Json(json!({
        "url": crate::public_url::public_base(&fake, &headers),
        "shards": shards,
        "session_start_limit": fake.budget(),
    }))
    .into_response()
}

/// `GET /users/@me`: the bot user.
async fn current_user(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&fake, &headers) {
        return *denied;
    }
    json_bytes(payloads::bot_user(&fake.bot))
}

/// `GET /oauth2/applications/@me`: the bot's application (the fields clients read).
async fn current_application(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&fake, &headers) {
        return *denied;
    }
    let bot: serde_json::Value =
        serde_json::from_slice(&payloads::bot_user(&fake.bot)).unwrap_or_default();
    axum::Json(json!({
        "id": fake.bot.id.to_string(),
        "name": fake.bot.username,
        "icon": null,
        "description": "",
        "bot_public": true,
        "bot_require_code_grant": false,
        "verify_key": "0".repeat(64),
        "flags": 0,
        "bot": bot,
        "owner": {"id": "0", "username": "owner", "discriminator": "0", "avatar": null, "global_name": null},
        "team": null,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct CreateMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    embeds: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    message_reference: Option<MessageReference>,
    /// A string (up to 25 characters) or an integer, echoed in MESSAGE_CREATE.
    #[serde(default)]
    nonce: Option<serde_json::Value>,
    #[serde(default)]
    enforce_nonce: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct MessageReference {
    #[serde(default, with = "crate::control::opt_snowflake")]
    message_id: Option<u64>,
}

/// `POST /channels/{channel_id}/messages`: the bot posts (or replies, with
/// `message_reference.message_id`). The message is dispatched as MESSAGE_CREATE like any other,
/// and a reply to a synthetic message is counted for `/control/replies`. With a `nonce` and
/// `enforce_nonce: true`, a second create with that nonce in the channel within the nonce
/// window answers the first message and creates (and counts) nothing.
async fn create_message(
    State(fake): State<Arc<Fake>>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(denied) = authorize(&fake, &headers) {
        return *denied;
    }
    let Some(channel) = channel_id
        .parse::<u64>()
        .ok()
        .and_then(|id| world::resolve_channel(id, fake.config.guilds).map(|c| (id, c)))
    else {
        return error(StatusCode::NOT_FOUND, 10_003, "Unknown Channel");
    };
    let Ok(request) = serde_json::from_slice::<CreateMessage>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            50_109,
            "The request body contains invalid JSON.",
        );
    };
    let content = request.content.unwrap_or_default();
    if content.is_empty() && request.embeds.as_ref().is_none_or(Vec::is_empty) {
        return error(
            StatusCode::BAD_REQUEST,
            50_006,
            "Cannot send an empty message",
        );
    }
    if content.chars().count() > 2_000 {
        return error(StatusCode::BAD_REQUEST, 50_035, "Invalid Form Body");
    }
    let nonce = match request.nonce.as_ref().map(parse_nonce).transpose() {
        Ok(nonce) => nonce,
        Err(_) => return error(StatusCode::BAD_REQUEST, 50_035, "Invalid Form Body"),
    };
    let (channel_id, channel) = channel;
    let guild = match channel {
        Channel::Guild(guild) => Some(guild),
        Channel::Dm => None,
    };
    let new = NewMessage {
        guild,
        channel_id,
        author: Person::Bot,
        content: &content,
        reply_to: request.message_reference.and_then(|r| r.message_id),
        nonce: nonce.as_ref(),
    };
    let message = fake.create_bot_message(&new, request.enforce_nonce.unwrap_or(false));
    json_bytes(message.d.to_vec())
}
