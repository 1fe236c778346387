//! The shard's WebSocket: connecting (with the gateway query, a small read buffer and the
//! Hello deadline as timeout), sending a payload, and closing with the handshake. An open
//! connection ([`Connection`]) has its socket registered on the shard's slot for as long as it
//! lives, so that losing the lease shuts it down whatever the shard's task is doing
//! (`worker/fence.rs`).

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tracing::{debug, warn};

use super::runner::{Runner, Ws};
use crate::gateway::commands::gateway_query;
use crate::gateway::compression::{Decoder, MAX_MESSAGE_BYTES};
use crate::gateway::session::{Input, Target};
use crate::handler::Handler;
use crate::worker::board::Slot;

/// An open gateway connection whose socket the slot holds a handle on; the handle goes with it.
pub(super) struct Connection<'a> {
    ws: Ws,
    _registered: Registered<'a>,
}

/// Lets the slot's socket handle go when the connection is dropped (the socket closes only once
/// every handle on it is gone).
struct Registered<'a>(&'a Slot);

/// How long a close waits for the gateway's answer to our close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);
/// How long closing a silent connection may take: enough to hand our close frame to the
/// socket, not to wait for an answer.
const ABANDON_SEND: Duration = Duration::from_millis(100);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.forget_socket();
    }
}

impl<'a> Connection<'a> {
    fn new(ws: Ws, slot: &'a Slot) -> Self {
        match socket_handle(&ws) {
            Some(socket) => slot.hold_socket(socket),
            None => debug!(
                shard_id = slot.shard,
                "no socket handle: only the shard's task can close this connection"
            ),
        }
        Self {
            ws,
            _registered: Registered(slot),
        }
    }
}

impl Deref for Connection<'_> {
    type Target = Ws;

    fn deref(&self) -> &Ws {
        &self.ws
    }
}

impl DerefMut for Connection<'_> {
    fn deref_mut(&mut self) -> &mut Ws {
        &mut self.ws
    }
}

/// Another handle on the connection's TCP socket (a duplicated descriptor: shutting it down ends
/// the connection for both).
#[cfg(unix)]
fn socket_handle(ws: &Ws) -> Option<std::net::TcpStream> {
    use std::os::fd::AsFd;
    let tcp = match ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp,
        MaybeTlsStream::Rustls(tls) => tls.get_ref().0,
        _ => return None,
    };
    let fd = tcp.as_fd().try_clone_to_owned().ok()?;
    Some(std::net::TcpStream::from(fd))
}

#[cfg(not(unix))]
fn socket_handle(_: &Ws) -> Option<std::net::TcpStream> {
    None
}

/// The close handshake (RFC 6455 §5.5.1) on `ws`, for at most `linger`: send our close frame,
/// then read until the gateway's answer. Exiting right after sending could reset the connection
/// with frames unread, and the gateway might never see our code (1000 would then not end the
/// session). Boxed: rare, and large next to an idle shard's state.
fn close_handshake(
    mut ws: Connection<'_>,
    code: u16,
    linger: Duration,
) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: "".into(),
    };
    Box::pin(async move {
        let _ = tokio::time::timeout(linger, async move {
            if ws.close(Some(frame)).await.is_ok() {
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_close() {
                        break;
                    }
                }
            }
        })
        .await;
    })
}

impl<H: Handler> Runner<'_, H> {
    pub(super) async fn connect(&mut self, target: Target) -> Input {
        let base = match &target {
            Target::Gateway => self.shared.config.gateway_url.as_str(),
            Target::Resume(url) => url.as_str(),
        };
        let compression = self.shared.config.compression;
        let Some(url) = gateway_query(base, compression) else {
            warn!(shard_id = self.shard, url = base, "invalid gateway URL");
            return Input::ConnectFailed;
        };
        self.connections += 1;
        if self.connections > 1 {
            self.board()
                .metrics()
                .reconnects
                .get_or_create(&self.labels)
                .inc();
        }
        // The message and frame limits are tungstenite's defaults today (64 and 16 MiB); set
        // here so that a message read uncompressed has the inflated messages' cap, whatever a
        // later tungstenite defaults to.
        let config = WebSocketConfig::default()
            .read_buffer_size(self.shared.config.read_buffer)
            .write_buffer_size(0)
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let connect =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true);
        match tokio::time::timeout(self.shared.config.session.hello_timeout, connect).await {
            Ok(Ok((ws, _))) => match Decoder::new(compression) {
                Ok(decoder) => {
                    self.ws = Some(Connection::new(ws, self.slot));
                    self.decoder = Some(decoder);
                    Input::Connected
                }
                Err(e) => {
                    warn!(shard_id = self.shard, error = %e, "cannot set up the decoder");
                    Input::ConnectFailed
                }
            },
            Ok(Err(e)) => {
                debug!(shard_id = self.shard, error = %e, "gateway connect failed");
                Input::ConnectFailed
            }
            Err(_) => Input::ConnectFailed,
        }
    }

    pub(super) async fn close(&mut self, code: u16) {
        self.close_within(code, CLOSE_HANDSHAKE).await;
    }

    /// Closes a connection whose peer has stopped answering (a silent one): our close frame
    /// goes out if the socket takes it at once, and the connection is dropped without waiting
    /// for an answer that will not come. The code is resumable, so whether the gateway sees it
    /// does not matter (discord-api-docs, "Heartbeat Interval": terminate the zombie, then
    /// resume).
    pub(super) async fn abandon(&mut self, code: u16) {
        self.close_within(code, ABANDON_SEND).await;
    }

    async fn close_within(&mut self, code: u16, linger: Duration) {
        // An Identify still unanswered on it keeps its gate's first TTL: our kernel may go on
        // resending it after the close.
        self.identify_in_flight = None;
        // The connection goes straight into the boxed handshake, never into this future: held
        // here across the await, it made every caller's future 1.4 KB larger for a rare close,
        // the shard's select loop included, so every shard's task (`-Zprint-type-sizes`:
        // `on_frame` 1,880 → 1,168 bytes, the task 5,504 → 4,864).
        let closing = self.ws.take().map(|ws| close_handshake(ws, code, linger));
        if let Some(closing) = closing {
            closing.await;
        }
    }

    pub(super) async fn send(&mut self, payload: String) -> bool {
        let Some(ws) = self.ws.as_mut() else {
            return false;
        };
        match ws.send(Message::text(payload)).await {
            Ok(()) => true,
            Err(e) => {
                debug!(shard_id = self.shard, error = %e, "gateway send failed");
                false
            }
        }
    }
}
