//! The code paths behind the cargo-fuzz targets in `crates/protocol/fuzz/`, kept here so the
//! checked-in corpus replays through exactly the same code in an ordinary `cargo test`.

mod schema_gen;

use bytes::Bytes;

pub use schema_gen::{Choices, FuzzBytes, GenOptions, SchemaGen, Xorshift, LONG_STRING_BYTES};

use crate::request::{decode_frame, DecodeError};
use crate::validate::{request_header_version, ValidateError};

/// Memory budget the fuzz targets give one request: decoding is refused above it, as the broker
/// will refuse it.
pub const DECODED_BYTES_MAX: usize = 64 << 20;

/// Record-batch bytes the `record_batch` target allows.
pub const BATCH_BYTES_MAX: usize = 1 << 20;

/// Fuzz entry for one request frame (header + body, no length prefix): validate, and only if the
/// walk passes, decode with kafka-protocol as the broker does.
///
/// The oracle: a frame the validator accepts must decode. If kafka-protocol refuses it, the
/// schema and the decoder disagree, and the walker's guarantees would not hold: we panic so the
/// fuzzer reports it. UTF-8 is checked by both, so a decode error here is always a schema bug.
pub fn request_frame(data: &[u8]) {
    match decode_frame(Bytes::copy_from_slice(data), DECODED_BYTES_MAX) {
        Ok(_) | Err(DecodeError::Invalid(_)) | Err(DecodeError::NoApiKey) => {}
        Err(DecodeError::Decode(message)) if message.contains("over budget") => {}
        Err(DecodeError::Decode(message)) => {
            panic!("validator accepted a frame kafka-protocol refuses: {message}")
        }
    }
}

/// Fuzz entry for record batches: the batch validator must refuse or accept, never panic or
/// allocate by a wire number; every accepted batch then goes through the bounded decompressing
/// reader and is rebuilt as zstd, as an append with `compression.type=zstd` does.
pub fn record_batch(data: &[u8]) {
    let Ok(batches) = crate::batch::validate_batches(data, BATCH_BYTES_MAX) else {
        return;
    };
    let limits = crate::compression::DecompressLimits::for_max_message_bytes(BATCH_BYTES_MAX);
    for found in batches {
        let Some(batch) = data.get(found.position..found.position + found.header.size_bytes())
        else {
            panic!("validate_batches returned a batch past the input");
        };
        let Ok(records) = crate::batch::BatchRecords::open(batch, limits) else {
            continue;
        };
        if records.for_each(|_| {}).is_ok() {
            let rebuilt = crate::batch::rebuild_batch(
                &records,
                &crate::batch::Rebuild {
                    base_offset: 0,
                    partition_leader_epoch: 0,
                    codec: crate::batch::Compression::Zstd,
                    level: None,
                    timestamp_type: crate::batch::TimestampType::CreateTime,
                    log_append_time_ms: -1,
                },
            );
            // What the walk accepted must rebuild into a batch that checks out.
            let Ok(rebuilt) = rebuilt else {
                panic!("a walked batch failed to rebuild: {rebuilt:?}");
            };
            if let Err(e) = crate::batch::check_stored_batch(&rebuilt) {
                panic!("a rebuilt batch fails its own check: {e}");
            }
        }
    }
}

/// The files of a checked-in fuzz corpus (`<crate>/fuzz/corpus/<target>`), sorted, for the
/// tests that replay it. Panics if the folder cannot be read: a corpus that vanished must fail
/// its test, not pass it empty.
pub fn corpus_files(crate_dir: &std::path::Path, target: &str) -> Vec<std::path::PathBuf> {
    let dir = crate_dir.join("fuzz/corpus").join(target);
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no inputs", dir.display());
    files
}

/// A whole request frame (header + body, no length prefix) for `api_key`/`version` around
/// `body`, with this client id, as a client would send it.
pub fn frame(
    api_key: i16,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    body: &[u8],
) -> Result<Vec<u8>, ValidateError> {
    let header_version = request_header_version(api_key, version)?;
    let client_id_len = i16::try_from(client_id.len()).map_err(|_| ValidateError::BadLength {
        field: "ClientId".to_owned(),
        offset: 8,
        length: client_id.len() as i64,
    })?;
    let mut frame = Vec::with_capacity(11 + client_id.len() + body.len());
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    if header_version >= 1 {
        frame.extend_from_slice(&client_id_len.to_be_bytes());
        frame.extend_from_slice(client_id.as_bytes());
    }
    if header_version >= 2 {
        // No tagged fields in the header.
        frame.push(0);
    }
    frame.extend_from_slice(body);
    Ok(frame)
}
