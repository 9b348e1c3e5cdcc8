//! The codecs of record batches (gzip, snappy, lz4, zstd), behind one bounded entry point each
//! way. This is the only place the broker decompresses anything.
//!
//! [`decompress`] never allocates more than the caller's `output_bytes_max` (plus one read
//! chunk): output grows as the codec produces it, and a stream that would produce more is refused
//! as `CORRUPT_MESSAGE` — a decompression bomb costs its cap, never an out-of-memory abort. The
//! caps for a produced batch are [`DecompressLimits::for_max_message_bytes`], named and documented
//! there. [`compress`] encodes as Kafka's Java codecs do (`GzipCompression`, `SnappyCompression`
//! (xerial framing), `Lz4Compression` (LZ4 frame, 64 KiB independent blocks),
//! `ZstdCompression`), at Kafka's levels.
//!
//! One file per codec; each has `decompress_into(input, sink)` and `compress(input, level)`.

mod gzip;
mod lz4;
mod snappy;
mod zstd;

use std::io::{self, Read};

use crate::batch::{BatchError, Compression};

/// The smallest v2 record: length, attributes, timestamp delta, offset delta, key length, value
/// length and header count, one byte each. A body of `n` bytes holds at most `n / 7` records,
/// which is what bounds the record count of a batch before anything is sized from it.
pub const RECORD_BYTES_MIN: usize = 7;

/// Floor of the decompressed-bytes cap: a batch within `max.message.bytes` that decompresses to
/// up to this is always accepted, however small `max.message.bytes` is.
pub const DECOMPRESSED_BYTES_FLOOR: usize = 16 * 1024 * 1024;
/// How many times `max.message.bytes` a batch may decompress to (above the floor). Java and
/// librdkafka producers close a batch by its uncompressed size (`batch.size`, at most
/// `max.request.size`), so an honest batch stays far below this; a bomb does not.
pub const DECOMPRESSION_RATIO_MAX: usize = 64;
/// Ceiling of the decompressed-bytes cap, whatever `max.message.bytes` says: the memory one
/// produce can make the broker hold for one batch.
pub const DECOMPRESSED_BYTES_CEILING: usize = 256 * 1024 * 1024;

/// How far one batch may be decompressed: output bytes and records, both checked before the
/// memory they name is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecompressLimits {
    /// Largest decompressed body accepted; more is `CORRUPT_MESSAGE`.
    pub output_bytes_max: usize,
    /// Largest record count a batch header may claim; more is `CORRUPT_MESSAGE`.
    pub record_count_max: usize,
}

impl DecompressLimits {
    /// The caps for a batch under `max.message.bytes` = `max_message_bytes`:
    /// `clamp(64 x max.message.bytes, 16 MiB, 256 MiB)` bytes, and as many records as fit in
    /// them at [`RECORD_BYTES_MIN`] bytes each.
    pub fn for_max_message_bytes(max_message_bytes: usize) -> DecompressLimits {
        let output_bytes_max = max_message_bytes
            .saturating_mul(DECOMPRESSION_RATIO_MAX)
            .clamp(DECOMPRESSED_BYTES_FLOOR, DECOMPRESSED_BYTES_CEILING);
        DecompressLimits {
            output_bytes_max,
            record_count_max: output_bytes_max / RECORD_BYTES_MIN,
        }
    }
}

impl Default for DecompressLimits {
    /// The caps under Kafka's default `max.message.bytes` (1 MiB + 12), for reads of stored
    /// batches (ListOffsets) that have no topic config at hand.
    fn default() -> Self {
        DecompressLimits::for_max_message_bytes(1024 * 1024 + 12)
    }
}

/// Decompresses the records section of a batch compressed with `codec`, refusing output past
/// `output_bytes_max`. Undecodable input and output past the cap are both `CORRUPT_MESSAGE`.
/// `Compression::None` returns the input copied (callers normally borrow it instead).
pub fn decompress(
    codec: Compression,
    input: &[u8],
    output_bytes_max: usize,
) -> Result<Vec<u8>, BatchError> {
    let mut sink = BoundedSink::new(output_bytes_max);
    match codec {
        Compression::None => sink.extend(input)?,
        Compression::Gzip => sink.read_from(gzip::reader(input))?,
        Compression::Snappy => snappy::decompress_into(input, &mut sink)?,
        Compression::Lz4 => sink.read_from(lz4::reader(input)?)?,
        Compression::Zstd => sink.read_from(zstd::reader(input)?)?,
    }
    Ok(sink.into_inner())
}

/// Compresses `input` with `codec` at `level` (Kafka's `compression.<codec>.level`; `None` is
/// the codec's Kafka default), framed as Kafka's Java client and broker frame it.
pub fn compress(
    codec: Compression,
    level: Option<i32>,
    input: &[u8],
) -> Result<Vec<u8>, BatchError> {
    let failed = |_| BatchError::CompressionFailed("the codec refused to compress the records");
    match codec {
        Compression::None => Ok(input.to_vec()),
        Compression::Gzip => gzip::compress(input, level).map_err(failed),
        Compression::Snappy => snappy::compress(input).map_err(|_| {
            BatchError::CompressionFailed("the codec refused to compress the records")
        }),
        Compression::Lz4 => lz4::compress(input, level).map_err(failed),
        Compression::Zstd => zstd::compress(input, level).map_err(failed),
    }
}

/// A growable output that refuses to pass its cap. Grows with the bytes actually produced
/// (at most one `READ_CHUNK_BYTES` ahead), never from a size the input claims.
pub(crate) struct BoundedSink {
    out: Vec<u8>,
    output_bytes_max: usize,
}

/// Bytes read from a decoder per step.
const READ_CHUNK_BYTES: usize = 64 * 1024;

impl BoundedSink {
    fn new(output_bytes_max: usize) -> BoundedSink {
        BoundedSink {
            out: Vec::new(),
            output_bytes_max,
        }
    }

    /// Bytes the sink still takes.
    pub(crate) fn room(&self) -> usize {
        self.output_bytes_max.saturating_sub(self.out.len())
    }

    pub(crate) fn extend(&mut self, bytes: &[u8]) -> Result<(), BatchError> {
        if bytes.len() > self.room() {
            return Err(too_large());
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    /// Appends `len` zeroed bytes and returns them, for decoders that write into a slice
    /// (raw snappy blocks, whose length is read from their preamble and checked here first).
    pub(crate) fn reserve_slice(&mut self, len: usize) -> Result<&mut [u8], BatchError> {
        if len > self.room() {
            return Err(too_large());
        }
        let start = self.out.len();
        self.out.resize(start + len, 0);
        Ok(&mut self.out[start..])
    }

    /// Reads `reader` to its end into the sink; one byte past the cap is refused.
    fn read_from(&mut self, mut reader: impl Read) -> Result<(), BatchError> {
        let mut chunk = vec![0u8; READ_CHUNK_BYTES];
        loop {
            let n = match reader.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(undecodable()),
            };
            self.extend(&chunk[..n])?;
        }
    }

    fn into_inner(self) -> Vec<u8> {
        self.out
    }
}

pub(crate) fn too_large() -> BatchError {
    BatchError::CorruptMessage("decompressed records exceed the broker's decompression limit")
}

pub(crate) fn undecodable() -> BatchError {
    BatchError::CorruptMessage("compressed records could not be decompressed")
}

#[cfg(test)]
mod tests;
