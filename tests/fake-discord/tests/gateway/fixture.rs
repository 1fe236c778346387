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

/// A fake on a runtime of its own (one thread) that a test can stall, as a loaded host stalls
/// the fake's tasks: clients' bytes keep arriving in the kernel, and nothing reads them.
pub struct Stallable {
    pub fake: Option<RunningFake>,
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Holds the fake's thread until dropped.
pub struct Stall {
    _release: std::sync::mpsc::Sender<()>,
}

impl Stallable {
    pub fn spawn(config: Config) -> Self {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let fake = runtime.block_on(spawn(config));
            let _ = ready_tx.send((fake, runtime.handle().clone()));
            let _ = runtime.block_on(stopped);
        });
        let (fake, handle) = ready_rx.recv().expect("the fake's thread starts it");
        Self {
            fake: Some(fake),
            handle,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn fake(&self) -> &RunningFake {
        self.fake.as_ref().expect("running")
    }

    /// Blocks the fake's only thread (no task of it runs) until the returned guard is dropped;
    /// returns once the stall has begun.
    pub async fn stall(&self) -> Stall {
        let (began_tx, began) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        self.handle.spawn(async move {
            let _ = began_tx.send(());
            // Returns when the guard (the only sender) is dropped.
            let _ = released.recv();
        });
        began.await.expect("the stall begins");
        Stall { _release: release }
    }
}

impl Drop for Stallable {
    fn drop(&mut self) {
        drop(self.fake.take());
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
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
