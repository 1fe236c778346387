//! What the control plane asks of a connection (`state::Command`): close with a code, give up a
//! session another connection resumed, or play an injected fault (op 7, op 9, zombie, op 1,
//! close, TCP drop, delay).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, sleep_until};

use super::{Connection, End};
use crate::control::{Fault, SessionEnd};
use crate::payloads;
use crate::rules::CloseCode;
use crate::state::Command;

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    pub(super) async fn command(&mut self, command: Command) -> Option<End> {
        match command {
            Command::Close { code, reason } => Some(self.close(code, &reason).await),
            Command::Superseded => {
                // The session lives on in the connection that resumed it.
                self.session = None;
                Some(
                    self.close(CloseCode::UnknownError.code(), "session resumed elsewhere")
                        .await,
                )
            }
            Command::Fault(fault) => self.fault(fault).await,
        }
    }

    async fn fault(&mut self, fault: Fault) -> Option<End> {
        tracing::info!(connection = self.id, ?fault, "injecting fault");
        match fault {
            Fault::Reconnect => {
                if self.send_raw(payloads::RECONNECT).await.is_err() {
                    return Some(End::ByClient(None));
                }
                let grace = Duration::from_millis(self.fake.config.reconnect_grace_ms);
                self.reconnect_deadline = Some(Box::pin(sleep_until(Instant::now() + grace)));
            }
            Fault::InvalidSession { resumable } => {
                if !resumable && let Some(session) = self.session.take() {
                    self.fake.end_session(&session, SessionEnd::InvalidSession);
                }
                if self
                    .send_raw(payloads::invalid_session(resumable))
                    .await
                    .is_err()
                {
                    return Some(End::ByClient(None));
                }
            }
            Fault::Zombie { enabled } => self.zombie = enabled,
            Fault::HeartbeatRequest => {
                if self.send_raw(payloads::HEARTBEAT_REQUEST).await.is_err() {
                    return Some(End::ByClient(None));
                }
            }
            Fault::Close { code, reason } => {
                let reason = reason.unwrap_or_else(|| "closed by fault injection".into());
                return Some(self.close(code, &reason).await);
            }
            Fault::Drop => return Some(End::Dropped),
            Fault::Delay { ms } => self.delay = Duration::from_millis(ms),
        }
        None
    }
}
