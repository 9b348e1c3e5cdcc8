//! `partition.metadata`: Kafka's `PartitionMetadataFile` ("version: 0\ntopic_id: <uuid>\n"),
//! where the uuid is Kafka's `Uuid.toString()`: URL-safe base64 without padding (22 chars).

use std::path::Path;

use crate::io::{read_whole_file, replace_file, replace_file_unsynced_name, LogIo, WholeFile};
use crate::StorageError;

pub(crate) const PARTITION_METADATA_FILE: &str = "partition.metadata";
/// A metadata file is a few dozen bytes; anything bigger is not ours.
const METADATA_FILE_BYTES_MAX: u64 = 4096;

use runnel_protocol::kafka_uuid::{from_text as decode_topic_id, to_text as encode_topic_id};

/// Writes `partition.metadata` if absent, or checks the topic id in it. Returns whether it
/// wrote it. Written into a directory holding a log, it is durable before this returns;
/// into an empty one (`fresh`), only its bytes are: its name is durable once the caller
/// fsyncs `dir`, which a new log does once for all of its files (a crash before that loses
/// an empty directory's file, written again by the next open).
pub(crate) fn check_or_write(
    io: &dyn LogIo,
    dir: &Path,
    topic_id: &[u8; 16],
    fresh: bool,
) -> Result<bool, StorageError> {
    let path = dir.join(PARTITION_METADATA_FILE);
    match read_whole_file(io, &path, METADATA_FILE_BYTES_MAX)? {
        WholeFile::TooLarge => Err(StorageError::Corrupt(
            "partition.metadata is too large".into(),
        )),
        WholeFile::Bytes(bytes) => {
            let found = std::str::from_utf8(&bytes)
                .ok()
                .and_then(parse)
                .ok_or_else(|| StorageError::Corrupt("malformed partition.metadata".into()))?;
            if &found != topic_id {
                return Err(StorageError::TopicIdMismatch);
            }
            Ok(false)
        }
        WholeFile::Missing => {
            let text = format!("version: 0\ntopic_id: {}\n", encode_topic_id(topic_id));
            if fresh {
                replace_file_unsynced_name(io, &path, text.as_bytes())?;
            } else {
                replace_file(io, &path, text.as_bytes())?;
            }
            Ok(true)
        }
    }
}

fn parse(text: &str) -> Option<[u8; 16]> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "version: 0" {
        return None;
    }
    let id = lines.next()?.trim().strip_prefix("topic_id:")?.trim();
    decode_topic_id(id)
}
