//! The shutdown a pod gets: SIGTERM (or Ctrl-C by hand) turns a watch channel true, which is
//! what [`super::builder::Builder::run`] and [`super::run::run`] stop on.

use tokio::sync::watch;
use tracing::info;

/// A receiver that turns true on SIGTERM or Ctrl-C. Call it inside the runtime.
pub fn shutdown_on_signal() -> watch::Receiver<bool> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        shardset_contract::pod::terminated().await;
        info!("shutting down: saving sessions for the next owner");
        let _ = shutdown_tx.send(true);
    });
    shutdown_rx
}
