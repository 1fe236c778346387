//! A TCP relay in front of a server that a test can cut: one process loses its Redis while the
//! others keep theirs (a network partition of one pod).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Cutter {
    pub port: u16,
    cut: Arc<AtomicBool>,
    /// Tells every relayed connection to end (sent on `cut`).
    closing: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Cutter {
    /// Relays `127.0.0.1:<port>` to `127.0.0.1:<target>` until cut.
    pub async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let (closing, _) = watch::channel(0u64);
        let (c, tx) = (Arc::clone(&cut), closing.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut closed = tx.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = closed.changed() => {}
                    }
                });
            }
        });
        Self {
            port,
            cut,
            closing,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Ends every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.closing.send_modify(|n| *n += 1);
    }

    /// Relays again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}
