//! The byte stream under a connection: plaintext TCP, or TLS over TCP on an SSL listener. The
//! connection reads and writes through it, and asks it whether stored records may go from the
//! files straight into it with `sendfile` (plaintext: the kernel copies page-cache pages into
//! the socket) or must pass through user space (TLS encrypts them), in which case fetch
//! answers are read into memory first.
//!
//! A TLS stream is one rustls session that both directions share, so its two sides are halves
//! of `tokio::io::split`, which lock it for the length of each poll. The reader and writer are
//! futures of one task (see `connection`), so the lock is never contended.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// How long closing a TLS connection waits to send its `close_notify` alert to a client that
/// does not read: closing must not wait on the client.
const CLOSE_NOTIFY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// One accepted connection's stream.
pub enum Transport {
    Plain(TcpStream),
    /// Boxed: the rustls session is a few KiB, and inline it would size every plaintext
    /// connection's task too.
    Tls(Box<TlsStream<TcpStream>>),
}

/// The read side of a split transport (the connection's reader).
pub enum ReadSide<'a> {
    Plain(ReadHalf<'a>),
    Tls(tokio::io::ReadHalf<&'a mut TlsStream<TcpStream>>),
}

/// The write side of a split transport (the connection's writer, its only writer). Bytes
/// written to a TLS side may wait in the session until `flush`.
pub enum WriteSide<'a> {
    Plain(WriteHalf<'a>),
    Tls(tokio::io::WriteHalf<&'a mut TlsStream<TcpStream>>),
}

impl Transport {
    /// Whether record ranges can be `sendfile`d into this transport.
    pub fn supports_sendfile(&self) -> bool {
        match self {
            Transport::Plain(_) => true,
            Transport::Tls(_) => false,
        }
    }

    /// Splits into a reader and a writer that run concurrently in one task (no lock between
    /// them for plaintext).
    pub fn split(&mut self) -> (ReadSide<'_>, WriteSide<'_>) {
        match self {
            Transport::Plain(stream) => {
                let (read, write) = stream.split();
                (ReadSide::Plain(read), WriteSide::Plain(write))
            }
            Transport::Tls(stream) => {
                let (read, write) = tokio::io::split(&mut **stream);
                (ReadSide::Tls(read), WriteSide::Tls(write))
            }
        }
    }

    /// Ends a TLS session with its `close_notify` alert (as Kafka's `SslTransportLayer` does),
    /// so the client can tell a close from a cut connection; bounded by `CLOSE_NOTIFY_TIMEOUT`.
    /// Plaintext needs nothing: dropping the socket closes it.
    pub async fn close(&mut self) {
        if let Transport::Tls(stream) = self {
            let _ = tokio::time::timeout(CLOSE_NOTIFY_TIMEOUT, stream.shutdown()).await;
        }
    }
}

impl WriteSide<'_> {
    /// The socket `sendfile` writes into, when the transport allows it.
    pub fn sendfile_socket(&self) -> Option<&TcpStream> {
        match self {
            WriteSide::Plain(half) => Some(half.as_ref()),
            WriteSide::Tls(_) => None,
        }
    }
}

impl AsyncRead for ReadSide<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadSide::Plain(half) => Pin::new(half).poll_read(cx, buf),
            ReadSide::Tls(half) => Pin::new(half).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteSide<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteSide::Plain(half) => Pin::new(half).poll_write(cx, buf),
            WriteSide::Tls(half) => Pin::new(half).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteSide::Plain(half) => Pin::new(half).poll_flush(cx),
            WriteSide::Tls(half) => Pin::new(half).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteSide::Plain(half) => Pin::new(half).poll_shutdown(cx),
            WriteSide::Tls(half) => Pin::new(half).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteSide::Plain(half) => Pin::new(half).poll_write_vectored(cx, bufs),
            WriteSide::Tls(half) => Pin::new(half).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            WriteSide::Plain(half) => half.is_write_vectored(),
            WriteSide::Tls(half) => half.is_write_vectored(),
        }
    }
}
