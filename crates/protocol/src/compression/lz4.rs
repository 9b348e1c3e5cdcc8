//! lz4, as Kafka's `Lz4Compression` for magic v2: the standard LZ4 frame format
//! (`Lz4BlockOutputStream`: 64 KiB independent blocks, no block or content checksum), at
//! `compression.lz4.level`. Kafka compresses with lz4-java's fast compressor at the default
//! level 9 and its HC compressor at any other level; liblz4's frame API does the same for
//! level 0 (fast) and levels 3 and up (HC), so 9 maps to 0 and 1..=2 to HC's lowest, 3.

use std::io::{self, Read};

use ::lz4::{BlockMode, BlockSize, ContentChecksum, EncoderBuilder};

use crate::batch::BatchError;

/// Kafka's `compression.lz4.level` default (`CompressionType.LZ4.defaultLevel()`).
const KAFKA_DEFAULT_LEVEL: i32 = 9;
/// liblz4's first HC level.
const HC_LEVEL_MIN: u32 = 3;

pub(super) fn reader(input: &[u8]) -> Result<impl Read + '_, BatchError> {
    ::lz4::Decoder::new(input).map_err(|_| super::undecodable())
}

pub(super) fn compress(input: &[u8], level: Option<i32>) -> io::Result<Vec<u8>> {
    let level = match level.unwrap_or(KAFKA_DEFAULT_LEVEL) {
        KAFKA_DEFAULT_LEVEL => 0,
        other => other.unsigned_abs().max(HC_LEVEL_MIN),
    };
    let mut encoder = EncoderBuilder::new()
        .block_size(BlockSize::Max64KB)
        .block_mode(BlockMode::Independent)
        .checksum(ContentChecksum::NoChecksum)
        .level(level)
        .build(Vec::with_capacity(input.len() / 2 + 64))?;
    io::Write::write_all(&mut encoder, input)?;
    let (out, result) = encoder.finish();
    result.map(|()| out)
}
