//! Writing a response frame to a client: in-memory bytes with `write`, stored record ranges with
//! `sendfile(2)`, the way Kafka's `FileRecords.writeTo` uses `FileChannel.transferTo`.
//!
//! `sendfile` moves page-cache pages into the socket without copying them through user space,
//! so a consumer's bytes cost the broker one kernel copy at most (none on loopback's zero-copy
//! path) instead of a read into a buffer, a copy into the encoded frame and a write.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use runnel_protocol::splice::{External, Part};
use runnel_storage::FileSlice;
use tokio::io::{AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use crate::transport::WriteSide;

/// Largest count one `sendfile` call takes (Linux transfers at most 0x7ffff000 bytes per call).
const SENDFILE_CHUNK_MAX: usize = 0x7fff_f000;

/// A stored range as the external part of a spliced frame.
pub struct FilePart(pub FileSlice);

impl External for FilePart {
    fn len(&self) -> usize {
        self.0.len
    }
}

/// Writes `parts` in order. `stalled` bounds each wait for the socket to take more bytes: a
/// client that stops reading is disconnected instead of pinning files and buffers forever.
///
/// File parts need a transport that takes `sendfile` (the connection only makes them for
/// one); the read side may meanwhile be in use by the connection's reader. The caller must be
/// the transport's only writer, or frames would interleave.
pub async fn write_parts(
    stream: &mut WriteSide<'_>,
    parts: Vec<Part<FilePart>>,
    stalled: Duration,
) -> io::Result<()> {
    for part in parts {
        match part {
            Part::Bytes(bytes) => write_bytes(stream, &bytes, stalled).await?,
            Part::External(FilePart(slice)) => {
                let Some(socket) = stream.sendfile_socket() else {
                    panic!("file parts are made only for transports that take sendfile");
                };
                send_file(socket, &slice, stalled).await?
            }
        }
    }
    Ok(())
}

/// Writes in-memory bytes (a whole response frame, or a piece of a spliced one), with the same
/// `stalled` bound as `write_parts`, and flushes them: a TLS session may hold the last records
/// of a write until it is flushed (a no-op for plaintext).
pub async fn write_bytes<W>(stream: &mut W, bytes: &[u8], stalled: Duration) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match tokio::time::timeout(stalled, write).await {
        Ok(result) => result,
        Err(_) => Err(stalled_error()),
    }
}

fn stalled_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "client stopped reading its response (connections.max.idle.ms)",
    )
}

/// `sendfile`s `slice` into the socket, waiting for writability between partial sends.
async fn send_file(stream: &TcpStream, slice: &FileSlice, stalled: Duration) -> io::Result<()> {
    let file_fd = slice.file.as_raw_fd();
    let socket_fd = stream.as_raw_fd();
    let mut offset = i64::try_from(slice.position)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file position past i64"))?;
    let mut left = slice.len;
    while left > 0 {
        let sent = stream.try_io(Interest::WRITABLE, || {
            // SAFETY: both descriptors are open for the whole call (the slice pins the file, the
            // stream is borrowed) and `offset` is a valid, exclusively borrowed off_t.
            let n = unsafe {
                libc::sendfile(
                    socket_fd,
                    file_fd,
                    &mut offset,
                    left.min(SENDFILE_CHUNK_MAX),
                )
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match sent {
            Ok(0) => {
                // The file is shorter than the range the log vouched for: the frame cannot be
                // completed, so the connection must end (the client retries elsewhere).
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "segment file ended inside a fetch response",
                ));
            }
            Ok(n) => left -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match tokio::time::timeout(stalled, stream.writable()).await {
                    Ok(ready) => ready?,
                    Err(_) => return Err(stalled_error()),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
