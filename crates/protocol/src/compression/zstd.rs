//! zstd, as Kafka's `ZstdCompression` (zstd-jni streams at `compression.zstd.level`, no
//! checksum, no content size). Reading accepts several frames in a row.

use std::io::{self, Read};

use crate::batch::BatchError;

/// Kafka's `compression.zstd.level` default (`CompressionType.ZSTD.defaultLevel()`).
const DEFAULT_LEVEL: i32 = 3;

pub(super) fn reader(input: &[u8]) -> Result<impl Read + '_, BatchError> {
    ::zstd::stream::read::Decoder::with_buffer(input).map_err(|_| super::undecodable())
}

pub(super) fn compress(input: &[u8], level: Option<i32>) -> io::Result<Vec<u8>> {
    let level = level.unwrap_or(DEFAULT_LEVEL);
    let mut encoder =
        ::zstd::stream::write::Encoder::new(Vec::with_capacity(input.len() / 2 + 64), level)?;
    io::Write::write_all(&mut encoder, input)?;
    encoder.finish()
}
