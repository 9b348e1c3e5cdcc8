//! The byte stream under a connection. Plaintext TCP today; TLS joins as another variant
//! with the security work. The connection reads and writes through it, and asks it whether
//! stored records may go from the files straight into it with `sendfile` (plaintext: the
//! kernel copies page-cache pages into the socket) or must pass through user space (TLS
//! encrypts them), in which case fetch answers are read into memory first.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

/// One accepted connection's stream.
pub enum Transport {
    Plain(TcpStream),
}

/// The read side of a split transport (the connection's reader).
pub enum ReadSide<'a> {
    Plain(ReadHalf<'a>),
}

/// The write side of a split transport (the connection's writer, its only writer).
pub enum WriteSide<'a> {
    Plain(WriteHalf<'a>),
}

impl Transport {
    /// Whether record ranges can be `sendfile`d into this transport.
    pub fn supports_sendfile(&self) -> bool {
        match self {
            Transport::Plain(_) => true,
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
        }
    }
}

impl WriteSide<'_> {
    /// The socket `sendfile` writes into, when the transport allows it.
    pub fn sendfile_socket(&self) -> Option<&TcpStream> {
        match self {
            WriteSide::Plain(half) => Some(half.as_ref()),
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
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteSide::Plain(half) => Pin::new(half).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteSide::Plain(half) => Pin::new(half).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteSide::Plain(half) => Pin::new(half).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            WriteSide::Plain(half) => half.is_write_vectored(),
        }
    }
}
