//! [`ByteStream`]: a WebSocket seen as `AsyncRead + AsyncWrite`.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::Subprotocol;

/// The payloads of a WebSocket's data messages as one byte stream, and writes as
/// messages (see the crate docs for text versus binary).
///
/// # Invariants
/// - `unread` is the not yet consumed rest of the last data message; it is drained
///   before the next message is polled, so message boundaries never reach the reader.
/// - After the peer's close (or the end of the socket) reads return EOF for good.
pub struct ByteStream<S> {
    ws: WebSocketStream<S>,
    unread: Bytes,
    read_closed: bool,
    close_reply_pending: bool,
    text_when_utf8: bool,
}

impl<S> ByteStream<S> {
    /// Wraps an open WebSocket of either role (the server side comes from
    /// [`accept`](crate::accept); clients such as tests and the bench make their own).
    pub fn new(ws: WebSocketStream<S>, subprotocol: Subprotocol) -> Self {
        Self {
            ws,
            unread: Bytes::new(),
            read_closed: false,
            close_reply_pending: false,
            text_when_utf8: subprotocol == Subprotocol::Stomp,
        }
    }
}

fn to_io(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            io::ErrorKind::BrokenPipe.into()
        }
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ByteStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.unread.is_empty() {
                let n = this.unread.len().min(buf.remaining());
                buf.put_slice(&this.unread[..n]);
                this.unread.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.read_closed {
                if this.close_reply_pending {
                    // tungstenite queued the reply to the peer's close; send it before
                    // reporting EOF, since the reader may never write again.
                    let _ = ready!(Pin::new(&mut this.ws).poll_flush(cx));
                    this.close_reply_pending = false;
                }
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(b))) => this.unread = b,
                Some(Ok(Message::Text(t))) => this.unread = Bytes::from(t),
                // Pings are answered by tungstenite on the next read or write.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) => {
                    this.read_closed = true;
                    this.close_reply_pending = true;
                }
                None => this.read_closed = true,
                Some(Err(e)) => {
                    this.read_closed = true;
                    return Poll::Ready(Err(to_io(e)));
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ByteStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = &mut *self;
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(to_io)?;
        let payload = Bytes::copy_from_slice(buf);
        let message = if this.text_when_utf8 {
            match Utf8Bytes::try_from(payload) {
                Ok(text) => Message::Text(text),
                // A body that is not UTF-8: the rare second copy.
                Err(_) => Message::Binary(Bytes::copy_from_slice(buf)),
            }
        } else {
            Message::Binary(payload)
        };
        Pin::new(&mut this.ws).start_send(message).map_err(to_io)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(to_io)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            // Closing a WebSocket the peer already closed is not a failure.
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }
}
