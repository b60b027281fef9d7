//! The one accept loop of every listener, plain, TLS or WebSocket: it caps connections,
//! runs the TLS handshake when the listener has TLS, and hands the stream and the
//! [`Peer`] to a protocol's connection function (`transports.rs` says which).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use ferromq_core::Peer;
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;

use crate::tls::Tls;

/// How long to back off after a failed `accept` (EMFILE and friends).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A client's byte stream, with or without TLS.
pub enum Transport {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

/// A connection's place in its listener, released when dropped: its share of
/// `connections_max`, and its entry in the connections the listener waits for when it
/// stops. A connection that goes on without its task (a parked MQTT connection) keeps it.
pub struct Slot {
    /// The share of the connection limit.
    pub permit: OwnedSemaphorePermit,
    /// The entry among the listener's connections.
    pub task: TaskTrackerToken,
}

impl Slot {
    /// Runs `connection`, then gives the slot back.
    pub fn hold<F: Future<Output = ()>>(self, connection: F) -> impl Future<Output = ()> {
        connection.map(move |()| drop(self))
    }
}

/// What a listener is, besides its socket.
pub struct Spec {
    /// For logs: `"MQTT/TLS"`, `"WebSocket"`.
    pub name: &'static str,
    /// Connections at once; more are closed right after accept.
    pub connections_max: usize,
    /// The handshake to run first, if any.
    pub tls: Option<Arc<Tls>>,
    /// Written to a plain connection refused at the limit before it is closed (the
    /// protocol's "too many connections" error), if the protocol has one.
    pub refusal: Option<Bytes>,
}

/// How long a refused client gets to read the refusal.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Accepts on `listener` until `shutdown` fires, then waits for its connections to end.
/// The handler's future holds the connection's [`Slot`] until the connection ends.
pub async fn serve<H, F>(listener: TcpListener, spec: Spec, shutdown: CancellationToken, handler: H)
where
    H: Fn(Transport, Peer, Slot) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(spec.connections_max));
    let tasks = TaskTracker::new();
    let handler = Arc::new(handler);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (tcp, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(listener = spec.name, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(listener = spec.name, peer = %addr, max = spec.connections_max, "connection refused: listener is at its connection limit");
            if let (Some(refusal), None) = (spec.refusal.clone(), &spec.tls) {
                tasks.spawn(async move {
                    let mut tcp = tcp;
                    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, tcp.write_all(&refusal)).await;
                });
            }
            continue;
        };
        let slot = Slot {
            permit,
            task: tasks.token(),
        };
        let Some(tls) = spec.tls.clone() else {
            // The protocol's future is the task, with the slot in it: an `async` block
            // that awaited it would also keep the socket and address it was made from,
            // and a future captured by value and then awaited is stored twice.
            tokio::spawn(handler(Transport::Plain(tcp), addr.into(), slot));
            continue;
        };
        // The handshake runs in the connection's task so a slow client holds up no one;
        // the protocol's future is made afterwards, in that task.
        let (handler, stop, name) = (handler.clone(), shutdown.clone(), spec.name);
        tasks.spawn(async move {
            let done = tokio::select! {
                _ = stop.cancelled() => return,
                r = tls.handshake(tcp, addr) => r,
            };
            match done {
                Ok((stream, peer)) => handler(Transport::Tls(Box::new(stream)), peer, slot).await,
                Err(e) => tracing::debug!(listener = name, peer = %addr, error = %e, "TLS handshake failed"),
            }
        });
    }
    tasks.close();
    tasks.wait().await;
}

impl Transport {
    /// The plain TCP socket, if that is what this is.
    pub fn into_tcp(self) -> Result<TcpStream, Self> {
        match self {
            Transport::Plain(tcp) => Ok(tcp),
            tls => Err(tls),
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    // Forwarded so that a protocol writing large bodies by reference (AMQP) gets one
    // `writev` for frames and bodies; the trait's default would write one buffer per call.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A plain socket keeps its vectored writes through the wrapper: AMQP decides from
    /// `is_write_vectored` whether to splice large bodies or copy them.
    #[tokio::test]
    async fn plain_transport_writes_vectored() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let ((server, _), mut client) =
            tokio::join!(async { listener.accept().await.unwrap() }, async {
                client.await.unwrap()
            });
        let mut t = Transport::Plain(server);
        assert!(t.is_write_vectored());
        let parts = [io::IoSlice::new(b"ab"), io::IoSlice::new(b"cde")];
        let n = t.write_vectored(&parts).await.unwrap();
        assert_eq!(n, 5, "both buffers in one write");
        let mut got = [0u8; 5];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"abcde");
    }
}
