//! snappy, as Kafka handles it. Kafka's Java codec writes xerial's `SnappyOutputStream`
//! framing (an 8-byte magic, two version ints, then blocks of 32 KiB of input, each a 4-byte
//! big-endian length and a raw snappy block); librdkafka writes one plain raw snappy block.
//! Reading takes both, as xerial's `SnappyInputStream` does: input that does not start with the
//! magic is one raw block, and a magic met between blocks starts a concatenated stream.

use snap::raw::{decompress_len, Decoder, Encoder};

use super::BoundedSink;
use crate::batch::BatchError;

/// xerial's `SnappyCodec.MAGIC_HEADER`.
const MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Magic, then `DEFAULT_VERSION` and `MINIMUM_COMPATIBLE_VERSION`, both 1.
const HEADER_LEN: usize = 16;
/// xerial's `SnappyOutputStream` default block size (input bytes per block).
const BLOCK_BYTES: usize = 32 * 1024;

pub(super) fn decompress_into(input: &[u8], sink: &mut BoundedSink) -> Result<(), BatchError> {
    let mut decoder = Decoder::new();
    if !input.starts_with(&MAGIC) {
        return raw_block(&mut decoder, input, sink);
    }
    let mut rest = input;
    while !rest.is_empty() {
        if rest.starts_with(&MAGIC) {
            rest = rest.get(HEADER_LEN..).ok_or_else(super::undecodable)?;
            continue;
        }
        let len_bytes: [u8; 4] = rest
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(super::undecodable)?;
        let len =
            usize::try_from(i32::from_be_bytes(len_bytes)).map_err(|_| super::undecodable())?;
        let block = rest.get(4..4 + len).ok_or_else(super::undecodable)?;
        raw_block(&mut decoder, block, sink)?;
        rest = &rest[4 + len..];
    }
    Ok(())
}

/// One raw snappy block; its decompressed length (from its preamble) is checked against the
/// sink's room before anything is allocated for it.
fn raw_block(
    decoder: &mut Decoder,
    block: &[u8],
    sink: &mut BoundedSink,
) -> Result<(), BatchError> {
    let len = decompress_len(block).map_err(|_| super::undecodable())?;
    let out = sink.reserve_slice(len)?;
    let written = decoder
        .decompress(block, out)
        .map_err(|_| super::undecodable())?;
    if written != len {
        return Err(super::undecodable());
    }
    Ok(())
}

pub(super) fn compress(input: &[u8]) -> Result<Vec<u8>, snap::Error> {
    let mut encoder = Encoder::new();
    let mut out = Vec::with_capacity(HEADER_LEN + input.len() / 2 + 64);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut block = Vec::new();
    for chunk in input.chunks(BLOCK_BYTES) {
        block.resize(snap::raw::max_compress_len(chunk.len()), 0);
        let n = encoder.compress(chunk, &mut block)?;
        // A compressed 32 KiB chunk is far below 2 GiB.
        out.extend_from_slice(&(n as i32).to_be_bytes());
        out.extend_from_slice(&block[..n]);
    }
    Ok(out)
}
