//! A TCP relay that delivers what a client sends late, by a fixed delay (what it receives passes
//! at once): a process behind it has its Identify reach the gateway as late as a lost segment's
//! retransmission would (Linux resends a lone segment after its RTO: at least 200 ms plus the
//! smoothed round trip), while the gate's window runs from the send.

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
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let _ = inbound.set_nodelay(true);
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    let _ = outbound.set_nodelay(true);
                    relay(inbound, outbound, delay).await;
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

async fn relay(inbound: TcpStream, outbound: TcpStream, delay: Duration) {
    let (mut client_in, mut client_out) = inbound.into_split();
    let (mut server_in, mut server_out) = outbound.into_split();
    let back = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_in, &mut client_out).await;
        let _ = client_out.shutdown().await;
    });
    // Read as it comes, deliver each chunk `delay` after it came, in order.
    let (held, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n @ 1..) = client_in.read(&mut buf).await {
            if held
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
            {
                break;
            }
        }
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
