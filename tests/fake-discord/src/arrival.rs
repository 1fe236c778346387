//! When a client's bytes **arrived**: every accepted TCP connection asks the kernel for receive
//! timestamps (`SO_TIMESTAMPNS`), and each read records the stamp of the data it returned, so an
//! Identify is timed at arrival, as Discord times it (gateway.mdx "Identifying"), not when a busy
//! connection task got round to it. Under load the task may be hundreds of milliseconds behind
//! the socket; timing at processing then shrinks the gap between two Identifies of a bucket and
//! reports violations the client never made (or hides ones it did).
//!
//! [`StampedListener`] wraps axum's TCP listener; its [`StampedStream`] reads with `recvmsg` and
//! publishes the latest stamp in the connection's [`Arrivals`], which reach the gateway handler
//! as axum connect info. The stamp is the kernel's (when the packet reached the socket, taken in
//! the sender's context on loopback and veth), so it holds even while this process waits for a
//! CPU. A read that returns several frames carries the stamp of the latest of them: an upper
//! bound on each one's arrival, and never later than the moment it is handled.

use std::io::{self, IoSliceMut};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use nix::sys::time::TimeSpec;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::clock::Clock;
use crate::rules::Micros;

/// The arrival time of the latest bytes read from one connection, on the fake's clock.
#[derive(Debug, Clone)]
pub struct Arrivals {
    clock: Clock,
    /// Unix µs on the fake's clock; 0 before the first read.
    latest: Arc<AtomicU64>,
}

impl Arrivals {
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            latest: Arc::new(AtomicU64::new(0)),
        }
    }

    /// When the bytes handled `now` arrived: the latest read's stamp, never later than `now`
    /// (`now` itself when nothing was stamped: a stream without kernel timestamps).
    pub fn arrival(&self, now: Micros) -> Micros {
        match self.latest.load(Ordering::Acquire) {
            0 => now,
            at => at.min(now),
        }
    }

    /// Records a read: `kernel` is its `SCM_TIMESTAMPNS` (Unix time), if the kernel gave one.
    fn record(&self, kernel: Option<Duration>) {
        let now = self.clock.now_us();
        let at = kernel.map_or(now, |kernel| {
            // The fake's clock is monotonic (clock.rs): carry the kernel's wall-clock stamp over
            // as "this long ago".
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            now.saturating_sub(wall.saturating_sub(kernel).as_micros() as Micros)
        });
        self.latest.store(at.max(1), Ordering::Release);
    }
}

/// axum's TCP listener, handing out [`StampedStream`]s (with `TCP_NODELAY`: small frames such as
/// heartbeat ACKs must not wait for Nagle).
#[derive(Debug)]
pub struct StampedListener {
    inner: TcpListener,
    clock: Clock,
}

impl StampedListener {
    pub fn new(inner: TcpListener, clock: Clock) -> Self {
        Self { inner, clock }
    }
}

impl Listener for StampedListener {
    type Io = StampedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, addr) = Listener::accept(&mut self.inner).await;
        let _ = tcp.set_nodelay(true);
        (StampedStream::new(tcp, self.clock), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Each connection's [`Arrivals`], as axum connect info (`ConnectInfo<Arrivals>`).
impl Connected<IncomingStream<'_, StampedListener>> for Arrivals {
    fn connect_info(stream: IncomingStream<'_, StampedListener>) -> Self {
        stream.io().arrivals.clone()
    }
}

/// A TCP stream whose reads record when their bytes arrived.
#[derive(Debug)]
pub struct StampedStream {
    tcp: TcpStream,
    arrivals: Arrivals,
    /// Room for one `SCM_TIMESTAMPNS` control message.
    control: Vec<u8>,
    /// Whether the kernel stamps this socket's reads (else each read is stamped when made).
    stamped: bool,
}

impl StampedStream {
    fn new(tcp: TcpStream, clock: Clock) -> Self {
        let stamped = match setsockopt(&tcp, sockopt::ReceiveTimestampns, &true) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "no kernel receive timestamps: arrivals are timed at read");
                false
            }
        };
        Self {
            tcp,
            arrivals: Arrivals::new(clock),
            control: nix::cmsg_space!(TimeSpec),
            stamped,
        }
    }

    /// One `recvmsg`: the bytes read and the kernel's stamp of the latest of them.
    fn receive(&mut self, into: &mut [u8]) -> io::Result<(usize, Option<Duration>)> {
        let fd = self.tcp.as_raw_fd();
        let control = self.stamped.then_some(self.control.as_mut_slice());
        self.tcp.try_io(Interest::READABLE, || {
            let mut iov = [IoSliceMut::new(into)];
            let message = recvmsg::<()>(fd, &mut iov, control, MsgFlags::empty())?;
            let stamp = message.cmsgs().ok().and_then(|mut messages| {
                messages.find_map(|m| match m {
                    ControlMessageOwned::ScmTimestampns(ts) => Some(Duration::new(
                        u64::try_from(ts.tv_sec()).unwrap_or(0),
                        u32::try_from(ts.tv_nsec()).unwrap_or(0),
                    )),
                    _ => None,
                })
            });
            Ok((message.bytes, stamp))
        })
    }
}

impl AsyncRead for StampedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.tcp.poll_read_ready(cx))?;
            match this.receive(buf.initialize_unfilled()) {
                Ok((read, stamp)) => {
                    if read > 0 {
                        this.arrivals.record(stamp);
                    }
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale; poll_read_ready registers for the next wake-up.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for StampedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}
