//! The control API under `/control`: reports (identifies, violations, sessions, commands, late
//! heartbeats, counters, replies), fault injection, the synthetic load, and a reset. JSON in and out, with the record
//! types of `records.rs`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::records::{
    BudgetUpdate, DispatchRequest, DispatchResult, FaultRequest, FaultResult, GuildList,
    LoadSettings, MessageRequest, MessagesCreated, RecordFilter,
};
use crate::state::Fake;
use crate::state::events::NewMessage;
use crate::world::{self, Person};

/// The control routes (mounted under `/control`).
pub(crate) fn routes() -> Router<Arc<Fake>> {
    Router::new()
        .route("/", get(index))
        .route("/identifies", get(identifies))
        .route("/violations", get(violations))
        .route("/sessions", get(sessions))
        .route("/session_history", get(session_history))
        .route("/overlaps", get(overlaps))
        .route("/commands", get(commands))
        .route("/late_heartbeats", get(late_heartbeats))
        .route("/counters", get(counters))
        .route("/replies", get(replies))
        .route("/guilds", get(guilds))
        .route("/reset", post(reset))
        .route("/faults", post(faults))
        .route("/load", get(load).post(set_load).delete(stop_load))
        .route("/messages", post(messages))
        .route("/dispatch", post(dispatch))
        .route("/budget", get(budget).post(set_budget))
}

fn bad_request(message: impl Into<String>) -> Response {
    let message = message.into();
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

async fn index() -> Json<serde_json::Value> {
    Json(json!({
        "GET": ["/control/identifies", "/control/violations", "/control/sessions",
                "/control/session_history", "/control/overlaps",
                "/control/commands?session_id=&shard=&num_shards=&op=",
                "/control/late_heartbeats?session_id=&shard=&num_shards=",
                "/control/counters", "/control/replies?since_ms=&until_ms=",
                "/control/guilds?shard=&num_shards=", "/control/load", "/control/budget"],
        "POST": ["/control/reset", "/control/faults", "/control/load", "/control/messages",
                 "/control/dispatch", "/control/budget"],
        "DELETE": ["/control/load"],
    }))
}

async fn identifies(State(fake): State<Arc<Fake>>) -> Response {
    Json(fake.identifies()).into_response()
}

async fn violations(State(fake): State<Arc<Fake>>) -> Response {
    Json(fake.violations()).into_response()
}

async fn sessions(State(fake): State<Arc<Fake>>) -> Response {
    Json(fake.sessions()).into_response()
}

async fn session_history(State(fake): State<Arc<Fake>>) -> Response {
    Json(fake.session_history()).into_response()
}

async fn overlaps(State(fake): State<Arc<Fake>>) -> Response {
    Json(fake.overlaps()).into_response()
}

async fn commands(State(fake): State<Arc<Fake>>, Query(filter): Query<RecordFilter>) -> Response {
    Json(fake.commands(&filter)).into_response()
}

async fn late_heartbeats(
    State(fake): State<Arc<Fake>>,
    Query(filter): Query<RecordFilter>,
) -> Response {
    Json(fake.late_heartbeats(&filter)).into_response()
}

async fn counters(State(fake): State<Arc<Fake>>) -> Response {
    Json(fake.counters()).into_response()
}

#[derive(Debug, Deserialize)]
struct Period {
    since_ms: Option<u64>,
    until_ms: Option<u64>,
}

async fn replies(State(fake): State<Arc<Fake>>, Query(period): Query<Period>) -> Response {
    let until = period.until_ms.unwrap_or_else(|| fake.clock.now_ms() + 1);
    Json(fake.replies_report(period.since_ms.unwrap_or(0), until)).into_response()
}

#[derive(Debug, Deserialize)]
struct ShardQuery {
    shard: u32,
    num_shards: u32,
}

async fn guilds(State(fake): State<Arc<Fake>>, Query(q): Query<ShardQuery>) -> Response {
    if q.num_shards == 0 || q.shard >= q.num_shards {
        return bad_request("need 0 <= shard < num_shards");
    }
    Json(GuildList {
        shard: q.shard,
        num_shards: q.num_shards,
        guild_ids: world::guilds_on_shard(fake.config.guilds, q.shard, q.num_shards)
            .map(|i| world::guild_id(i).to_string())
            .collect(),
    })
    .into_response()
}

async fn reset(State(fake): State<Arc<Fake>>) -> StatusCode {
    fake.reset();
    StatusCode::NO_CONTENT
}

async fn faults(State(fake): State<Arc<Fake>>, Json(request): Json<FaultRequest>) -> Response {
    Json(FaultResult {
        affected: fake.inject(&request),
    })
    .into_response()
}

async fn load(State(fake): State<Arc<Fake>>) -> Response {
    Json(fake.load_status()).into_response()
}

async fn set_load(State(fake): State<Arc<Fake>>, Json(settings): Json<LoadSettings>) -> Response {
    if settings.dm_percent > 100 {
        return bad_request("dm_percent is a percentage");
    }
    fake.load.send_replace(settings);
    Json(fake.load_status()).into_response()
}

async fn stop_load(State(fake): State<Arc<Fake>>) -> Response {
    fake.load.send_modify(|l| l.rate = 0);
    Json(fake.load_status()).into_response()
}

/// Most messages one request may create.
const MAX_MESSAGES: u32 = 10_000;

async fn messages(State(fake): State<Arc<Fake>>, Json(request): Json<MessageRequest>) -> Response {
    let count = request.count.unwrap_or(1);
    if count > MAX_MESSAGES {
        return bad_request(format!("count is at most {MAX_MESSAGES}"));
    }
    if let Some(guild) = request.guild_id
        && world::guild_index(guild, fake.config.guilds).is_none()
    {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no guild {guild}") })),
        )
            .into_response();
    }
    let mut targets = Vec::new();
    let ids = (0..count)
        .map(|i| {
            let user = u64::from(i);
            let channel = match request.guild_id {
                Some(guild) => world::text_channel_id(guild),
                None => world::dm_channel_id(user),
            };
            let content = request
                .content
                .clone()
                .unwrap_or_else(|| format!("hello from user{}", user % world::USERS));
            let new = NewMessage {
                guild: request.guild_id,
                channel_id: channel,
                author: Person::User(user),
                content: &content,
                reply_to: None,
                nonce: None,
            };
            let (id, _) = fake.create_message(&new, true, &mut targets);
            id.to_string()
        })
        .collect();
    Json(MessagesCreated { ids }).into_response()
}

async fn dispatch(State(fake): State<Arc<Fake>>, Json(request): Json<DispatchRequest>) -> Response {
    if request.t.is_empty()
        || !request
            .t
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_')
    {
        return bad_request("t must be an event name like GUILD_UPDATE");
    }
    let Ok(d) = serde_json::to_vec(&request.d) else {
        return bad_request("d is not serializable");
    };
    let sessions = fake.publish(request.guild_id, &request.t, d.into());
    Json(DispatchResult { sessions }).into_response()
}

async fn budget(State(fake): State<Arc<Fake>>) -> Response {
    Json(fake.budget()).into_response()
}

async fn set_budget(State(fake): State<Arc<Fake>>, Json(update): Json<BudgetUpdate>) -> Response {
    if let Some(remaining) = update.remaining {
        fake.set_budget_remaining(remaining);
    }
    Json(fake.budget()).into_response()
}
