//! The fake Discord: a gateway and REST API that behave as Discord documents them, enforce
//! Discord's rules, and report every violation through a control API. Tests, benchmarks and the
//! no-token demo run against it; users can run it to try the operator or load-test a setup.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use fake_discord::{Config, FakeDiscord};
//! let fake = FakeDiscord::spawn(Config::default(), "127.0.0.1:0".parse().unwrap()).await?;
//! println!("DISCORD_API_URL={}", fake.api_url());
//! let violations = fake.state().violations();
//! assert!(violations.is_empty());
//! fake.shutdown().await;
//! # Ok(()) }
//! ```

/// Kernel receive timestamps: when a connection's bytes arrived.
pub mod arrival;
pub mod clock;
/// The commands clients send once authenticated, read and checked.
pub mod commands;
/// Every knob, as CLI flags and a plain struct.
pub mod config;
/// The control API: its routes and its public, `Deserialize`-able records.
pub mod control;
/// The WebSocket gateway: upgrade, connections, zlib-stream.
#[cfg(feature = "gateway")]
pub mod gateway;
/// Without the `gateway` feature: no WebSocket, every path outside REST and control is a 404.
#[cfg(not(feature = "gateway"))]
mod gateway {
    pub use crate::rest::not_found as upgrade;
}
mod load;
/// op 8's answer: the members a request selects, in chunks.
pub mod members;
/// Message nonces (`enforce_nonce`).
mod nonces;
/// Discord payloads written straight to bytes.
pub mod payloads;
mod public_url;
mod replies;
/// The REST endpoints.
pub mod rest;
/// Discord's rules as pure functions of time.
pub mod rules;
mod server;
/// A session's sequence numbers and replay buffer.
pub mod session;
/// Snowflakes for messages created at run time.
pub mod snowflake;
/// Shared state: Identify/Resume decisions, routing, logs, counters.
pub mod state;
/// The guilds, their ids and their routing.
pub mod world;

pub use config::Config;
pub use public_url::public_base;
pub use server::{FakeDiscord, RunningFake, router};
pub use state::Fake;
