//! The HTTP server: one listen address for REST (`/api/...`), the control API (`/control/...`)
//! and the gateway WebSocket (every other path), plus the background tasks (load, session
//! expiry) and a graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::arrival::{Arrivals, StampedListener};
use crate::config::Config;
use crate::state::Fake;
use crate::{control, gateway, load, rest};

/// All routes of the fake.
pub fn router(fake: Arc<Fake>) -> Router {
    Router::new()
        .nest("/api/v10", rest::routes())
        .nest("/api/v9", rest::routes())
        .nest("/api", rest::routes())
        .nest("/control", control::api::routes())
        .fallback(gateway::upgrade)
        .with_state(fake)
}

/// The fake Discord, ready to be started.
#[derive(Debug)]
pub struct FakeDiscord;

impl FakeDiscord {
    /// Binds `listen` (port 0 picks a free port) and serves until [`RunningFake::shutdown`] or
    /// drop.
    pub async fn spawn(config: Config, listen: SocketAddr) -> std::io::Result<RunningFake> {
        let fake = Fake::new(config);
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        // Reads stamped by the kernel: Identifies are timed at arrival (arrival.rs).
        let listener = StampedListener::new(listener, fake.clock);
        let mut stop = fake.shutdown.subscribe();
        let app = router(Arc::clone(&fake));
        let server = tokio::spawn(async move {
            let graceful = async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
            };
            let app = app.into_make_service_with_connect_info::<Arrivals>();
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(graceful)
                .await
            {
                tracing::error!(error = %e, "server failed");
            }
        });
        let background = vec![tokio::spawn(expire_sessions(Arc::clone(&fake)))];
        // The generator thread ends by itself on shutdown (it watches the same flag).
        load::spawn(Arc::clone(&fake))?;
        tracing::info!(%addr, "fake Discord listening");
        Ok(RunningFake {
            addr,
            fake,
            server: Some(server),
            background,
        })
    }
}

/// Ends sessions whose resume window has passed.
async fn expire_sessions(fake: Arc<Fake>) {
    let every = Duration::from_millis((fake.config.resume_window_ms / 10).clamp(20, 1_000));
    let mut shutdown = fake.shutdown.subscribe();
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => { fake.expire_sessions(); }
            _ = shutdown.changed() => return,
        }
    }
}

/// A running fake. Dropping it stops it too (without waiting).
#[derive(Debug)]
pub struct RunningFake {
    addr: SocketAddr,
    fake: Arc<Fake>,
    server: Option<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

impl RunningFake {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The REST base, what bots put in `DISCORD_API_URL`: `http://<addr>/api`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// The gateway URL (`ws://<addr>`), as `/gateway/bot` answers it.
    pub fn gateway_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The control API base: `http://<addr>/control`.
    pub fn control_url(&self) -> String {
        format!("http://{}/control", self.addr)
    }

    /// The fake itself, for in-process assertions without HTTP.
    pub fn state(&self) -> &Arc<Fake> {
        &self.fake
    }

    /// Closes every connection (1001) and stops serving.
    pub async fn shutdown(mut self) {
        self.fake.shutdown.send_replace(true);
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
        for task in &self.background {
            task.abort();
        }
    }
}

impl Drop for RunningFake {
    fn drop(&mut self) {
        self.fake.shutdown.send_replace(true);
        if let Some(server) = self.server.take() {
            server.abort();
        }
        for task in &self.background {
            task.abort();
        }
    }
}
