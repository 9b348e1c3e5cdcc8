//! gzip, as Kafka's `GzipCompression`: `java.util.zip.GZIPOutputStream` (deflate, header with
//! OS byte 0 and no name or time) at `compression.gzip.level`; reading accepts concatenated
//! members, as `GZIPInputStream` does.

use std::io::{self, Read, Write};

use flate2::read::MultiGzDecoder;
use flate2::{Compression, GzBuilder};

/// Kafka's `compression.gzip.level` default, -1, is `Deflater.DEFAULT_COMPRESSION`: zlib's 6.
const DEFAULT_LEVEL: u32 = 6;

pub(super) fn reader(input: &[u8]) -> impl Read + '_ {
    MultiGzDecoder::new(input)
}

pub(super) fn compress(input: &[u8], level: Option<i32>) -> io::Result<Vec<u8>> {
    // Kafka accepts 1..=9 and -1 (its validator refuses the rest).
    let level = match level {
        Some(l @ 0..=9) => l.unsigned_abs(),
        _ => DEFAULT_LEVEL,
    };
    let mut encoder = GzBuilder::new().operating_system(0).write(
        Vec::with_capacity(input.len() / 2 + 64),
        Compression::new(level),
    );
    encoder.write_all(input)?;
    encoder.finish()
}
