//! Reads a Fetch v12 response as it streams in, through a small buffer, summarising record
//! batches from their headers on the way past.
//!
//! Why not read the frame and decode it: at 8 MiB per fetch (eight partitions at the Java
//! consumer's 1 MiB each) the receive copy lands in a buffer far larger than the CPU caches,
//! and on a 2-core machine that copy, not either broker, set the consume rate. Streaming through
//! a cache-sized buffer keeps the one copy the kernel must do cheap, so the broker under test is
//! what the number measures. The same client reads both brokers.

use anyhow::{bail, ensure, Context, Result};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use crate::batch::BATCH_HEADER_BYTES;
use crate::wire::FRAME_BYTES_MAX;

/// Read buffer: small enough to stay in L2, large enough for few syscalls.
pub const STREAM_BUFFER_BYTES: usize = 256 * 1024;

const LAST_OFFSET_DELTA_POSITION: usize = 23;
const RECORD_COUNT_POSITION: usize = 57;

/// One partition of a fetch response.
#[derive(Debug, Default)]
pub struct PartitionSummary {
    pub partition_index: i32,
    pub error_code: i16,
    pub record_count: u64,
    /// Bytes of complete batches.
    pub batch_bytes: u64,
    /// Offset after the last complete batch, if any.
    pub next_offset: Option<i64>,
}

/// A response: top-level error and its partitions (all topics).
#[derive(Debug, Default)]
pub struct FetchSummary {
    pub error_code: i16,
    pub partitions: Vec<PartitionSummary>,
}

/// Reads bytes of one frame, never past its end.
struct Frame<'a, R> {
    reader: &'a mut R,
    left: usize,
}

impl<R: AsyncBufRead + Unpin> Frame<'_, R> {
    async fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        ensure!(self.left >= N, "response ends inside a field");
        let mut b = [0u8; N];
        self.reader.read_exact(&mut b).await?;
        self.left -= N;
        Ok(b)
    }
    async fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.bytes().await?))
    }
    async fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.bytes().await?))
    }
    async fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.bytes().await?))
    }
    async fn uvarint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let [b] = self.bytes::<1>().await?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        bail!("uvarint too long")
    }
    /// Consumes `n` bytes straight out of the read buffer.
    async fn skip(&mut self, mut n: usize) -> Result<()> {
        ensure!(self.left >= n, "response ends inside a field");
        self.left -= n;
        while n > 0 {
            let available = self.reader.fill_buf().await?.len();
            ensure!(available > 0, "connection closed inside a response");
            let take = available.min(n);
            self.reader.consume(take);
            n -= take;
        }
        Ok(())
    }
    /// Tagged fields: a count, then (tag, size, bytes) each.
    async fn skip_tags(&mut self) -> Result<()> {
        for _ in 0..self.uvarint().await? {
            self.uvarint().await?;
            let size = self.uvarint().await?;
            self.skip(usize::try_from(size)?).await?;
        }
        Ok(())
    }
    /// A compact array's length (None for null).
    async fn compact_len(&mut self) -> Result<Option<usize>> {
        Ok(match self.uvarint().await? {
            0 => None,
            n => Some(usize::try_from(n - 1)?),
        })
    }
}

/// Reads one Fetch v12 response frame answering `correlation_id`.
pub async fn read_fetch_v12<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    correlation_id: i32,
) -> Result<FetchSummary> {
    let size = reader.read_i32().await.context("reading response size")?;
    let size = usize::try_from(size).context("negative response size")?;
    ensure!(size <= FRAME_BYTES_MAX, "response frame of {size} bytes");
    let mut f = Frame { reader, left: size };
    // Response header v1.
    let got = f.i32().await?;
    ensure!(
        got == correlation_id,
        "correlation id {got} answers {correlation_id}"
    );
    f.skip_tags().await?;
    let _throttle_ms = f.i32().await?;
    let mut out = FetchSummary {
        error_code: f.i16().await?,
        partitions: Vec::new(),
    };
    let _session_id = f.i32().await?;
    for _ in 0..f.compact_len().await?.unwrap_or(0) {
        let name_len = f.compact_len().await?.unwrap_or(0);
        f.skip(name_len).await?;
        for _ in 0..f.compact_len().await?.unwrap_or(0) {
            let mut p = PartitionSummary {
                partition_index: f.i32().await?,
                error_code: f.i16().await?,
                ..PartitionSummary::default()
            };
            let _high_watermark = f.i64().await?;
            let _last_stable_offset = f.i64().await?;
            let _log_start_offset = f.i64().await?;
            for _ in 0..f.compact_len().await?.unwrap_or(0) {
                f.skip(16).await?; // producer id, first offset
                f.skip_tags().await?;
            }
            let _preferred_read_replica = f.i32().await?;
            let records = f.compact_len().await?.unwrap_or(0);
            summarize_streamed(&mut f, records, &mut p).await?;
            f.skip_tags().await?;
            out.partitions.push(p);
        }
        f.skip_tags().await?;
    }
    f.skip_tags().await?;
    ensure!(
        f.left == 0,
        "{} bytes left over in a fetch response",
        f.left
    );
    Ok(out)
}

/// Walks `len` bytes of stored batches: whole ones are counted from their headers, a cut-short
/// last one (as brokers send) is skipped.
async fn summarize_streamed<R: AsyncBufRead + Unpin>(
    f: &mut Frame<'_, R>,
    mut len: usize,
    p: &mut PartitionSummary,
) -> Result<()> {
    while len >= BATCH_HEADER_BYTES {
        let header: [u8; BATCH_HEADER_BYTES] = f.bytes().await?;
        len -= BATCH_HEADER_BYTES;
        let field = |at: usize, n: usize| &header[at..at + n];
        let base_offset = i64::from_be_bytes(field(0, 8).try_into()?);
        let batch_length = i32::from_be_bytes(field(8, 4).try_into()?);
        let rest = usize::try_from(batch_length)
            .ok()
            .and_then(|l| (l + 12).checked_sub(BATCH_HEADER_BYTES));
        let Some(rest) = rest else {
            bail!("batch with impossible length {batch_length}");
        };
        if rest > len {
            // The cut-short last batch.
            f.skip(len).await?;
            return Ok(());
        }
        f.skip(rest).await?;
        len -= rest;
        let last_delta = i32::from_be_bytes(field(LAST_OFFSET_DELTA_POSITION, 4).try_into()?);
        let count = i32::from_be_bytes(field(RECORD_COUNT_POSITION, 4).try_into()?);
        p.record_count += u64::try_from(count).unwrap_or(0);
        p.batch_bytes += (BATCH_HEADER_BYTES + rest) as u64;
        p.next_offset = Some(base_offset + i64::from(last_delta) + 1);
    }
    f.skip(len).await
}
