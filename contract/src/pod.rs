//! A pod's end as Kubernetes announces it: SIGTERM (or Ctrl-C in a run by hand). Every binary of
//! the project that runs in a pod (the operator, the worker, the handlers) stops on this one
//! future, then has the pod's grace period to save what it holds.

/// Resolves on SIGTERM or Ctrl-C, whichever comes first. Where SIGTERM cannot be watched (not
/// Unix, or the handler could not be installed), Ctrl-C alone.
pub async fn terminated() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::time::Duration;

    #[tokio::test]
    async fn resolves_on_sigterm() {
        let mut terminated = Box::pin(super::terminated());
        // The first poll installs the SIGTERM handler (from then on the signal no longer kills
        // this test process); only then is the signal sent.
        let pending = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(terminated.as_mut().poll(cx).is_pending())
        })
        .await;
        assert!(pending);
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(10), terminated)
            .await
            .expect("terminated() resolves once SIGTERM arrived");
    }
}
