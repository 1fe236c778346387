//! A TCP relay that delivers what a client sends late, by a fixed delay (what it receives passes
//! at once): a process behind it has its Identify reach the gateway as late as a lost segment's
//! retransmission would (Linux resends a lone segment after its RTO: at least 200 ms plus the
//! smoothed round trip), while the gate's window runs from the send.
//!
//! [`Lag::start_cutting_identify`] also ends the client's side of the first connection that
//! carries an Identify, without a WebSocket Close, right after reading it, while the Identify still
//! reaches the server late: a connection lost on the client's side (an error of its own, a
//! middlebox's reset) while the gateway reads on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub struct Lag {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Lag {
    /// Relays `127.0.0.1:<port>` to `127.0.0.1:<target>`, each client byte held `delay`.
    pub async fn start(target: u16, delay: Duration) -> Self {
        Self::start_with(target, delay, None).await
    }

    /// [`Lag::start`], and the client's side of the first connection that sends an Identify
    /// ends right after it: the client sees its connection lost, the server gets the Identify
    /// `delay` later all the same.
    pub async fn start_cutting_identify(target: u16, delay: Duration) -> Self {
        Self::start_with(target, delay, Some(Arc::new(AtomicBool::new(false)))).await
    }

    async fn start_with(target: u16, delay: Duration, cut: Option<Arc<AtomicBool>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let _ = inbound.set_nodelay(true);
                let cut = cut.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    let _ = outbound.set_nodelay(true);
                    relay(inbound, outbound, delay, cut).await;
                });
            }
        });
        Self { port, task }
    }

    /// The fake's REST base (`http://<addr>/api`) through this relay. The fake builds the
    /// gateway URL it answers from the request's Host, so the gateway goes through it too.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}/api", self.port)
    }
}

/// A client frame this large after the HTTP upgrade is the Identify (token, properties, shard);
/// heartbeats are a few dozen bytes. Client frames are masked (RFC 6455 §5.3): no reading them.
const IDENTIFY_AT_LEAST: usize = 100;

async fn relay(
    inbound: TcpStream,
    outbound: TcpStream,
    delay: Duration,
    cut: Option<Arc<AtomicBool>>,
) {
    let (mut client_in, mut client_out) = inbound.into_split();
    let (mut server_in, mut server_out) = outbound.into_split();
    let (cut_client, mut client_cut) = tokio::sync::oneshot::channel::<()>();
    let back = tokio::spawn(async move {
        tokio::select! {
            _ = tokio::io::copy(&mut server_in, &mut client_out) => {}
            _ = &mut client_cut => {}
        }
        let _ = client_out.shutdown().await;
    });
    // Read as it comes, deliver each chunk `delay` after it came, in order.
    let (held, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut chunks = 0u32;
        let mut websocket = false;
        let mut cut_client = Some(cut_client);
        while let Ok(n @ 1..) = client_in.read(&mut buf).await {
            chunks += 1;
            if chunks == 1 {
                // A gateway connection, not one of the REST calls that share this relay.
                websocket = String::from_utf8_lossy(&buf[..n])
                    .to_ascii_lowercase()
                    .contains("upgrade: websocket");
            }
            if held
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
            {
                break;
            }
            let identify = websocket && chunks > 1 && n >= IDENTIFY_AT_LEAST;
            if identify
                && let Some(cut) = &cut
                && !cut.swap(true, Ordering::SeqCst)
            {
                // The client's side ends (its read half dropped, its write half shut): what
                // it sent is still delivered, late.
                if let Some(tx) = cut_client.take() {
                    let _ = tx.send(());
                }
                break;
            }
        }
        // Keeps `held` until here: the delivery loop ends once everything read is delivered.
        drop(held);
    });
    while let Some((at, bytes)) = due.recv().await {
        tokio::time::sleep_until(at).await;
        if server_out.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let _ = server_out.shutdown().await;
    reader.abort();
    let _ = back.await;
}

impl Drop for Lag {
    fn drop(&mut self) {
        self.task.abort();
    }
}
