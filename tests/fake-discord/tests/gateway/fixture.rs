//! A fake on a free port per test, and typed access to its control API over HTTP.

use fake_discord::{Config, FakeDiscord, RunningFake};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub const TOKEN: &str = "test-token";

/// A config with a known token; tests change what they exercise.
pub fn config() -> Config {
    Config {
        token: Some(TOKEN.into()),
        guilds: 10,
        ..Config::default()
    }
}

pub async fn spawn(config: Config) -> RunningFake {
    FakeDiscord::spawn(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("fake starts")
}

pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// `GET <control>/<path>` as `T`.
pub async fn get<T: DeserializeOwned>(fake: &RunningFake, path: &str) -> T {
    http()
        .get(format!("{}/{path}", fake.control_url()))
        .send()
        .await
        .expect("control API answers")
        .error_for_status()
        .expect("2xx")
        .json()
        .await
        .expect("JSON")
}

/// `POST <control>/<path>` with a JSON body, as `T`.
pub async fn post<T: DeserializeOwned>(fake: &RunningFake, path: &str, body: Value) -> T {
    http()
        .post(format!("{}/{path}", fake.control_url()))
        .json(&body)
        .send()
        .await
        .expect("control API answers")
        .error_for_status()
        .expect("2xx")
        .json()
        .await
        .expect("JSON")
}

/// Dispatches a GUILD_UPDATE to the sessions that route `guild`: a marker that every dispatch
/// queued for them before comes ahead of.
pub async fn marker(fake: &RunningFake, guild: u64) {
    let _: Value = post(
        fake,
        "dispatch",
        serde_json::json!({"t": "GUILD_UPDATE", "guild_id": guild, "d": {"id": guild.to_string()}}),
    )
    .await;
}
