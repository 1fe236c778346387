//! The shutdown a pod gets: SIGTERM (or Ctrl-C by hand) turns a watch channel true, which is
//! what [`super::builder::Builder::run`] and [`super::run::run`] stop on.

use tokio::sync::watch;
use tracing::info;

/// A receiver that turns true on SIGTERM or Ctrl-C. Call it inside the runtime.
pub fn shutdown_on_signal() -> watch::Receiver<bool> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down: saving sessions for the next owner");
        let _ = shutdown_tx.send(true);
    });
    shutdown_rx
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
